"""The served pipeline as one object: model + TTA + temperature + thresholds + operating point.

Everything that reports a number about served predictions (the `evaluate` stage) and everything
that serves them (`wafer predict`, the demo) goes through :meth:`ServingConfig.decide`, so the
numbers describe exactly the predictions that are served.

Files (written by the pipeline, always read by explicit path):

* ``models/model.pt``        -- weights + architecture (``torch.load(weights_only=True)``)
* ``models/calibration.json`` -- ``{"temperature": T, "tta": bool, "model_sha256",
  "logits_sha256", ...}`` (stage `calibrate`)
* ``models/thresholds.json``  -- ``{"objective": "cost" | "macro_f1", "operating_points":
  {"cost": {"tau", "class_thresholds"}, "macro_f1": {...}}, "cost_ratio", "temperature",
  "model_sha256", "logits_sha256", ...}`` (stage `thresholds`)

The two JSON files record the SHA-256 of the model whose logits they were fit on, and of those
logits; :meth:`ServingConfig.load` checks every field (:data:`FIELD_RULES`) and, given the model,
that the three files belong together, and refuses anything else with a one-line
:class:`wafer.io.WaferInputError` naming the file and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from wafer.calibration import softmax
from wafer.classes import CLASS_NAMES, NONE_INDEX
from wafer.io import WaferInputError, sha256_file
from wafer.params import NOVELTY_METHODS
from wafer.thresholds import OBJECTIVES, decide


@dataclass(frozen=True)
class Decision:
    probs: np.ndarray  # (N, C) calibrated probabilities
    pred: np.ndarray  # (N,) class index after thresholds and operating point
    defect: np.ndarray  # (N,) bool: flagged as a defect (1 - p_none >= tau)


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _hex64(v: object) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


# field -> (check, what it must be); one table for the served JSON files
FIELD_RULES = {
    "temperature": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "tta": (lambda v: isinstance(v, bool), "true or false"),
    "tau": (lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "threshold": (lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "cost_ratio": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "objective": (lambda v: v in OBJECTIVES, f"one of {', '.join(OBJECTIVES)}"),
    "model_sha256": (_hex64, "a SHA-256 hex digest"),
    "logits_sha256": (_hex64, "a SHA-256 hex digest"),
    # models/novelty.json (wafer.novelty.Novelty)
    "method": (lambda v: v in NOVELTY_METHODS, f"one of {', '.join(NOVELTY_METHODS)}"),
    "score": (_finite, "a finite number"),
    "k": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "false_flag_rate": (lambda v: _finite(v) and 0 < v < 1, "a number in (0, 1)"),
    "index_sha256": (_hex64, "a SHA-256 hex digest"),
}


def checked_field(data: dict, key: str, path: str | Path, rule: str | None = None, where: str = ""):
    """``data[key]``, checked by its rule in :data:`FIELD_RULES` (``rule``: another rule's
    name); a missing or bad field raises :class:`WaferInputError` naming the file and field."""
    name = f"{where}{key}"
    if not isinstance(data, dict) or key not in data:
        raise WaferInputError(path, f"missing field '{name}'")
    ok, what = FIELD_RULES[rule or key]
    if not ok(data[key]):
        raise WaferInputError(path, f"field '{name}' must be {what}, got {data[key]!r}")
    return data[key]


def read_object(path: str | Path) -> dict:
    """A served JSON file's object; a missing or unreadable file raises WaferInputError."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WaferInputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise WaferInputError(path, f"not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WaferInputError(path, "not a JSON object")
    return data


@dataclass(frozen=True)
class OperatingPoint:
    tau: float
    class_thresholds: tuple[float, ...]


def _point(data: dict, name: str, path: str | Path) -> OperatingPoint:
    where = f"operating_points.{name}."
    tau = float(checked_field(data, "tau", path, where=where))
    ct = data.get("class_thresholds")
    if not isinstance(ct, dict) or set(ct) != set(CLASS_NAMES):
        raise WaferInputError(
            path, f"field '{where}class_thresholds' must map each of the 9 class names to a value"
        )
    values = tuple(
        float(checked_field(ct, c, path, "threshold", f"{where}class_thresholds."))
        for c in CLASS_NAMES
    )
    return OperatingPoint(tau, values)


@dataclass(frozen=True)
class ServingConfig:
    temperature: float = 1.0
    tta: bool = True
    tau: float = 0.5
    class_thresholds: tuple[float, ...] = (0.0,) * len(CLASS_NAMES)
    cost_ratio: float = 10.0  # escape : false-alarm cost of the `cost` operating point
    objective: str = "cost"  # which operating point is served
    points: tuple[tuple[str, OperatingPoint], ...] = ()  # every fitted point, by objective

    @classmethod
    def load(
        cls,
        calibration: str | Path,
        thresholds: str | Path | None = None,
        model: str | Path | None = None,
        objective: str | None = None,
    ) -> ServingConfig:
        """Read and check the served files; ``objective`` overrides the file's served point.
        With ``model``, also check that the three files belong together (module docstring)."""
        cal = read_object(calibration)
        kw: dict = {
            "temperature": float(checked_field(cal, "temperature", calibration)),
            "tta": checked_field(cal, "tta", calibration),
        }
        if thresholds is None:
            return cls(**kw)
        thr = read_object(thresholds)
        served = objective or checked_field(thr, "objective", thresholds)
        pts = thr.get("operating_points")
        if not isinstance(pts, dict) or served not in pts:
            raise WaferInputError(thresholds, f"missing field 'operating_points.{served}'")
        points = tuple((name, _point(pts[name], name, thresholds)) for name in sorted(pts))
        point = dict(points)[served]
        kw |= {
            "tau": point.tau,
            "class_thresholds": point.class_thresholds,
            "cost_ratio": float(checked_field(thr, "cost_ratio", thresholds)),
            "objective": served,
            "points": points,
        }
        if model is not None:
            _check_binding(model, calibration, cal, thresholds, thr)
        return cls(**kw)

    def at(self, objective: str) -> ServingConfig:
        """The same pipeline served at another fitted operating point."""
        point = dict(self.points).get(objective)
        if point is None:
            raise ValueError(f"no operating point {objective!r} (have {dict(self.points)})")
        return replace(
            self, objective=objective, tau=point.tau, class_thresholds=point.class_thresholds
        )

    def decide(self, logits: np.ndarray) -> Decision:
        """Served logits (TTA-combined when ``tta``) -> calibrated probabilities and decisions."""
        probs = softmax(logits, self.temperature)
        pred = decide(probs, np.asarray(self.class_thresholds), self.tau)
        return Decision(probs=probs, pred=pred, defect=(1.0 - probs[:, NONE_INDEX]) >= self.tau)


def _check_binding(model, calibration, cal: dict, thresholds, thr: dict) -> None:
    """The calibration and thresholds files were fit on this model's logits, the same logits,
    and the thresholds on this temperature; else one line naming the files that disagree."""
    digest = sha256_file(model)
    for path, data in ((calibration, cal), (thresholds, thr)):
        fit_for = checked_field(data, "model_sha256", path)
        if fit_for != digest:
            raise WaferInputError(
                path,
                f"fit for another model (model_sha256 {fit_for[:12]}…, but {model} is "
                f"{digest[:12]}…): these files do not belong together; re-run `dvc repro` "
                "or `dvc checkout` to get a matching set",
            )
    a = checked_field(cal, "logits_sha256", calibration)
    b = checked_field(thr, "logits_sha256", thresholds)
    if a != b:
        raise WaferInputError(
            f"{calibration} / {thresholds}",
            f"fit on different logits (logits_sha256 {a[:12]}… vs {b[:12]}…): re-run "
            "`dvc repro` or `dvc checkout` to get a matching set",
        )
    t_cal = float(checked_field(cal, "temperature", calibration))
    t_thr = float(checked_field(thr, "temperature", thresholds))
    if not math.isclose(t_cal, t_thr, rel_tol=1e-6, abs_tol=1e-9):
        raise WaferInputError(
            f"{calibration} / {thresholds}",
            f"thresholds were fit at temperature {t_thr}, the calibration serves {t_cal}",
        )
