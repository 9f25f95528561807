"""The served decision rule and the fitting of its parameters.

Decision rule
-------------
Given class probabilities ``p`` (one row of ``(N, C)``), an operating point ``tau`` and per-class
thresholds ``t`` (length ``C``; the entry for 'none' is ignored), the predicted class is:

1. **Defect or not.** The map is flagged as a defect iff ``P(defect) = 1 - p_none >= tau``.
   If it is not flagged, the prediction is 'none'.
2. **Which defect.** Among the 8 defect classes, ordered by probability (descending; equal
   probabilities keep class-index order), take the first class ``k`` with ``p_k >= t_k`` (the
   seed's cascade). If no defect class clears its threshold, take the most probable defect class.

:func:`decide` implements exactly this rule, and it is the same function that the fitting code
below evaluates, so the rule is applied identically at fit time and at prediction time. With all
thresholds 0 step 2 is the plain argmax over the defect classes.

Consequence: separate fits
--------------------------
Escapes (a true defect predicted 'none') and false alarms (a true 'none' predicted as a defect)
depend only on step 1, i.e. on ``tau`` alone: step 2 never produces 'none' and only moves a
flagged map between defect classes. The two parameter sets are therefore fit separately:

* ``tau`` on the escape / false-alarm cost -- :func:`sweep` over a grid of ``tau`` values
  (:func:`default_taus`), then :func:`choose_tau` (minimum
  ``cost = (c * escapes + false_alarms) / N``; ties to higher macro-F1, then to ``tau`` nearest
  0.5);
* ``t_k`` on macro-F1 at that ``tau`` -- :func:`fit_class_thresholds`, coordinate ascent on the
  validation data.
"""

from __future__ import annotations

import numpy as np

from wafer.classes import NONE_INDEX
from wafer.metrics import cost_weighted_error, escapes_false_alarms, macro_f1


def default_taus() -> np.ndarray:
    """The operating-point grid 0.05, 0.06, ..., 0.99."""
    return np.round(np.arange(0.05, 0.99 + 1e-9, 0.01), 2)


def _defect_columns(num_classes: int, none_index: int) -> np.ndarray:
    return np.array([k for k in range(num_classes) if k != none_index], dtype=np.int64)


def _defect_choice(
    probs: np.ndarray, class_thresholds: np.ndarray, none_index: int = NONE_INDEX
) -> np.ndarray:
    """Step 2 of the rule for every row: the chosen defect class (never 'none'), int64 (N,)."""
    cols = _defect_columns(probs.shape[1], none_index)
    pd = probs[:, cols]
    td = np.asarray(class_thresholds, dtype=np.float64)[cols]
    order = np.argsort(-pd, axis=1, kind="stable")
    sorted_p = np.take_along_axis(pd, order, axis=1)
    clears = sorted_p >= td[order]
    first = np.argmax(clears, axis=1)  # first clearing position; 0 when none clears
    pos = np.where(clears.any(axis=1), first, 0)  # fallback: the most probable defect
    return cols[order[np.arange(len(pd)), pos]]


def _flag(probs: np.ndarray, tau: float, none_index: int = NONE_INDEX) -> np.ndarray:
    """Step 1 of the rule: True where ``1 - p_none >= tau``."""
    return (1.0 - probs[:, none_index]) >= tau


def decide(
    probs: np.ndarray, class_thresholds: np.ndarray, tau: float, none_index: int = NONE_INDEX
) -> np.ndarray:
    """Apply the decision rule (module docstring) to each row of ``probs``; int64 ``(N,)``."""
    probs = np.asarray(probs, dtype=np.float64)
    choice = _defect_choice(probs, class_thresholds, none_index)
    return np.where(_flag(probs, tau, none_index), choice, none_index).astype(np.int64)


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
    ``class_thresholds`` defaults to all zeros (argmax among defects). Optional per-sample
    ``weights`` (e.g. :func:`wafer.metrics.prevalence_weights`) turn every count into a weighted
    count, with ``N`` = the sum of weights.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if class_thresholds is None:
        class_thresholds = np.zeros(probs.shape[1])
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    n = float(w.sum())
    n_defect = float(w[labels != NONE_INDEX].sum())
    n_none = float(w[labels == NONE_INDEX].sum())
    choice = _defect_choice(probs, class_thresholds)  # independent of tau
    rows = []
    for tau in np.asarray(taus, dtype=np.float64):
        pred = np.where(_flag(probs, tau), choice, NONE_INDEX)
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


def fit_class_thresholds(
    probs: np.ndarray,
    labels: np.ndarray,
    tau: float,
    grid: np.ndarray = np.round(np.arange(0.0, 0.96, 0.05), 2),
    rounds: int = 2,
) -> np.ndarray:
    """Per-class thresholds ``(C,)`` maximising macro-F1 of :func:`decide` at a fixed ``tau``.

    Coordinate ascent from all-zero thresholds (plain argmax among defects): each round visits
    the defect classes in index order and sets ``t_k`` to the grid value that maximises macro-F1
    on the given (validation) data, the other thresholds held fixed. Ties keep the smaller
    threshold (stability). The current value is always a candidate, so macro-F1 never falls
    below that of all-zero thresholds. The entry for 'none' is 0.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    grid = np.sort(np.asarray(grid, dtype=np.float64))
    thresholds = np.zeros(probs.shape[1], dtype=np.float64)
    flag = _flag(probs, tau)  # step 1 does not depend on the thresholds

    def score(t: np.ndarray) -> float:
        pred = np.where(flag, _defect_choice(probs, t), NONE_INDEX)
        return macro_f1(labels, pred)

    for _ in range(rounds):
        for k in _defect_columns(probs.shape[1], NONE_INDEX):
            # the current value is a candidate too, so macro-F1 never decreases
            best_v, best_s = thresholds[k], -np.inf
            for v in np.union1d(grid, thresholds[k]):  # ascending: '>' keeps the smaller on ties
                trial = thresholds.copy()
                trial[k] = v
                s = score(trial)
                if s > best_s:
                    best_v, best_s = v, s
            thresholds[k] = best_v
    thresholds[NONE_INDEX] = 0.0
    return thresholds
