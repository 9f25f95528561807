"""Test-set report of the served predictions: headline metrics, per-class breakdown, escapes and
false alarms at the chosen operating point, bootstrap intervals and prevalence-corrected
versions of the headline metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wafer.classes import CLASS_NAMES, NONE_INDEX
from wafer.metrics import (
    balanced_accuracy,
    bootstrap_ci,
    confusion,
    cost_weighted_error,
    escapes_false_alarms,
    macro_auprc,
    macro_f1,
    per_class_prf,
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


def evaluate(
    y: np.ndarray,
    pred: np.ndarray,
    probs: np.ndarray,
    cost_ratio: float,
    prior_weights: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    argmax_pred: np.ndarray | None = None,
) -> dict:
    """All test metrics of one set of served predictions (see module docstring)."""
    out = headline(y, pred, probs, cost_ratio)
    for name, fn in (("macro_f1", macro_f1), ("balanced_accuracy", balanced_accuracy)):
        lo, hi = bootstrap_ci(fn, y, pred, n_boot=n_boot, seed=seed)
        out[f"{name}_ci95"] = {"low": lo, "high": hi}
    out["per_class"] = per_class(y, pred)
    corrected = headline(y, pred, probs, cost_ratio, prior_weights)
    for name, fn in (("macro_f1", macro_f1), ("balanced_accuracy", balanced_accuracy)):
        lo, hi = bootstrap_ci(fn, y, pred, n_boot=n_boot, seed=seed, weights=prior_weights)
        corrected[f"{name}_ci95"] = {"low": lo, "high": hi}
    corrected["per_class"] = per_class(y, pred, prior_weights)
    out["prevalence_corrected"] = corrected
    if argmax_pred is not None:  # what thresholds and the operating point changed
        out["argmax"] = {
            "macro_f1": macro_f1(y, argmax_pred),
            "balanced_accuracy": balanced_accuracy(y, argmax_pred),
            "macro_f1_prevalence_corrected": macro_f1(y, argmax_pred, prior_weights),
        } | operating_point(y, argmax_pred, cost_ratio)
    out["n"] = int(len(y))
    return out


def prior_from_list(values: Sequence[float]) -> dict[str, float]:
    if len(values) != len(CLASS_NAMES):
        raise ValueError(
            f"target_prior needs {len(CLASS_NAMES)} values in the order {', '.join(CLASS_NAMES)};"
            f" got {len(values)}"
        )
    return dict(zip(CLASS_NAMES, (float(v) for v in values), strict=True))
