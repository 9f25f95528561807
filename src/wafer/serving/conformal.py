"""Split-conformal prediction sets for the label: for a review queue, the classes a map may
belong to, with a stated coverage.

Given the calibrated probabilities ``p`` of a map, its set is every class ``y`` whose
nonconformity score ``s(p, y)`` is at most ``qhat``; ``qhat`` is the
``ceil((n + 1)(1 - alpha)) / n`` empirical quantile of the true classes' scores on the ``n``
validation maps. Then, for a new map exchangeable with them, ``P(true class in set) >= 1 - alpha``
(marginal coverage; Vovk, Gammerman & Shafer, 2005; Angelopoulos & Bates, 2021, section 1).
The validation maps, the calibrated probabilities and the temperature are the ones the served
pipeline uses, so the sets are fit on exactly what is served.

Scores (:data:`SCORES`):

* ``lac``: ``1 - p_y`` (least ambiguous set-valued classifier; Sadinle, Lei & Wasserman, 2019):
  the smallest sets on average, but adapts little to how hard a map is;
* ``aps``: the total probability of the classes at least as likely as ``y`` (adaptive
  prediction sets, Romano, Sesia & Candes, 2020; the deterministic variant): larger sets for the
  maps the model hesitates on;
* ``raps``: ``aps`` plus ``lam * max(0, rank(y) - k_reg)`` (Angelopoulos, Bates, Malik &
  Jordan, 2021): adaptive, with the long tail of unlikely classes penalised.

**Choice, on validation only** (:func:`choose`): each score is fit on one half of the validation
maps and measured on the other, both ways round; among the scores whose cross-fitted coverage is
at least ``1 - alpha`` minus its sampling slack, the one with the smallest mean set size wins,
and is then fit on all validation maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wafer.core.classes import CLASS_NAMES

SCORES = ("lac", "aps", "raps")
RAPS_LAMBDA = 0.01
RAPS_K_REG = 1


def scores(probs: np.ndarray, method: str, lam: float = RAPS_LAMBDA, k_reg: int = RAPS_K_REG):
    """The nonconformity score of every class of every map, ``(N, C)``."""
    p = np.asarray(probs, dtype=np.float64)
    if method == "lac":
        return 1.0 - p
    if method not in ("aps", "raps"):
        raise ValueError(f"conformal score must be one of {', '.join(SCORES)}, not {method!r}")
    order = np.argsort(-p, axis=1, kind="stable")
    cum = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)
    out = np.empty_like(p)
    np.put_along_axis(out, order, cum, axis=1)  # mass of the classes ranked at or above y
    if method == "raps":
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(1, p.shape[1] + 1)[None, :], axis=1)
        out = out + lam * np.maximum(0, rank - k_reg)
    return out


def quantile(true_scores: np.ndarray, alpha: float) -> float:
    """``qhat``: the ``ceil((n + 1)(1 - alpha))``-th smallest score (inf when that exceeds n:
    too few maps for this coverage, and every set is every class)."""
    s = np.sort(np.asarray(true_scores, dtype=np.float64))
    k = math.ceil((len(s) + 1) * (1.0 - alpha))
    return float(s[k - 1]) if 1 <= k <= len(s) else float("inf")


@dataclass(frozen=True)
class SetRule:
    """A fitted prediction-set rule: the score, ``alpha`` and ``qhat`` (the served part)."""

    method: str
    alpha: float
    qhat: float
    lam: float = RAPS_LAMBDA
    k_reg: int = RAPS_K_REG

    def sets(self, probs: np.ndarray) -> np.ndarray:
        """``(N, C)`` bool: class ``y`` is in the set of map ``i``. Never empty: a map whose
        scores all exceed ``qhat`` keeps its most probable class."""
        member = scores(probs, self.method, self.lam, self.k_reg) <= self.qhat + 1e-12
        top = np.argmax(probs, axis=1)
        member[np.arange(len(member)), top] = True
        return member

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "alpha": self.alpha,
            "qhat": self.qhat,
            "lambda": self.lam,
            "k_reg": self.k_reg,
        }


def fit(probs: np.ndarray, labels: np.ndarray, method: str, alpha: float) -> SetRule:
    """The rule of ``method`` at coverage ``1 - alpha``, fit on these (validation) maps."""
    s = scores(probs, method)
    true = s[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return SetRule(method, float(alpha), quantile(true, alpha))


def coverage_report(member: np.ndarray, labels: np.ndarray) -> dict:
    """Marginal and per-class coverage, mean set size, share of singleton sets."""
    labels = np.asarray(labels, dtype=np.int64)
    hit = member[np.arange(len(labels)), labels]
    size = member.sum(axis=1)
    per_class = {}
    for k, name in enumerate(CLASS_NAMES):
        mine = labels == k
        per_class[name] = {
            "maps": int(mine.sum()),
            "coverage": float(hit[mine].mean()) if mine.any() else None,
            "mean_size": float(size[mine].mean()) if mine.any() else None,
        }
    return {
        "maps": int(len(labels)),
        "coverage": float(hit.mean()) if len(hit) else None,
        "mean_size": float(size.mean()) if len(size) else None,
        "singleton_share": float(np.mean(size == 1)) if len(size) else None,
        "per_class": per_class,
    }


def uninformative(probs: np.ndarray, labels: np.ndarray, alpha: float) -> str | None:
    """Why sets at coverage ``1 - alpha`` would say nothing more than the top label, or None.
    A set is never empty (:meth:`SetRule.sets`), so its coverage is at least the top-1 accuracy:
    when these (validation) maps' accuracy already reaches ``1 - alpha``, the sets are the top
    label alone and over-cover; a lower ``alpha`` (a higher coverage) gives sets that do work."""
    labels = np.asarray(labels, dtype=np.int64)
    acc = float(np.mean(np.argmax(probs, axis=1) == labels)) if len(labels) else 0.0
    if acc < 1.0 - alpha:
        return None
    return (
        f"top-1 accuracy {acc:.4f} on validation already reaches the target coverage "
        f"{1 - alpha:.4f}: the sets are the top label alone and over-cover; set "
        f"thresholds.set_alpha below {1 - acc:.4f} for sets that say more"
    )


def choose(
    probs: np.ndarray, labels: np.ndarray, alpha: float, method: str = "auto", seed: int = 0
) -> tuple[SetRule, dict]:
    """The served rule and the validation comparison behind it (module docstring). ``method``:
    ``auto`` or one of :data:`SCORES` (then only measured, not chosen)."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    halves = np.random.default_rng(seed).permutation(n)
    a, b = halves[: n // 2], halves[n // 2 :]
    slack = 2.0 * math.sqrt(alpha * (1 - alpha) / max(1, n))  # two binomial sds on n maps
    compared = {}
    for m in SCORES:
        hits, sizes = [], []
        for fit_on, test_on in ((a, b), (b, a)):
            rule = fit(probs[fit_on], labels[fit_on], m, alpha)
            member = rule.sets(probs[test_on])
            hits.append(member[np.arange(len(test_on)), labels[test_on]])
            sizes.append(member.sum(axis=1))
        compared[m] = {
            "coverage": float(np.concatenate(hits).mean()),
            "mean_size": float(np.concatenate(sizes).mean()),
        }
    ok = [m for m in SCORES if compared[m]["coverage"] >= 1 - alpha - slack] or list(SCORES)
    chosen = min(ok, key=lambda m: compared[m]["mean_size"]) if method == "auto" else method
    return fit(probs, labels, chosen, alpha), {"cross_fitted_on_val": compared, "chosen": chosen}


def curve(
    probs: np.ndarray, labels: np.ndarray, method: str, alphas: np.ndarray, seed: int = 0
) -> list[dict]:
    """Coverage and mean set size of ``method`` over the target coverages ``1 - alphas``,
    cross-fitted on the two halves of these (validation) maps as :func:`choose` measures."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    halves = np.random.default_rng(seed).permutation(n)
    parts = (halves[: n // 2], halves[n // 2 :])
    rows = []
    for alpha in alphas:
        hits, sizes = [], []
        for fit_on, test_on in (parts, parts[::-1]):
            member = fit(probs[fit_on], labels[fit_on], method, float(alpha)).sets(probs[test_on])
            hits.append(member[np.arange(len(test_on)), labels[test_on]])
            sizes.append(member.sum(axis=1))
        rows.append(
            {
                "target_coverage": round(1.0 - float(alpha), 6),
                "coverage": float(np.concatenate(hits).mean()),
                "mean_size": float(np.concatenate(sizes).mean()),
            }
        )
    return rows
