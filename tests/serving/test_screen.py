"""The escape-budget operating point (wafer.serving.screen): the bound is exact where it can
be checked by hand, holds in repeated draws at the stated confidence, and an unattainable
budget is refused rather than served."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta as beta_dist

from wafer.core.classes import CLASS_NAMES, NONE_INDEX
from wafer.serving.screen import (
    DEFECTS,
    class_bounds,
    clopper_pearson_upper,
    defect_mix,
    escape_rate,
    fit_budget,
    maps_needed,
    mix_ratio,
    upper_bound,
)

PRIOR = np.array([4294, 555, 5189, 9680, 3593, 149, 866, 1193, 147431], dtype=float)
# each defect class's P(defect) ~ Beta(a, 1): a harder class has more mass near 0
HARDNESS = {0: 8.0, 1: 12.0, 2: 3.0, 3: 10.0, 4: 2.5, 5: 20.0, 6: 9.0, 7: 2.0}


def test_clopper_pearson_by_hand():
    # no escape in n: the bound solves (1 - p)^n = delta
    assert clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100))
    assert clopper_pearson_upper(3, 3, 0.05) == 1.0 and clopper_pearson_upper(0, 0, 0.05) == 1.0
    # one escape in 20: P(X <= 1 | p = UB) = delta
    ub = clopper_pearson_upper(1, 20, 0.05)
    assert (1 - ub) ** 20 + 20 * ub * (1 - ub) ** 19 == pytest.approx(0.05)
    assert maps_needed(0.005, 0.05, 1) == 598  # ln 20 / -ln 0.995


def _draw(rng, n_defects: int, n_none: int, mix: np.ndarray):
    labels = rng.choice(len(CLASS_NAMES), size=n_defects, p=mix)
    p = np.empty(n_defects)
    for k, a in HARDNESS.items():
        mine = labels == k
        p[mine] = rng.beta(a, 1.0, size=mine.sum())
    none = rng.beta(1.0, 12.0, size=n_none)
    return np.r_[p, none], np.r_[labels, np.full(n_none, NONE_INDEX)]


def _true_escape_rate(tau: float, w: np.ndarray) -> float:
    return float(sum(w[k] * beta_dist.cdf(tau, a, 1.0) for k, a in HARDNESS.items()))


@pytest.mark.parametrize("shift", [False, True])
def test_the_bound_holds_in_repeated_draws(shift):
    """200 validation draws; in each, the budget point's TRUE escape rate under the target
    mix (exact: the Beta CDFs) exceeds the budget in at most about delta of them (here: at
    most 10 %, delta = 5 % plus three binomial sds of 200 draws), with the validation mix equal
    to the target's or twisted away from it (then the mix ratio carries the difference)."""
    rng = np.random.default_rng(7)
    w = defect_mix(PRIOR)
    mix = w.copy()
    if shift:  # validation over-samples the rare classes, under-samples Edge-Ring
        mix[[1, 5, 6, 7]] *= 3.0
        mix[3] /= 2.0
        mix /= mix.sum()
    alpha, delta, misses, served = 0.05, 0.05, 0, 0
    for _ in range(200):
        p, y = _draw(rng, 1500, 3000, mix)
        fit = fit_budget(p, y, PRIOR, alpha, delta)
        if not fit["attainable"]:
            continue
        served += 1
        assert fit["bound"] <= alpha
        misses += _true_escape_rate(fit["tau"], w) > alpha
    assert served >= 150  # the budget is attainable with 1500 defects
    assert misses <= 0.10 * served, (misses, served)


def test_least_conservative_tau():
    """The chosen tau is the largest that passes: the next candidate's bound is over budget."""
    rng = np.random.default_rng(3)
    p, y = _draw(rng, 2000, 2000, defect_mix(PRIOR))
    fit = fit_budget(p, y, PRIOR, 0.05, 0.05)
    w = defect_mix(PRIOR)
    assert upper_bound(p, y, fit["tau"], w, 0.05) <= 0.05
    higher = np.sort(p[y != NONE_INDEX])
    nxt = higher[higher > fit["tau"]][0]
    assert upper_bound(p, y, nxt, w, 0.05) > 0.05
    assert fit["escape_rate"] == pytest.approx(escape_rate(p, y, fit["tau"], w))
    assert mix_ratio(y, w) == pytest.approx(1.0, abs=0.25)


def test_an_unattainable_budget_is_refused_and_says_why():
    rng = np.random.default_rng(0)
    p, y = _draw(rng, 400, 400, defect_mix(PRIOR))
    p, y = np.r_[p, np.full(8, 0.9)], np.r_[y, list(DEFECTS)]  # every class present
    fit = fit_budget(p, y, PRIOR, 0.005, 0.05)
    assert not fit["attainable"] and fit["tau"] is None
    assert "bound on the escape rate is" in fit["why"] and "needed" in fit["why"]
    # a class the target mix holds but validation lacks: no finite guarantee at all
    keep = y != 5
    fit = fit_budget(p[keep], y[keep], PRIOR, 0.5, 0.05)
    assert not fit["attainable"] and "no validation map of Near-full" in fit["why"]


def test_per_class_bounds_say_when_a_class_is_too_small():
    rng = np.random.default_rng(1)
    p, y = _draw(rng, 3000, 100, defect_mix(PRIOR))
    rows = class_bounds(p, y, 0.05, 0.01, 0.05)
    assert set(rows) == {CLASS_NAMES[c] for c in DEFECTS}
    near_full = rows["Near-full"]
    assert near_full["bounded"] is False and near_full["bound"] is None
    assert "needed" in near_full["why"]
    edge_ring = rows["Edge-Ring"]
    assert edge_ring["bounded"] is True and edge_ring["bound"] >= edge_ring["escape_rate"]
