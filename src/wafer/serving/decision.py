"""The served decision rule and what applies it: :func:`decide` (and its two steps) turns
calibrated probabilities into the served class; :class:`ServingConfig` holds the temperature,
TTA views, runtime and operating point read from the served files and turns served logits into
served decisions (:meth:`ServingConfig.decide`), for `wafer predict`, the demo and the `evaluate`
stage alike, so the reported figures describe exactly the served predictions.

Decision rule
-------------
Given class probabilities ``p`` (one row of ``(N, C)``), an operating point ``tau`` and per-class
thresholds ``t`` (length ``C``; the entry for 'none' is ignored), the predicted class is:

1. **Defect or not.** The map is flagged as a defect iff ``P(defect) = 1 - p_none >= tau``.
   If it is not flagged, the prediction is 'none'.
2. **Which defect.** A defect class is *accepted* when its own probability clears its threshold,
   ``p_k >= t_k``; the prediction is the most probable accepted defect class (equal
   probabilities keep class-index order). If no defect class is accepted, it is the most
   probable defect class.

:func:`decide` implements exactly this rule; the fitting code (:mod:`wafer.serving.thresholds`)
evaluates the same functions, so the rule is applied identically at fit time and at prediction time.

Thresholds never go below a floor ``min_threshold`` (> 0), and all start there: with every
threshold at the floor, step 2 is the plain argmax over the defect classes (the most probable
defect class is accepted whenever anything is). A raised threshold ``t_a`` only lets another
class ``b`` take a map from ``a`` when ``p_a < t_a`` *and* ``p_b >= t_b >= min_threshold``: a
class with almost no probability can never take a map, which the earlier all-zero start allowed
(a threshold of 0 always clears).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from wafer.core.classes import NONE_INDEX
from wafer.core.errors import WaferInputError
from wafer.core.io import sha256_file
from wafer.core.probs import softmax
from wafer.serving.conformal import SetRule
from wafer.serving.files import Calibration, OperatingPoint, Thresholds, check_binding


def defect_columns(num_classes: int, none_index: int) -> np.ndarray:
    """The class indices other than ``none_index``."""
    return np.array([k for k in range(num_classes) if k != none_index], dtype=np.int64)


def defect_choice(
    probs: np.ndarray, class_thresholds: np.ndarray, none_index: int = NONE_INDEX
) -> np.ndarray:
    """Step 2 of the rule for every row: the chosen defect class (never 'none'), int64 (N,)."""
    cols = defect_columns(probs.shape[1], none_index)
    pd = probs[:, cols]
    td = np.asarray(class_thresholds, dtype=np.float64)[cols]
    order = np.argsort(-pd, axis=1, kind="stable")
    sorted_p = np.take_along_axis(pd, order, axis=1)
    clears = sorted_p >= td[order]
    first = np.argmax(clears, axis=1)  # first clearing position; 0 when none clears
    pos = np.where(clears.any(axis=1), first, 0)  # fallback: the most probable defect
    return cols[order[np.arange(len(pd)), pos]]


def flag_defects(probs: np.ndarray, tau: float, none_index: int = NONE_INDEX) -> np.ndarray:
    """Step 1 of the rule: True where ``1 - p_none >= tau``."""
    return (1.0 - probs[:, none_index]) >= tau


def decide(
    probs: np.ndarray, class_thresholds: np.ndarray, tau: float, none_index: int = NONE_INDEX
) -> np.ndarray:
    """Apply the decision rule (module docstring) to each row of ``probs``; int64 ``(N,)``."""
    probs = np.asarray(probs, dtype=np.float64)
    choice = defect_choice(probs, class_thresholds, none_index)
    return np.where(flag_defects(probs, tau, none_index), choice, none_index).astype(np.int64)


@dataclass(frozen=True)
class Decision:
    probs: np.ndarray  # (N, C) calibrated probabilities
    pred: np.ndarray  # (N,) class index after thresholds and operating point
    defect: np.ndarray  # (N,) bool: flagged as a defect (1 - p_none >= tau)
    sets: np.ndarray | None = None  # (N, C) bool: the prediction set (None: no set rule)


@dataclass(frozen=True)
class ServingConfig:
    """Temperature, TTA views, runtime and the served operating point: what turns served logits into
    served decisions."""

    temperature: float
    views: int
    runtime: str
    tau: float
    class_thresholds: tuple[float, ...]
    cost_ratio: float  # escape : false-alarm cost of the `cost` operating point
    objective: str  # which operating point is served
    points: tuple[tuple[str, OperatingPoint], ...]  # every fitted point, by objective
    budget: dict | None = None  # the escape budget's guarantee (wafer.serving.screen)
    sets: SetRule | None = None  # the prediction-set rule (wafer.serving.conformal)
    quantization: dict | None = None  # runtime int8: its graph's record (wafer.model.runtime)

    @classmethod
    def load(
        cls,
        calibration: str | Path,
        thresholds: str | Path,
        model: str | Path | None = None,
        objective: str | None = None,
        model_sha256: str | None = None,
    ) -> ServingConfig:
        """Read and check the served files; ``objective`` overrides the file's served point.
        With ``model``, also check that the three files belong together (module docstring);
        ``model_sha256``: the model file's digest when the caller has it already."""
        cal, thr = Calibration.load(calibration), Thresholds.load(thresholds)
        if model is not None:
            digest = model_sha256 or sha256_file(model)
            check_binding(model, digest, calibration, cal, thresholds, thr)
        served = objective or thr.objective
        if served == "escape_budget" and thr.budget is not None and not thr.budget["attainable"]:
            raise WaferInputError(
                thresholds, f"the escape_budget point is refused: {thr.budget['why']}"
            )
        if served not in thr.points:
            raise WaferInputError(thresholds, f"missing field 'operating_points.{served}'")
        point = thr.points[served]
        return cls(
            temperature=cal.temperature,
            views=cal.views,
            runtime=cal.runtime,
            tau=point.tau,
            class_thresholds=point.class_thresholds,
            cost_ratio=thr.cost_ratio,
            objective=served,
            points=tuple(thr.points.items()),
            budget=thr.budget,
            sets=thr.sets,
            quantization=cal.quantization,
        )

    def at(self, objective: str) -> ServingConfig:
        """The same pipeline served at another fitted operating point."""
        point = dict(self.points).get(objective)
        if point is None:
            raise ValueError(f"no operating point {objective!r} (have {dict(self.points)})")
        return replace(
            self, objective=objective, tau=point.tau, class_thresholds=point.class_thresholds
        )

    def decide(self, logits: np.ndarray) -> Decision:
        """Served logits (the mean over ``views`` TTA views) -> calibrated probabilities and
        decisions."""
        probs = softmax(logits, self.temperature)
        pred = decide(probs, np.asarray(self.class_thresholds), self.tau)
        sets = self.sets.sets(probs) if self.sets is not None else None
        return Decision(probs=probs, pred=pred, defect=flag_defects(probs, self.tau), sets=sets)
