"""The two operating points of the served decision rule, and the fitting of their parameters.

The decision rule itself (:func:`wafer.serving.decision.decide`, documented there) is the served
one; the fitting below evaluates the same functions, so it is applied identically at fit time and at
prediction time.

Consequence: separate fits
--------------------------
Escapes (a true defect predicted 'none') and false alarms (a true 'none' predicted as a defect)
depend only on step 1, i.e. on ``tau`` alone: step 2 never produces 'none' and only moves a
flagged map between defect classes. Each operating point is fit in two steps on validation, with
every count weighted to the target class prior (importance weights
:func:`wafer.report.metrics.prevalence_weights`; the prior is the one the headline reports under):

* ``tau`` by the point's objective over a grid (:func:`default_taus`, :func:`sweep`):
  ``cost`` -- minimum ``(c * escapes + false_alarms) / N`` (:func:`choose_tau`);
  ``macro_f1`` -- maximum macro-F1 (:func:`choose_tau_macro_f1`);
* then ``t_k`` on macro-F1 at that ``tau`` (:func:`fit_class_thresholds`): coordinate ascent
  that only raises the threshold of a class with at least ``min_support`` validation maps, and
  only for a gain of at least ``min_gain`` in validation macro-F1.
"""

from __future__ import annotations

import numpy as np

from wafer.config.rules import OBJECTIVES
from wafer.core.classes import NONE_INDEX
from wafer.report.metrics import cost_weighted_error, escapes_false_alarms, macro_f1
from wafer.serving.decision import defect_choice, defect_columns, flag_defects


def default_taus() -> np.ndarray:
    """The operating-point grid 0.05, 0.06, ..., 0.99."""
    return np.round(np.arange(0.05, 0.99 + 1e-9, 0.01), 2)


def floor_thresholds(num_classes: int, min_threshold: float) -> np.ndarray:
    """Every defect class at the floor ('none' at 0): the plain argmax among defects."""
    t = np.full(num_classes, float(min_threshold))
    t[NONE_INDEX] = 0.0
    return t


def sweep(
    probs: np.ndarray,
    labels: np.ndarray,
    taus: np.ndarray,
    cost_ratio: float,
    class_thresholds: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> list[dict]:
    """One row per ``tau``: tau, escapes, false_alarms, escape_rate, false_alarm_rate, macro_f1,
    cost.

    ``escape_rate`` = escapes / true defects, ``false_alarm_rate`` = false alarms / true 'none'
    (nan when the denominator is 0); ``cost = (cost_ratio * escapes + false_alarms) / N``.
    ``class_thresholds`` defaults to all zeros (argmax among defects, as any floor gives).
    Optional per-sample ``weights`` (e.g. :func:`wafer.report.metrics.prevalence_weights`) turn
    every count into a weighted count, with ``N`` = the sum of weights.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if class_thresholds is None:
        class_thresholds = np.zeros(probs.shape[1])
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    n = float(w.sum())
    n_defect = float(w[labels != NONE_INDEX].sum())
    n_none = float(w[labels == NONE_INDEX].sum())
    choice = defect_choice(probs, class_thresholds)  # independent of tau
    rows = []
    for tau in np.asarray(taus, dtype=np.float64):
        pred = np.where(flag_defects(probs, tau), choice, NONE_INDEX)
        esc, fa = escapes_false_alarms(labels, pred, weights)
        rows.append(
            {
                "tau": float(tau),
                "escapes": esc,
                "false_alarms": fa,
                "escape_rate": esc / n_defect if n_defect > 0 else float("nan"),
                "false_alarm_rate": fa / n_none if n_none > 0 else float("nan"),
                "macro_f1": macro_f1(labels, pred, weights),
                "cost": cost_weighted_error(esc, fa, n, cost_ratio),
            }
        )
    return rows


def choose_tau(rows: list[dict]) -> dict:
    """The row of minimal cost; ties go to higher macro_f1, then to tau closest to 0.5."""
    if not rows:
        raise ValueError("choose_tau needs at least one sweep row")
    return min(rows, key=lambda r: (r["cost"], -r["macro_f1"], abs(r["tau"] - 0.5)))


def choose_tau_macro_f1(rows: list[dict]) -> dict:
    """The row of maximal macro_f1; ties go to lower cost, then to tau closest to 0.5."""
    if not rows:
        raise ValueError("choose_tau_macro_f1 needs at least one sweep row")
    return min(rows, key=lambda r: (-r["macro_f1"], r["cost"], abs(r["tau"] - 0.5)))


CHOOSERS = {"cost": choose_tau, "macro_f1": choose_tau_macro_f1}


def fit_class_thresholds(
    probs: np.ndarray,
    labels: np.ndarray,
    tau: float,
    weights: np.ndarray | None,
    min_threshold: float,
    min_support: int,
    min_gain: float,
    step: float = 0.05,
    rounds: int = 2,
) -> tuple[np.ndarray, dict]:
    """Per-class thresholds ``(C,)`` that raise the (weighted) macro-F1 of
    :func:`wafer.serving.decision.decide` at a fixed ``tau``, and a record of the fit:
    ``{"fitted": [...], "too_few_maps": [...]}``.

    Starts with every threshold at ``min_threshold`` (plain argmax among defects). Each round
    visits the defect classes with at least ``min_support`` validation maps, in index order, and
    moves ``t_k`` to the value of the grid ``min_threshold, min_threshold + step, ..., <= 0.95``
    that maximises macro-F1 with the other thresholds held, but only when that beats the current
    value by at least ``min_gain`` (ties and small gains keep the current value, so the fit
    never lowers validation macro-F1, and noise does not move it). Classes with fewer maps keep
    the floor. The entry for 'none' is 0.
    """
    if not 0.0 < min_threshold <= 1.0:
        raise ValueError(f"min_threshold must be in (0, 1], got {min_threshold}")
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    grid = np.round(np.arange(min_threshold, 0.95 + 1e-9, step), 4)
    thresholds = floor_thresholds(probs.shape[1], min_threshold)
    flag = flag_defects(probs, tau)  # step 1 does not depend on the thresholds
    support = np.bincount(labels, minlength=probs.shape[1])

    def score(t: np.ndarray) -> float:
        return macro_f1(labels, np.where(flag, defect_choice(probs, t), NONE_INDEX), weights)

    defects = defect_columns(probs.shape[1], NONE_INDEX)
    eligible = [int(k) for k in defects if support[k] >= min_support]
    current = score(thresholds)
    for _ in range(rounds):
        for k in eligible:
            best_v, best_s = thresholds[k], current
            for v in grid:
                trial = thresholds.copy()
                trial[k] = v
                s = score(trial)
                if s >= best_s + min_gain and s > best_s:
                    best_v, best_s = v, s
            if best_v != thresholds[k]:
                thresholds[k], current = best_v, best_s
    record = {
        "fitted": [int(k) for k in eligible if thresholds[k] != min_threshold],
        "too_few_maps": [int(k) for k in defects if support[k] < min_support],
    }
    return thresholds, record


def fit_operating_point(
    probs: np.ndarray,
    labels: np.ndarray,
    objective: str,
    cost_ratio: float,
    weights: np.ndarray | None,
    min_threshold: float,
    min_support: int,
    min_gain: float,
) -> dict:
    """One operating point fit on (validation) data: ``tau`` by ``objective`` (``cost`` or
    ``macro_f1``, see the module docstring), then the per-class thresholds at that ``tau``.

    Returns ``{"tau", "class_thresholds" (C,), "sweep" (rows), "chosen" (the sweep row),
    "fit" (fit_class_thresholds' record)}``.
    """
    if objective not in CHOOSERS:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
    floor = floor_thresholds(probs.shape[1], min_threshold)
    rows = sweep(probs, labels, default_taus(), cost_ratio, floor, weights)
    chosen = CHOOSERS[objective](rows)
    thresholds, record = fit_class_thresholds(
        probs, labels, chosen["tau"], weights, min_threshold, min_support, min_gain
    )
    return {
        "tau": float(chosen["tau"]),
        "class_thresholds": thresholds,
        "sweep": rows,
        "chosen": chosen,
        "fit": record,
    }
