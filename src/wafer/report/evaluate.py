"""Report of one split's served predictions: headline metrics, per-class breakdown, escapes and
false alarms at the operating point, bootstrap intervals and prevalence-corrected versions of
the headline metrics. The `evaluate` stage runs it on validation (what choices between runs,
recipes and sizes are made on) and on test (reported once), with the same code."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wafer.core.classes import CLASS_NAMES, NONE_INDEX
from wafer.report.metrics import (
    balanced_accuracy,
    bootstrap_ci,
    confusion,
    cost_weighted_error,
    escapes_false_alarms,
    macro_auprc,
    macro_f1,
    per_class_prf,
    prevalence_weights,
)


def operating_point(y, pred, cost_ratio: float, weights=None) -> dict:
    n = float(len(y) if weights is None else np.sum(weights))
    w = np.ones(len(y)) if weights is None else weights
    esc, fa = escapes_false_alarms(y, pred, weights)
    n_defect, n_none = float(w[y != NONE_INDEX].sum()), float(w[y == NONE_INDEX].sum())
    return {
        "escapes": esc,
        "false_alarms": fa,
        "escape_rate": esc / n_defect if n_defect else float("nan"),
        "false_alarm_rate": fa / n_none if n_none else float("nan"),
        "cost": cost_weighted_error(esc, fa, n, cost_ratio),
    }


def headline(y, pred, probs, cost_ratio: float, weights=None) -> dict:
    cm = confusion(y, pred, weights)
    prf = per_class_prf(cm)
    return {
        "macro_f1": macro_f1(y, pred, weights),
        "balanced_accuracy": balanced_accuracy(y, pred, weights),
        "accuracy": float(np.trace(cm) / cm.sum()),
        "macro_auprc": macro_auprc(y, probs, weights),
        "macro_precision": float(prf["precision"][cm.sum(axis=1) > 0].mean()),
        "macro_recall": float(prf["recall"][cm.sum(axis=1) > 0].mean()),
    } | operating_point(y, pred, cost_ratio, weights)


def per_class(y, pred, weights=None) -> dict:
    prf = per_class_prf(confusion(y, pred, weights))
    return {
        name: {k: float(prf[k][i]) for k in ("precision", "recall", "f1", "support")}
        for i, name in enumerate(CLASS_NAMES)
    }


def _prior_resamples(stat, y_true: np.ndarray, prior: dict[str, float], n_boot: int, seed: int):
    """``stat(idx, y, weights)`` over ``n_boot`` resamples of the rows (``idx``, ``y_true[idx]``),
    the prevalence weights recomputed from each resample's own class counts (they depend on
    them), not frozen at the full sample's."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        yb = y_true[idx]
        stats[b] = stat(idx, yb, prevalence_weights(yb, prior))
    return stats


def bootstrap_ci_prior(
    fn,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    prior: dict[str, float],
    n_boot: int,
    seed: int,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the prevalence-corrected ``fn(y, pred, weights)``
    (weights per resample: :func:`_prior_resamples`)."""
    stats = _prior_resamples(lambda idx, yb, w: fn(yb, y_pred[idx], w), y_true, prior, n_boot, seed)
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


# A candidate replaces its baseline (the cleaned-label model the single model, say) only for a
# gain validation resolves: the paired bootstrap's one-sided lower bound at this confidence is
# above zero. Fixed here, before the runs it decides, and no param: a rule to tune is no rule.
ADOPT_CONFIDENCE = 0.95


def paired_gain_prior(
    fn,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    y_base: np.ndarray,
    prior: dict[str, float],
    n_boot: int,
    seed: int,
    confidence: float = ADOPT_CONFIDENCE,
) -> dict[str, float]:
    """The gain of predictions ``y_pred`` over ``y_base`` (the same maps) in the
    prevalence-corrected ``fn(y, pred, weights)``, with a paired percentile bootstrap: each
    resample draws the same maps for both, so what they share (the maps' difficulty) cancels,
    and the weights are recomputed from the resample's class counts. Returns both figures on
    the whole sample (``candidate``, ``baseline``) and their difference (``gain``), the
    one-sided lower bound of the gain at ``confidence`` and the two-sided interval at the same
    confidence (``low``, ``high``), and the share of resamples with a gain above zero."""
    if len(y_pred) != len(y_true) or len(y_base) != len(y_true):
        raise ValueError(
            f"paired predictions need the same maps: {len(y_true)} labels, "
            f"{len(y_pred)} and {len(y_base)} predictions"
        )
    if not 0.5 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    gains = _prior_resamples(
        lambda idx, yb, w: fn(yb, y_pred[idx], w) - fn(yb, y_base[idx], w),
        y_true,
        prior,
        n_boot,
        seed,
    )
    w = prevalence_weights(y_true, prior)
    candidate, baseline = float(fn(y_true, y_pred, w)), float(fn(y_true, y_base, w))
    tail = 1.0 - confidence
    lower, low, high = np.quantile(gains, [tail, tail / 2, 1 - tail / 2])
    return {
        "candidate": candidate,
        "baseline": baseline,
        "gain": candidate - baseline,
        "lower_bound": float(lower),
        "low": float(low),
        "high": float(high),
        "share_above_zero": float(np.mean(gains > 0)),
    }


def compact(y, pred, cost_ratio: float, prior_weights: np.ndarray) -> dict:
    """The few figures that compare decision rules: macro-F1 (raw and prevalence-corrected),
    balanced accuracy, escapes / false alarms and cost (raw and prevalence-corrected)."""
    return (
        {
            "macro_f1": macro_f1(y, pred),
            "macro_f1_prevalence_corrected": macro_f1(y, pred, prior_weights),
            "balanced_accuracy": balanced_accuracy(y, pred),
        }
        | operating_point(y, pred, cost_ratio)
        | {
            f"{k}_prevalence_corrected": v
            for k, v in operating_point(y, pred, cost_ratio, prior_weights).items()
        }
    )


def evaluate(
    y: np.ndarray,
    pred: np.ndarray,
    probs: np.ndarray,
    cost_ratio: float,
    prior: dict[str, float],
    n_boot: int,
    seed: int,
) -> dict:
    """All metrics of one set of served predictions (see module docstring); ``prior`` is the
    target class prior of the prevalence-corrected figures."""
    weights = prevalence_weights(y, prior)
    out = headline(y, pred, probs, cost_ratio)
    for name, fn in (("macro_f1", macro_f1), ("balanced_accuracy", balanced_accuracy)):
        lo, hi = bootstrap_ci(fn, y, pred, n_boot=n_boot, seed=seed)
        out[f"{name}_ci95"] = {"low": lo, "high": hi}
    out["per_class"] = per_class(y, pred)
    corrected = headline(y, pred, probs, cost_ratio, weights)
    for name, fn in (("macro_f1", macro_f1), ("balanced_accuracy", balanced_accuracy)):
        lo, hi = bootstrap_ci_prior(fn, y, pred, prior, n_boot=n_boot, seed=seed)
        corrected[f"{name}_ci95"] = {"low": lo, "high": hi}
    corrected["per_class"] = per_class(y, pred, weights)
    out["prevalence_corrected"] = corrected
    out["n"] = int(len(y))
    return out


def prior_from_list(values: Sequence[float]) -> dict[str, float]:
    if len(values) != len(CLASS_NAMES):
        raise ValueError(
            f"target_prior needs {len(CLASS_NAMES)} values in the order {', '.join(CLASS_NAMES)};"
            f" got {len(values)}"
        )
    return dict(zip(CLASS_NAMES, (float(v) for v in values), strict=True))
