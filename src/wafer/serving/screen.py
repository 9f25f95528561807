"""The screen with a stated guarantee: the escape-budget operating point.

A fab that uses the model as a screen does not review a map called ``none``, so the figure it
must sign off on is the **escape rate**, the share of true defects called ``none``. Under the
decision rule (:mod:`wafer.serving.decision`) a map is called ``none`` iff
``P(defect) = 1 - p_none < tau``, so the escape rate depends on ``tau`` alone and grows with it.

The target prior enters through the defect-class mix. The escape rate on the fab's maps is

    E(tau) = sum_k w_k e_k(tau),   w_k = pi_k / sum_{j != none} pi_j,

with ``e_k(tau)`` the escape rate of defect class ``k`` and ``pi`` the target prior
(``prior.target_prior``): classes are weighted by how often the fab sees them, not by how often
the validation split holds them (the same re-weighting the other points are fit under).

**The bound** (:func:`upper_bound`). Let ``v_k`` be the validation split's defect-class mix
and ``rho = max_k w_k / v_k`` the most any class is up-weighted on the way to the target mix.
Then ``E(tau) = sum_k (w_k / v_k) v_k e_k <= rho * E_v(tau)``, where ``E_v`` is the escape rate
of a defect drawn as validation holds them. Of the ``n`` validation defects, ``x(tau)`` escape:
a sum of independent Bernoulli trials with mean rate ``E_v``, whose lower tail is no heavier than
the binomial's (Hoeffding, 1956), so the one-sided Clopper-Pearson bound ``CP(x, n; delta)``
(Clopper & Pearson, 1934) holds for ``E_v`` with probability at least ``1 - delta``, and
``UB(tau) = rho * CP(x(tau), n; delta)`` for ``E(tau)``. Exact for any sample size, no normal
approximation (which is wrong exactly where escapes are rare). Pooling the classes is what makes
it usable: a bound per class at ``delta / K`` would cost a factor of about
``K ln(K / delta) / ln(1 / delta)`` (13 for 8 defect classes at 95 %). The real subset keeps
WM-811K's own defect mix (only ``none`` is down-sampled), so there ``rho`` is 1.00; a class of
the target mix with no validation map makes ``rho`` infinite and the point not attainable.

**The choice** (:func:`fit_budget`): the least conservative ``tau`` (the largest: fewest false
alarms) whose bound is at most the budget ``alpha``, by fixed-sequence testing from the safe
end (``tau = 0`` flags every map and lets nothing escape): ``tau`` is raised through the
validation defects' ``P(defect)`` values and the last one that passes is kept. Because the
escape rate only grows with ``tau``, testing in that order controls the chance that the chosen
``tau`` breaks the budget at ``delta`` with no correction for the number of ``tau`` tried
(Learn then Test: Angelopoulos, Bates, Candes, Jordan & Lei, 2021, section 3.2). The guarantee
reads: with probability at least ``1 - delta`` over the validation draw, the escape rate on new
maps from the same classes, mixed as the target prior says, is at most ``alpha``.

When not even ``tau = 0`` passes (too few validation defects for the budget), the point is
**not attainable**: the thresholds file records that and why, and the point is never served
(:class:`wafer.serving.decision.ServingConfig` refuses it in one line).

**Per class** (:func:`class_bounds`): every defect class's escape rate with its own
Clopper-Pearson bound at ``delta / K``; a class-conditional guarantee (each class below
``alpha``) needs, with no escape at all, ``n_k >= ln(K / delta) / -ln(1 - alpha)`` validation
maps of that class (:func:`maps_needed`): below it nothing can be bounded at ``alpha`` and the
report says so instead of printing a number.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta

from wafer.core.classes import CLASS_NAMES, NONE_INDEX

DEFECTS = tuple(k for k in range(len(CLASS_NAMES)) if k != NONE_INDEX)


def clopper_pearson_upper(escapes: int, n: int, delta: float) -> float:
    """One-sided upper confidence bound at level ``1 - delta`` for a binomial rate with
    ``escapes`` successes in ``n`` trials (1 when ``n`` is 0 or every trial escaped)."""
    if n <= 0 or escapes >= n:
        return 1.0
    return float(beta.ppf(1.0 - delta, escapes + 1, n - escapes))


def defect_mix(prior: np.ndarray) -> np.ndarray:
    """``w``: the target prior's shares among the defect classes (0 for ``none``)."""
    w = np.asarray(prior, dtype=np.float64).copy()
    w[NONE_INDEX] = 0.0
    return w / w.sum()


def _per_class(p_defect: np.ndarray, labels: np.ndarray, tau: float) -> tuple[np.ndarray, ...]:
    """(escapes, maps) of every class at ``tau`` (none's entries unused)."""
    n = np.bincount(labels, minlength=len(CLASS_NAMES))
    esc = np.bincount(labels[p_defect < tau], minlength=len(CLASS_NAMES))
    return esc, n


def _cp_upper(escapes: np.ndarray, n: int, delta: float) -> np.ndarray:
    """:func:`clopper_pearson_upper` of every entry of ``escapes`` (out of ``n``)."""
    x = np.asarray(escapes, dtype=np.float64)
    if n <= 0:
        return np.ones_like(x)
    with np.errstate(invalid="ignore"):
        ub = beta.ppf(1.0 - delta, x + 1, np.maximum(n - x, 1e-12))
    return np.where(x >= n, 1.0, ub)


def mix_ratio(labels: np.ndarray, w: np.ndarray) -> float:
    """``rho``: the largest ``w_k / v_k`` over the defect classes of the target mix (inf when
    one of them has no validation map)."""
    n = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASS_NAMES))
    total = sum(int(n[c]) for c in DEFECTS)
    ratios = [w[c] / (n[c] / total) if n[c] else float("inf") for c in DEFECTS if w[c] > 0]
    return float(max(ratios)) if total else float("inf")


def upper_bound(
    p_defect: np.ndarray, labels: np.ndarray, tau: float, w: np.ndarray, delta: float
) -> float:
    """``rho * CP(x(tau), n; delta)`` (module docstring): the escape-rate bound at ``tau``
    under the target mix ``w``, capped at 1."""
    labels = np.asarray(labels, dtype=np.int64)
    defect = labels != NONE_INDEX
    rho = mix_ratio(labels, w)
    if not np.isfinite(rho):
        return 1.0
    x = int(np.sum(np.asarray(p_defect)[defect] < tau))
    return float(min(1.0, rho * clopper_pearson_upper(x, int(defect.sum()), delta)))


def escape_rate(p_defect: np.ndarray, labels: np.ndarray, tau: float, w: np.ndarray) -> float:
    """The escape rate at ``tau`` under the defect mix ``w`` (classes without maps left out
    and the others' weights renormalised; nan when no defect map is present)."""
    esc, n = _per_class(p_defect, labels, tau)
    present = [c for c in DEFECTS if n[c] > 0 and w[c] > 0]
    if not present:
        return float("nan")
    ws = np.array([w[c] for c in present])
    return float(np.dot(ws / ws.sum(), [esc[c] / n[c] for c in present]))


def false_alarm_rate(p_defect: np.ndarray, labels: np.ndarray, tau: float) -> float:
    """Share of true ``none`` maps flagged at ``tau`` (nan without ``none`` maps)."""
    none = labels == NONE_INDEX
    return float(np.mean(p_defect[none] >= tau)) if none.any() else float("nan")


def escapes_per_class(p_defect: np.ndarray, labels: np.ndarray, tau: float) -> dict[str, dict]:
    """Every defect class's maps, escapes and escape rate at ``tau`` (None without maps)."""
    esc, n = _per_class(np.asarray(p_defect, dtype=np.float64), np.asarray(labels), tau)
    return {
        CLASS_NAMES[c]: {
            "maps": int(n[c]),
            "escapes": int(esc[c]),
            "escape_rate": float(esc[c] / n[c]) if n[c] else None,
        }
        for c in DEFECTS
    }


def maps_needed(alpha: float, delta: float, k: int) -> int:
    """Validation maps a class needs before its escape rate can be bounded at ``alpha`` (with
    no escape at all, at level ``delta / k``)."""
    return int(math.ceil(math.log(k / delta) / -math.log1p(-alpha)))


def fit_budget(
    p_defect: np.ndarray, labels: np.ndarray, prior: np.ndarray, alpha: float, delta: float
) -> dict:
    """The escape-budget point on validation (module docstring): ``attainable``, ``tau`` (None
    when not attainable), its ``bound``, the validation ``escape_rate`` and
    ``false_alarm_rate`` at it, and ``why`` when not attainable."""
    p_defect = np.asarray(p_defect, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    w = defect_mix(prior)
    defects = np.sort(p_defect[labels != NONE_INDEX])
    # raising tau to the i-th smallest defect's P(defect) lets the i maps below it escape; the
    # sequence starts at 0 (nothing escapes) and is tested from there, the safe end, upwards
    candidates = np.unique(np.r_[0.0, defects])
    escapes = np.searchsorted(defects, candidates, side="left")  # defects strictly below tau
    rho = mix_ratio(labels, w)
    bounds = np.minimum(1.0, rho * _cp_upper(escapes, len(defects), delta))
    failing = np.flatnonzero(bounds > alpha)  # the sequence stops at its first failure
    last = (failing[0] if len(failing) else len(candidates)) - 1
    chosen = float(candidates[last]) if last >= 0 else None
    out = {"alpha": float(alpha), "confidence": 1.0 - float(delta), "fit_on": "val"}
    out["mix_ratio"] = rho if np.isfinite(rho) else None
    out["val_defects"] = int(np.sum(labels != NONE_INDEX))
    if chosen is None:
        floor = upper_bound(p_defect, labels, 0.0, w, delta)
        if not np.isfinite(rho):
            missing = [CLASS_NAMES[c] for c in DEFECTS if w[c] > 0 and not np.any(labels == c)]
            why = f"no validation map of {', '.join(missing)}, which the target prior holds"
        else:
            need = maps_needed(alpha / rho, delta, 1)
            why = (
                f"even flagging every map, the {1 - delta:.0%} bound on the escape rate is "
                f"{floor:.4f} > escape budget {alpha:g}: {out['val_defects']} validation "
                f"defects, about {need} needed (mix ratio {rho:.2f})"
            )
        return out | {"attainable": False, "tau": None, "bound": floor, "why": why}
    return out | {
        "attainable": True,
        "tau": chosen,
        "bound": upper_bound(p_defect, labels, chosen, w, delta),
        "escape_rate": escape_rate(p_defect, labels, chosen, w),
        "false_alarm_rate": false_alarm_rate(p_defect, labels, chosen),
    }


def class_bounds(
    p_defect: np.ndarray, labels: np.ndarray, tau: float, alpha: float, delta: float
) -> dict[str, dict]:
    """Per defect class at ``tau``: maps, escapes, escape rate and the Clopper-Pearson bound
    at ``delta / K``; ``bounded`` says whether the class has the maps to be bounded at
    ``alpha`` at all (:func:`maps_needed`), and ``bound`` is None when it has not."""
    k = len(DEFECTS)
    need = maps_needed(alpha, delta, k)
    out = escapes_per_class(p_defect, labels, tau)
    for row in out.values():
        if row["maps"] >= need:
            bound = clopper_pearson_upper(row["escapes"], row["maps"], delta / k)
            row |= {"bounded": True, "bound": bound}
        else:
            row |= {"bounded": False, "bound": None, "why": f"{row['maps']} maps, {need} needed"}
    return out


def class_conditional(p_defect: np.ndarray, labels: np.ndarray, alpha: float, delta: float) -> dict:
    """The class-conditional variant: the largest ``tau`` at which EVERY defect class's bound
    (at ``delta / K``) is at most ``alpha``, by the same fixed sequence; not attainable when a
    class has fewer than :func:`maps_needed` validation maps (the usual case at a budget of
    0.5 %: about 1,000 maps of each class)."""
    p_defect = np.asarray(p_defect, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = len(DEFECTS)
    need = maps_needed(alpha, delta, k)
    n = np.bincount(labels, minlength=len(CLASS_NAMES))
    short = {CLASS_NAMES[c]: int(n[c]) for c in DEFECTS if n[c] < need}
    if short:
        return {
            "attainable": False,
            "tau": None,
            "why": f"each defect class needs {need} validation maps; too few: "
            + ", ".join(f"{c} {m}" for c, m in short.items()),
        }
    chosen = None
    for tau in np.unique(np.r_[0.0, np.sort(p_defect[labels != NONE_INDEX])]):
        esc, _ = _per_class(p_defect, labels, float(tau))
        worst = max(clopper_pearson_upper(int(esc[c]), int(n[c]), delta / k) for c in DEFECTS)
        if worst > alpha:
            break
        chosen = float(tau)
    if chosen is None:
        return {"attainable": False, "tau": None, "why": "no tau bounds every class at alpha"}
    return {"attainable": True, "tau": chosen}
