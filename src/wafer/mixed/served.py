"""The mixed-type pipeline's served JSON files, one load/save type each, checked field by field
with the 9-class files' rule table (:data:`wafer.serving.files.FIELD_RULES`):

* :class:`MixedCalibration` (the `calibrate` stage): a temperature per label, fit on the served
  validation logits;
* :class:`MixedThresholds` (the `thresholds` stage): per-label thresholds at both operating
  points, the served one named, and the temperatures they were fit at.

Both record the SHA-256 of the model and of the logits they were fit on;
:func:`check_mixed_binding` refuses a set that does not belong together, in one line.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from wafer.config.mixed import MIXED_OBJECTIVES
from wafer.core.errors import WaferInputError
from wafer.core.io import write_json
from wafer.mixed.labels import MIXED_LABELS, N_LABELS
from wafer.serving.files import checked_field, read_object


def _per_label(data: dict, key: str, path: str | os.PathLike, rule: str) -> list[float]:
    """A list of one checked value per label (``rule`` of FIELD_RULES for each item)."""
    values = data.get(key) if isinstance(data, dict) else None
    if not isinstance(values, list) or len(values) != N_LABELS:
        raise WaferInputError(path, f"field '{key}' must be a list of {N_LABELS} numbers")
    return [
        float(checked_field({key: v}, key, path, rule, f"{key}[{i}]."))
        for i, v in enumerate(values)
    ]


@dataclass(frozen=True)
class MixedCalibration:
    temperatures: list[float]
    views: int
    runtime: str
    n_val: int
    model_sha256: str
    logits_sha256: str

    def save(self, path: str | os.PathLike) -> None:
        write_json(
            path,
            {
                "labels": list(MIXED_LABELS),
                "temperatures": [float(t) for t in self.temperatures],
                "views": self.views,
                "runtime": self.runtime,
                "fit_on": "val",
                "n_val": self.n_val,
                "model_sha256": self.model_sha256,
                "logits_sha256": self.logits_sha256,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> MixedCalibration:
        data = read_object(path)
        n_val = data.get("n_val")
        return cls(
            temperatures=_per_label(data, "temperatures", path, "temperature"),
            views=checked_field(data, "views", path),
            runtime=checked_field(data, "runtime", path),
            n_val=n_val if isinstance(n_val, int) else 0,
            model_sha256=checked_field(data, "model_sha256", path),
            logits_sha256=checked_field(data, "logits_sha256", path),
        )


@dataclass(frozen=True)
class MixedThresholds:
    objective: str  # the served point
    cost_ratio: float
    points: dict[str, list[float]]  # objective -> per-label thresholds
    temperatures: list[float]
    model_sha256: str
    logits_sha256: str

    @property
    def served(self) -> list[float]:
        return self.points[self.objective]

    def save(self, path: str | os.PathLike) -> None:
        write_json(
            path,
            {
                "labels": list(MIXED_LABELS),
                "objective": self.objective,
                "cost_ratio": self.cost_ratio,
                "points": {k: [float(t) for t in v] for k, v in self.points.items()},
                "temperatures": [float(t) for t in self.temperatures],
                "fit_on": "val",
                "model_sha256": self.model_sha256,
                "logits_sha256": self.logits_sha256,
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> MixedThresholds:
        data = read_object(path)
        objective = data.get("objective")
        if objective not in MIXED_OBJECTIVES:
            raise WaferInputError(path, f"field 'objective' must be one of {MIXED_OBJECTIVES}")
        points = data.get("points")
        if not isinstance(points, dict) or set(points) != set(MIXED_OBJECTIVES):
            raise WaferInputError(path, f"field 'points' must hold {', '.join(MIXED_OBJECTIVES)}")
        return cls(
            objective=objective,
            cost_ratio=float(checked_field(data, "cost_ratio", path)),
            points={k: _per_label(points, k, path, "threshold") for k in MIXED_OBJECTIVES},
            temperatures=_per_label(data, "temperatures", path, "temperature"),
            model_sha256=checked_field(data, "model_sha256", path),
            logits_sha256=checked_field(data, "logits_sha256", path),
        )


def check_mixed_binding(
    model: str | Path,
    digest: str,
    calibration: str | Path,
    cal: MixedCalibration,
    thresholds: str | Path,
    thr: MixedThresholds,
) -> None:
    """The calibration and thresholds were fit on this model's logits, the same logits, and the
    thresholds at these temperatures; else one line naming the files that disagree."""
    for path, fit_for in ((calibration, cal.model_sha256), (thresholds, thr.model_sha256)):
        if fit_for != digest:
            raise WaferInputError(
                path,
                f"fit for another model (model_sha256 {fit_for[:12]}…, but {model} is "
                f"{digest[:12]}…): these files do not belong together",
            )
    same_t = all(
        math.isclose(a, b, rel_tol=1e-6)
        for a, b in zip(cal.temperatures, thr.temperatures, strict=True)
    )
    if cal.logits_sha256 != thr.logits_sha256 or not same_t:
        raise WaferInputError(
            f"{calibration} / {thresholds}",
            "fit on different logits or temperatures: re-run the pipeline to get a matching set",
        )
