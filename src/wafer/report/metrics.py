"""Classification metrics, with optional per-sample weights (for prevalence correction).

Prevalence correction: a subset whose class mix differs from the population (the real subset
is 59 % 'none', the full WM-811K 85 %) is re-weighted so that each class's total weight matches
the target prior: sample weight ``w_i = pi_target[y_i] / pi_sample[y_i]``. Every quantity that
is computed within one true class is unchanged by such weights: per-class recall (and so
balanced accuracy) and the false-alarm rate (false alarms / true 'none', all within 'none').
Precision, F1, accuracy, the escape rate (a mix of the defect classes) and any count per map
(cost) change. The weights depend on the sample's class counts, so a bootstrap recomputes them
for every resample (:func:`wafer.report.evaluate.bootstrap_ci_prior`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from wafer.core.classes import CLASS_NAMES, NONE_INDEX, NUM_CLASSES


def confusion(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    weights: np.ndarray | None = None,
    num_classes: int = NUM_CLASSES,
) -> np.ndarray:
    """Rows = actual, columns = predicted; weighted counts when ``weights`` is given."""
    cm = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(cm, (y_true, y_pred), 1.0 if weights is None else weights)
    return cm


def per_class_prf(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def macro_f1(y_true, y_pred, weights=None) -> float:
    """Macro-F1 over the classes present in ``y_true``."""
    cm = confusion(y_true, y_pred, weights)
    present = cm.sum(axis=1) > 0
    return float(per_class_prf(cm)["f1"][present].mean())


def balanced_accuracy(y_true, y_pred, weights=None) -> float:
    cm = confusion(y_true, y_pred, weights)
    present = cm.sum(axis=1) > 0
    return float(per_class_prf(cm)["recall"][present].mean())


def macro_auprc(y_true: np.ndarray, probs: np.ndarray, weights=None) -> float:
    """Mean one-vs-rest average precision over the classes present (threshold-free)."""
    # Imported here: scikit-learn costs ~2 s of start-up, and train and thresholds, which import
    # this module for macro_f1, never call this function.
    from sklearn.metrics import average_precision_score

    aps = [
        average_precision_score(y_true == c, probs[:, c], sample_weight=weights)
        for c in range(probs.shape[1])
        if np.any(y_true == c)
    ]
    return float(np.mean(aps))


def escapes_false_alarms(y_true, y_pred, weights=None) -> tuple[float, float]:
    """escape: a defect predicted as 'none'; false alarm: a 'none' predicted as a defect."""
    w = np.ones(len(y_true)) if weights is None else weights
    esc = float(w[(y_true != NONE_INDEX) & (y_pred == NONE_INDEX)].sum())
    fa = float(w[(y_true == NONE_INDEX) & (y_pred != NONE_INDEX)].sum())
    return esc, fa


def cost_weighted_error(escapes: float, false_alarms: float, n: float, cost_ratio: float) -> float:
    """``(c * escapes + false_alarms) / N`` for an escape:false-alarm cost ratio ``c``."""
    return (cost_ratio * escapes + false_alarms) / n


def prevalence_weights(y: np.ndarray, target_counts: Mapping[str, float]) -> np.ndarray:
    """Per-sample weights that give each class its share of ``target_counts``; they sum to N."""
    target = np.array([float(target_counts[c]) for c in CLASS_NAMES])
    target = target / target.sum()
    observed = np.bincount(y, minlength=NUM_CLASSES) / len(y)
    present = observed > 0
    target = np.where(present, target, 0.0)
    target = target / target.sum()
    ratio = np.divide(target, observed, out=np.zeros_like(target), where=present)
    return ratio[y]


def bootstrap_ci(
    fn,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_boot: int,
    seed: int,
    level: float = 0.95,
    weights: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``fn(y_true, y_pred[, weights])`` over resampled rows."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        if weights is None:
            stats[b] = fn(y_true[idx], y_pred[idx])
        else:
            stats[b] = fn(y_true[idx], y_pred[idx], weights[idx])
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
