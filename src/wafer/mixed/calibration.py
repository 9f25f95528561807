"""Per-label temperature scaling for the multi-label model, fit on the served validation logits.

Each label k gets its own temperature ``T_k`` (``p_k = sigmoid(z_k / T_k)``), the minimiser of
the validation binary cross-entropy of that label (bounded scalar search on ``log T``): 8
parameters, one per output, as temperature scaling is for a softmax (Guo et al. 2017); it
changes no ranking, so per-label thresholds and AUPRC are unchanged in kind, only the
probabilities a person reads become honest. A label with no positive (or no negative)
validation map keeps ``T = 1``: there is nothing to fit.

Calibration error per label is the binned gap of :func:`wafer.serving.calibration.binned_gap`
(equal-width bins of ``p_k`` against the frequency of label k), before and after.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

from wafer.serving.calibration import bin_index, binned_gap

LOG_T_BOUNDS = (-3.0, 3.0)  # T in [0.05, 20]


def sigmoid(logits: np.ndarray, temperatures: np.ndarray | None = None) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return expit(z if temperatures is None else z / np.asarray(temperatures, dtype=np.float64))


def bce(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of the logits (one column or many) against 0/1 targets."""
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(-(y * log_expit(z) + (1 - y) * log_expit(-z)).mean()) if z.size else float("nan")


def fit_temperatures(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``T_k`` per label (module docstring), shape ``(L,)``."""
    out = np.ones(logits.shape[1])
    for k in range(logits.shape[1]):
        z, t = logits[:, k].astype(np.float64), y[:, k]
        if t.min() == t.max():  # no positive or no negative: nothing to fit
            continue
        res = minimize_scalar(
            lambda s, z=z, t=t: bce(z / np.exp(s), t), bounds=LOG_T_BOUNDS, method="bounded"
        )
        out[k] = float(np.exp(res.x))
    return out


def label_ece(probs: np.ndarray, y: np.ndarray, n_bins: int) -> np.ndarray:
    """Per-label ECE, shape ``(L,)``."""
    return np.array([binned_gap(probs[:, k], y[:, k] == 1, n_bins) for k in range(probs.shape[1])])


def reliability_rows(probs: np.ndarray, y: np.ndarray, n_bins: int) -> list[dict]:
    """Pooled over the labels: per bin of ``p`` the mean ``p`` ('confidence'), the frequency of
    the label being present ('accuracy', the name the reliability plot reads) and the count."""
    p, t = probs.ravel(), (y.ravel() == 1).astype(np.float64)
    idx = bin_index(p, n_bins)
    rows = []
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            rows.append(
                {
                    "bin": b,
                    "confidence": round(float(p[sel].mean()), 6),
                    "accuracy": round(float(t[sel].mean()), 6),
                    "count": int(sel.sum()),
                }
            )
    return rows
