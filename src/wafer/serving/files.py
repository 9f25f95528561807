"""The served JSON files, one load/save type each, and the one table of their field rules
(:data:`FIELD_RULES`): ``calibration.json`` (:class:`Calibration`, the calibrate stage),
``thresholds.json`` (:class:`Thresholds`, the thresholds stage) and ``novelty.json``
(:class:`Novelty`, the index stage). Each records the SHA-256 of the model whose logits it was
fit on, and of those logits; loading checks every field and refuses anything else with a
one-line :class:`wafer.core.errors.WaferInputError` naming the file and the field, and
:func:`check_binding` checks that the files belong together.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from wafer.config.rules import NOVELTY_METHODS, OBJECTIVES, RUNTIMES, SET_SCORES, TTA_VIEWS
from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError
from wafer.core.io import write_json
from wafer.serving.conformal import SetRule


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _hex64(v: object) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


# field -> (check, what it must be); one table for the served JSON files
FIELD_RULES = {
    "temperature": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "runtime": (lambda v: v in RUNTIMES, f"one of {', '.join(RUNTIMES)}"),
    "views": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v in TTA_VIEWS,
        f"one of {', '.join(map(str, TTA_VIEWS))}",
    ),
    "tau": (lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "threshold": (lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "cost_ratio": (lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "objective": (lambda v: v in OBJECTIVES, f"one of {', '.join(OBJECTIVES)}"),
    "model_sha256": (_hex64, "a SHA-256 hex digest"),
    "logits_sha256": (_hex64, "a SHA-256 hex digest"),
    # novelty.json (wafer.serving.files.Novelty)
    "method": (lambda v: v in NOVELTY_METHODS, f"one of {', '.join(NOVELTY_METHODS)}"),
    "score": (_finite, "a finite number"),
    "k": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "false_flag_rate": (lambda v: _finite(v) and 0 < v < 1, "a number in (0, 1)"),
    "index_sha256": (_hex64, "a SHA-256 hex digest"),
    # calibration.json's quantization record (infer.runtime int8; wafer.model.runtime.Int8)
    "graph_sha256": (_hex64, "a SHA-256 hex digest"),
    "calibration_maps": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1",
    ),
    "ranges": (lambda v: isinstance(v, dict) and bool(v), "ONNX Runtime's activation ranges"),
    # thresholds.json's escape_budget and prediction_sets records
    "alpha": (lambda v: _finite(v) and 0 < v < 1, "a number in (0, 1)"),
    "confidence": (lambda v: _finite(v) and 0.5 <= v < 1, "a number in [0.5, 1)"),
    "attainable": (lambda v: isinstance(v, bool), "true or false"),
    "bound": (lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "set_score": (lambda v: v in SET_SCORES, f"one of {', '.join(SET_SCORES)}"),
    "qhat": (lambda v: v is None or _finite(v), "a number, or null (every class)"),
    "lambda": (lambda v: _finite(v) and v >= 0, "a number >= 0"),
    "k_reg": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer"),
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
class Calibration:
    """The `calibrate` stage's output (``paths.calibration``): temperature fit on the served
    validation logits, how many TTA views those logits average, and what they came from."""

    temperature: float
    views: int
    runtime: str
    n_val: int  # validation maps it was fit on
    model_sha256: str
    logits_sha256: str
    # runtime int8 only: how its graph was quantised (wafer.model.runtime.Int8.quantization)
    quantization: dict | None = None

    def save(self, path: str | os.PathLike) -> None:
        data = {
            "temperature": self.temperature,
            "views": self.views,
            "runtime": self.runtime,
            "fit_on": "val",
            "n_val": self.n_val,
            "model_sha256": self.model_sha256,  # the served files belong to this model
            "logits_sha256": self.logits_sha256,
        }
        if self.quantization is not None:
            data["quantization"] = self.quantization
        write_json(path, data)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        data = read_object(path)
        n_val = data.get("n_val")
        runtime = checked_field(data, "runtime", path)
        return cls(
            temperature=float(checked_field(data, "temperature", path)),
            views=checked_field(data, "views", path),
            runtime=runtime,
            n_val=n_val if isinstance(n_val, int) else 0,
            model_sha256=checked_field(data, "model_sha256", path),
            logits_sha256=checked_field(data, "logits_sha256", path),
            quantization=_quantization(data, runtime, path),
        )


def _quantization(data: dict, runtime: str, path: str | Path) -> dict | None:
    """calibration.json's ``quantization`` record: required for the int8 runtime (its fields
    checked; ONNX Runtime reads the ranges), refused for any other."""
    if runtime != "int8":
        if "quantization" in data:
            raise WaferInputError(path, f"field 'quantization' given for runtime {runtime!r}")
        return None
    record = checked_field(data, "quantization", path, rule="ranges")
    for key in ("graph_sha256", "calibration_maps", "ranges"):
        checked_field(record, key, path, where="quantization.")
    return record


@dataclass(frozen=True)
class OperatingPoint:
    tau: float
    class_thresholds: tuple[float, ...]  # in CLASS_NAMES order

    def to_dict(self) -> dict:
        named = dict(zip(CLASS_NAMES, map(float, self.class_thresholds), strict=True))
        return {"tau": float(self.tau), "class_thresholds": named}


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
class Thresholds:
    """The `thresholds` stage's output (``paths.thresholds``): the operating points fit on
    validation at ``temperature``, the one served (``objective``), the cost ratio and class
    prior they were fit under, the escape budget's record (its guarantee, or why it cannot be
    given: then there is no ``escape_budget`` point), the prediction-set rule, and what the
    logits came from."""

    objective: str
    cost_ratio: float
    prior: dict[str, float]  # class shares every validation count was weighted to
    points: dict[str, OperatingPoint]  # by objective
    temperature: float
    model_sha256: str
    logits_sha256: str
    budget: dict | None = None  # wafer.serving.screen.fit_budget's record
    sets: SetRule | None = None  # wafer.serving.conformal

    def save(self, path: str | os.PathLike) -> None:
        write_json(
            path,
            {
                "objective": self.objective,
                "cost_ratio": self.cost_ratio,
                "prior": self.prior,
                "fit_on": "val",
                "operating_points": {k: p.to_dict() for k, p in self.points.items()},
                "temperature": self.temperature,
                "model_sha256": self.model_sha256,
                "logits_sha256": self.logits_sha256,
            }
            | ({"escape_budget": self.budget} if self.budget is not None else {})
            | ({"prediction_sets": self.sets.to_dict()} if self.sets is not None else {}),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Thresholds:
        data = read_object(path)
        objective = checked_field(data, "objective", path)
        pts = data.get("operating_points")
        if not isinstance(pts, dict) or objective not in pts:
            raise WaferInputError(path, f"missing field 'operating_points.{objective}'")
        for name in pts:
            if name not in OBJECTIVES:
                raise WaferInputError(
                    path, f"field 'operating_points.{name}': not one of {', '.join(OBJECTIVES)}"
                )
        prior = data.get("prior")
        return cls(
            objective=objective,
            cost_ratio=float(checked_field(data, "cost_ratio", path)),
            prior=prior if isinstance(prior, dict) else {},
            points={name: _point(pts[name], name, path) for name in sorted(pts)},
            temperature=float(checked_field(data, "temperature", path)),
            model_sha256=checked_field(data, "model_sha256", path),
            logits_sha256=checked_field(data, "logits_sha256", path),
            budget=_budget(data, path),
            sets=_sets(data, path),
        )


def _budget(data: dict, path: str | Path) -> dict | None:
    """The escape_budget record (None in files made before it existed)."""
    rec = data.get("escape_budget")
    if rec is None:
        return None
    w = "escape_budget."
    for key in ("alpha", "confidence", "attainable", "bound"):
        checked_field(rec, key, path, where=w)
    if rec["attainable"]:
        checked_field(rec, "tau", path, where=w)
        if "escape_budget" not in data.get("operating_points", {}):
            raise WaferInputError(path, "field 'operating_points.escape_budget' missing")
    elif not isinstance(rec.get("why"), str):
        raise WaferInputError(path, "field 'escape_budget.why' must say why it is refused")
    return dict(rec)


def _sets(data: dict, path: str | Path) -> SetRule | None:
    """The prediction-set rule (None in files made before it existed)."""
    rec = data.get("prediction_sets")
    if rec is None:
        return None
    w = "prediction_sets."
    qhat = checked_field(rec, "qhat", path, where=w)
    return SetRule(
        method=checked_field(rec, "method", path, "set_score", w),
        alpha=float(checked_field(rec, "alpha", path, where=w)),
        qhat=float("inf") if qhat is None else float(qhat),
        lam=float(checked_field(rec, "lambda", path, where=w)),
        k_reg=checked_field(rec, "k_reg", path, where=w),
    )


def check_binding(
    model: str | Path,
    digest: str,
    calibration: str | Path,
    cal: Calibration,
    thresholds: str | Path,
    thr: Thresholds,
) -> None:
    """The calibration and thresholds files were fit on this model's logits, the same logits,
    and the thresholds on this temperature; else one line naming the files that disagree."""
    for path, fit_for in ((calibration, cal.model_sha256), (thresholds, thr.model_sha256)):
        if fit_for != digest:
            raise WaferInputError(
                path,
                f"fit for another model (model_sha256 {fit_for[:12]}…, but {model} is "
                f"{digest[:12]}…): these files do not belong together; re-run `dvc repro` "
                "or `dvc checkout` to get a matching set",
            )
    if cal.logits_sha256 != thr.logits_sha256:
        a, b = cal.logits_sha256, thr.logits_sha256
        raise WaferInputError(
            f"{calibration} / {thresholds}",
            f"fit on different logits (logits_sha256 {a[:12]}… vs {b[:12]}…): re-run "
            "`dvc repro` or `dvc checkout` to get a matching set",
        )
    if not math.isclose(cal.temperature, thr.temperature, rel_tol=1e-6, abs_tol=1e-9):
        raise WaferInputError(
            f"{calibration} / {thresholds}",
            f"thresholds were fit at temperature {thr.temperature}, the calibration serves "
            f"{cal.temperature}",
        )


@dataclass(frozen=True)
class Novelty:
    """novelty.json (``paths.novelty``): the served novelty method and threshold (stage `index`)."""

    method: str
    threshold: float
    thresholds: dict[str, float]
    k: int
    false_flag_rate: float
    temperature: float
    views: int  # TTA views the index's features average (1: the map as given)
    model_sha256: str
    index_sha256: str

    def save(self, path: str | Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> Novelty:
        """Read and check a novelty.json (every field by :data:`FIELD_RULES`); a bad file raises
        :class:`WaferInputError` naming it and the field."""
        data = read_object(path)
        plain = ("method", "k", "false_flag_rate", "temperature", "views")
        kw = {key: checked_field(data, key, path) for key in plain}
        kw["threshold"] = float(checked_field(data, "threshold", path, "score"))
        per = data.get("thresholds")
        if not isinstance(per, dict):
            raise WaferInputError(path, "field 'thresholds' must map each method to a number")
        kw["thresholds"] = {
            m: float(checked_field(per, m, path, "score", "thresholds.")) for m in NOVELTY_METHODS
        }
        for key in ("model_sha256", "index_sha256"):
            kw[key] = checked_field(data, key, path)
        return cls(**kw)
