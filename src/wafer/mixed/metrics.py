"""Multi-label metrics of the mixed-type task, on multi-hot arrays ``(N, L)``.

* per label: precision, recall, F1, support; *escapes* (present, predicted absent) and *false
  alarms* (absent, predicted present) with their rates;
* macro-F1 (mean of the per-label F1 over the labels present in ``y``), micro-F1 (F1 of the
  pooled label decisions), exact-match (subset) accuracy, Hamming loss;
* accuracy per pattern code (exact match among the maps of each true code: the mixtures of
  3-4 patterns are the hard ones);
* percentile bootstrap intervals over maps (:func:`bootstrap`).
"""

from __future__ import annotations

import numpy as np

from wafer.mixed.labels import MIXED_LABELS, codes_of


def counts(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    return {
        "tp": (y & pred).sum(axis=0),
        "fn": (y & ~pred).sum(axis=0),
        "fp": (~y & pred).sum(axis=0),
        "tn": (~y & ~pred).sum(axis=0),
    }


def _f1(tp, fn, fp) -> np.ndarray:
    denom = 2 * tp + fn + fp
    return np.divide(2 * tp, denom, out=np.zeros(np.shape(tp), dtype=np.float64), where=denom > 0)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    c = counts(y, pred)
    present = (c["tp"] + c["fn"]) > 0
    return float(_f1(c["tp"], c["fn"], c["fp"])[present].mean()) if present.any() else 0.0


def micro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    c = counts(y, pred)
    return float(_f1(c["tp"].sum(), c["fn"].sum(), c["fp"].sum()))


def exact_match(y: np.ndarray, pred: np.ndarray) -> float:
    return float((np.asarray(y) == np.asarray(pred)).all(axis=1).mean()) if len(y) else 0.0


def hamming_loss(y: np.ndarray, pred: np.ndarray) -> float:
    return float((np.asarray(y) != np.asarray(pred)).mean()) if len(y) else 0.0


def logits_macro_f1(y: np.ndarray, logits: np.ndarray) -> float:
    """Macro-F1 at ``p >= 0.5`` (logit >= 0): the validation figure training stops on."""
    return macro_f1(y, (np.asarray(logits) >= 0).astype(np.uint8))


def per_label(y: np.ndarray, pred: np.ndarray) -> dict[str, dict]:
    c = counts(y, pred)
    tp, fn, fp, tn = c["tp"], c["fn"], c["fp"], c["tn"]
    f1 = _f1(tp, fn, fp)
    out = {}
    for k, name in enumerate(MIXED_LABELS):
        support, negatives = int(tp[k] + fn[k]), int(fp[k] + tn[k])
        out[name] = {
            "precision": float(tp[k] / (tp[k] + fp[k])) if tp[k] + fp[k] else 0.0,
            "recall": float(tp[k] / support) if support else 0.0,
            "f1": float(f1[k]),
            "support": support,
            "escapes": int(fn[k]),
            "false_alarms": int(fp[k]),
            "escape_rate": float(fn[k] / support) if support else None,
            "false_alarm_rate": float(fp[k] / negatives) if negatives else None,
        }
    return out


def per_pattern(y: np.ndarray, pred: np.ndarray) -> dict[str, dict]:
    """Exact-match accuracy per true pattern code, and how many maps each code has."""
    codes = codes_of(y)
    hit = (np.asarray(y) == np.asarray(pred)).all(axis=1)
    out = {}
    for code in sorted(np.unique(codes), key=lambda c: (len(c.split("-")), c)):
        sel = codes == code
        out[str(code)] = {"accuracy": float(hit[sel].mean()), "maps": int(sel.sum())}
    return out


def summary(y: np.ndarray, pred: np.ndarray) -> dict:
    c = counts(y, pred)
    return {
        "macro_f1": macro_f1(y, pred),
        "micro_f1": micro_f1(y, pred),
        "exact_match": exact_match(y, pred),
        "hamming_loss": hamming_loss(y, pred),
        "escapes": int(c["fn"].sum()),
        "false_alarms": int(c["fp"].sum()),
        "maps": int(len(y)),
    }


BOOTSTRAPPED = {"macro_f1": macro_f1, "micro_f1": micro_f1, "exact_match": exact_match}


def bootstrap(
    y: np.ndarray, pred: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> dict[str, list[float]]:
    """Percentile interval of each of :data:`BOOTSTRAPPED` over maps resampled with
    replacement (one resample drives all three)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    stats = {k: np.empty(n_boot) for k in BOOTSTRAPPED}
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        for k, fn in BOOTSTRAPPED.items():
            stats[k][b] = fn(y[idx], pred[idx])
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    return {k: [float(v) for v in np.quantile(s, q)] for k, s in stats.items()}


def label_matrix(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The per-label confusion view, ``(L + 1, L + 1)``: row i < L = the maps with label i,
    row L = the normal maps (no label). Cell (i, i) = label i's recall; cell (i, j != i) = the
    share of the maps with label i but *without* label j that were predicted with label j (a
    false alarm of j next to i: which labels a pattern drags in; co-occurring labels, which are
    not errors, are left out); column L = the share predicted normal (nothing at all). NaN where
    no map qualifies."""
    y, pred = np.asarray(y).astype(bool), np.asarray(pred).astype(bool)
    n_labels = y.shape[1]
    out = np.full((n_labels + 1, n_labels + 1), np.nan)
    nothing = ~pred.any(axis=1)
    for i in range(n_labels + 1):
        rows = y[:, i] if i < n_labels else ~y.any(axis=1)
        if not rows.any():
            continue
        out[i, n_labels] = nothing[rows].mean()
        for j in range(n_labels):
            sel = rows if j == i else rows & ~y[:, j]
            if sel.any():
                out[i, j] = pred[sel, j].mean()
    return out
