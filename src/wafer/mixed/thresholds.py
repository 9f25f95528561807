"""Per-label thresholds of the multi-label model, fit on the calibrated validation
probabilities, at two operating points (``thresholds.objective`` picks the served one):

* ``cost``: label k's threshold minimises ``cost_ratio * escapes_k + false_alarms_k`` on
  validation, where an *escape* is a present pattern predicted absent and a *false alarm* an
  absent pattern predicted present (label level, as the 9-class screen counts them per map);
* ``macro_f1``: label k's threshold maximises its validation F1 (macro-F1 is the mean of the
  per-label F1, so the per-label maxima maximise it).

Candidates are the midpoints between consecutive distinct validation probabilities of the label
(and 0.5); among equally good ones the one nearest 0.5 wins, so a flat optimum does not push a
threshold to an extreme. A label with fewer than ``min_support`` positive validation maps keeps
0.5: too few to fit on (MixedWM38's Near-full has 77 maps in all).
"""

from __future__ import annotations

import numpy as np

from wafer.mixed.labels import MIXED_LABELS

DEFAULT = 0.5


def candidates(p: np.ndarray) -> np.ndarray:
    u = np.unique(p)
    mids = (u[1:] + u[:-1]) / 2 if len(u) > 1 else u
    return np.unique(np.concatenate([mids, [DEFAULT]]))


def _counts(p: np.ndarray, y: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, ...]:
    """True positives, escapes (FN) and false alarms (FP) at each candidate threshold."""
    order = np.sort(p[y == 1])
    neg = np.sort(p[y == 0])
    fn = np.searchsorted(order, cand, side="left")  # positives below the threshold
    tp = len(order) - fn
    fp = len(neg) - np.searchsorted(neg, cand, side="left")
    return tp, fn, fp


def _pick(value: np.ndarray, cand: np.ndarray) -> float:
    """The candidate with the least ``value``; ties -> nearest 0.5."""
    best = np.flatnonzero(value <= value.min() + 1e-12)
    return float(cand[best[np.argmin(np.abs(cand[best] - DEFAULT))]])


def fit_label_threshold(p: np.ndarray, y: np.ndarray, objective: str, cost_ratio: float) -> float:
    cand = candidates(p)
    tp, fn, fp = _counts(p, y, cand)
    if objective == "cost":
        return _pick(cost_ratio * fn + fp, cand)
    if objective == "macro_f1":
        denom = 2 * tp + fn + fp
        f1 = np.divide(2 * tp, denom, out=np.zeros(len(cand)), where=denom > 0)
        return _pick(-f1, cand)
    raise ValueError(f"objective must be 'cost' or 'macro_f1', not {objective!r}")


def fit_thresholds(
    probs: np.ndarray, y: np.ndarray, objective: str, cost_ratio: float, min_support: int
) -> tuple[np.ndarray, list[str]]:
    """Per-label thresholds ``(L,)`` and the labels left at 0.5 for want of support."""
    out = np.full(probs.shape[1], DEFAULT)
    unfit = []
    for k in range(probs.shape[1]):
        if int(y[:, k].sum()) < max(1, min_support):
            unfit.append(MIXED_LABELS[k])
            continue
        out[k] = fit_label_threshold(probs[:, k], y[:, k], objective, cost_ratio)
    return out, unfit


def predict(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Multi-hot predictions (uint8): label k present where ``p_k >= t_k``."""
    return (np.asarray(probs) >= np.asarray(thresholds)[None, :]).astype(np.uint8)
