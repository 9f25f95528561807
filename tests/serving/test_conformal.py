"""Split-conformal prediction sets (wafer.serving.conformal): the scores by hand, the same sets
as a maintained library (crepes) where both apply, coverage at the stated level in repeated
draws, and the choice made on validation only."""

from __future__ import annotations

import numpy as np
import pytest

from wafer.serving.conformal import (
    SCORES,
    choose,
    coverage_report,
    fit,
    quantile,
    scores,
    uninformative,
)


def _draw(rng, n: int, classes: int = 9):
    logits = rng.normal(size=(n, classes)) * 1.5
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    u = rng.random((n, 1))
    y = np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), classes - 1)  # y ~ p, row by row
    return p, y


def test_scores_by_hand():
    p = np.array([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(scores(p, "lac"), [[0.5, 0.7, 0.8]])
    np.testing.assert_allclose(scores(p, "aps"), [[0.5, 0.8, 1.0]])
    np.testing.assert_allclose(scores(p, "raps", lam=0.1, k_reg=1), [[0.5, 0.9, 1.2]])
    assert quantile(np.arange(1, 10), 0.1) == 9 and quantile(np.arange(1, 10), 0.5) == 5
    assert quantile(np.arange(1, 5), 0.05) == float("inf")  # too few maps for 95 %


def test_the_same_sets_as_crepes():
    """Where crepes applies (its non-smoothed p-values on precomputed scores), our sets are
    its sets."""
    crepes = pytest.importorskip("crepes")
    rng = np.random.default_rng(0)
    p_cal, y_cal = _draw(rng, 800)
    p_test, _ = _draw(rng, 300)
    for method in SCORES:
        rule = fit(p_cal, y_cal, method, 0.1)
        cal = scores(p_cal, method)[np.arange(len(y_cal)), y_cal]
        cc = crepes.ConformalClassifier().fit(cal)
        theirs = cc.predict_set(scores(p_test, method), confidence=0.9, smoothing=False)
        ours = scores(p_test, method) <= rule.qhat + 1e-12
        assert np.array_equal(ours, theirs.astype(bool)), method


def test_coverage_in_repeated_draws():
    """Fit on 500 maps, test on 2000 fresh ones, 100 times: the mean coverage is at least
    1 - alpha, and sets are never empty."""
    rng = np.random.default_rng(1)
    for method in SCORES:
        covs = []
        for _ in range(100):
            p, y = _draw(rng, 500)
            pt, yt = _draw(rng, 2000)
            member = fit(p, y, method, 0.1).sets(pt)
            assert member.any(axis=1).all()
            covs.append(coverage_report(member, yt)["coverage"])
        assert np.mean(covs) >= 0.9 - 0.005, (method, np.mean(covs))


def test_the_choice_uses_validation_only_and_reports_it():
    rng = np.random.default_rng(2)
    p, y = _draw(rng, 1000)
    rule, record = choose(p, y, 0.1)
    assert record["chosen"] == rule.method and set(record["cross_fitted_on_val"]) == set(SCORES)
    assert rule.qhat == fit(p, y, rule.method, 0.1).qhat  # then fit on all validation maps
    forced, _ = choose(p, y, 0.1, "aps")
    assert forced.method == "aps"


def test_a_target_below_top1_accuracy_is_called_uninformative():
    """Sets are never empty, so their coverage is at least the top-1 accuracy: at a target the
    accuracy already reaches, they are the top label alone. Said, with the alpha that works."""
    rng = np.random.default_rng(0)
    n, c = 1000, 9
    labels = rng.integers(0, c, n)
    probs = np.full((n, c), 0.05 / (c - 1))
    correct = rng.random(n) < 0.97  # a 97 % accurate model
    top = np.where(correct, labels, (labels + 1) % c)
    probs[np.arange(n), top] = 0.95
    acc = float(np.mean(probs.argmax(1) == labels))
    why = uninformative(probs, labels, alpha=0.1)
    assert why and f"{acc:.4f}" in why and f"below {1 - acc:.4f}" in why
    member = fit(probs, labels, "lac", 0.1).sets(probs)
    assert member.sum(axis=1).max() == 1  # indeed the top label alone
    assert uninformative(probs, labels, alpha=0.01) is None  # 99 % > 97 %: sets do work
    assert fit(probs, labels, "lac", 0.01).sets(probs).sum(axis=1).max() > 1
