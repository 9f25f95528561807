"""Tests of the served decision rule (wafer.serving.decision.decide), the tau sweep and the
threshold fit
(wafer.serving.thresholds)."""

import numpy as np
import pytest

from wafer.core.classes import CLASS_INDEX, NONE_INDEX, NUM_CLASSES
from wafer.report.metrics import macro_f1
from wafer.serving.decision import decide
from wafer.serving.thresholds import (
    choose_tau,
    default_taus,
    fit_class_thresholds,
    fit_operating_point,
    floor_thresholds,
    sweep,
)

C, D, EL, NONE = CLASS_INDEX["Center"], CLASS_INDEX["Donut"], CLASS_INDEX["Edge-Loc"], NONE_INDEX


def _probs(*rows: dict) -> np.ndarray:
    out = np.zeros((len(rows), NUM_CLASSES))
    for i, row in enumerate(rows):
        for k, v in row.items():
            out[i, k] = v
    return out


ZERO = np.zeros(NUM_CLASSES)


def test_default_taus():
    t = default_taus()
    assert t[0] == 0.05 and t[-1] == 0.99 and len(t) == 95


def test_flag_at_tau():
    probs = _probs({NONE: 0.5, C: 0.25, D: 0.15, EL: 0.1})  # P(defect) = 0.5
    assert decide(probs, ZERO, tau=0.5).tolist() == [C]  # >= tau: flagged
    assert decide(probs, ZERO, tau=0.51).tolist() == [NONE]
    # flagged even though 'none' is the most probable class: step 2 never returns 'none'
    probs = _probs({NONE: 0.7, C: 0.2, D: 0.1})
    assert decide(probs, ZERO, tau=0.2).tolist() == [C]
    assert decide(probs, ZERO, tau=0.5).dtype == np.int64


def test_cascade_and_fallback():
    probs = _probs({NONE: 0.5, C: 0.25, D: 0.15, EL: 0.1})
    t = ZERO.copy()
    t[C] = 0.3  # first-ranked defect misses its threshold -> second-ranked
    assert decide(probs, t, tau=0.5).tolist() == [D]
    t[D] = 0.2  # second misses too -> third
    assert decide(probs, t, tau=0.5).tolist() == [EL]
    t[:] = 0.9  # nothing clears -> most probable defect
    assert decide(probs, t, tau=0.5).tolist() == [C]


def test_none_threshold_ignored():
    probs = _probs({NONE: 0.5, C: 0.25, D: 0.15, EL: 0.1}, {NONE: 0.9, C: 0.1})
    t = ZERO.copy()
    t[NONE] = 0.99
    np.testing.assert_array_equal(decide(probs, t, tau=0.5), decide(probs, ZERO, tau=0.5))
    np.testing.assert_array_equal(decide(probs, t, tau=0.5), [C, NONE])


def test_decide_vectorised_matches_rowwise():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(NUM_CLASSES), 50)
    t = rng.uniform(0, 0.3, NUM_CLASSES)
    batch = decide(probs, t, tau=0.6)
    rows = [decide(probs[i : i + 1], t, tau=0.6)[0] for i in range(50)]
    np.testing.assert_array_equal(batch, rows)


def _sweep_example():
    probs = _probs(
        {NONE: 0.2, C: 0.8},  # true Center
        {NONE: 0.7, D: 0.3},  # true Donut
        {NONE: 0.3, C: 0.7},  # true none
        {NONE: 0.9, C: 0.1},  # true none
        {NONE: 0.8, C: 0.2},  # true none
        {NONE: 0.6, EL: 0.4},  # true Edge-Loc
    )
    labels = np.array([C, D, NONE, NONE, NONE, EL])
    return probs, labels


def test_sweep_counts_escapes_and_false_alarms():
    probs, labels = _sweep_example()
    rows = sweep(probs, labels, np.array([0.35, 0.5]), cost_ratio=10)
    r35, r50 = rows
    # tau 0.5: flagged rows 0, 2 -> escapes rows 1, 5; false alarm row 2
    assert r50["tau"] == 0.5
    assert (r50["escapes"], r50["false_alarms"]) == (2, 1)
    assert r50["escape_rate"] == pytest.approx(2 / 3)
    assert r50["false_alarm_rate"] == pytest.approx(1 / 3)
    assert r50["cost"] == pytest.approx((10 * 2 + 1) / 6)
    # tau 0.35: row 5 (P(defect) 0.4) flagged too -> one escape left
    assert (r35["escapes"], r35["false_alarms"]) == (1, 1)
    assert r35["escape_rate"] == pytest.approx(1 / 3)
    assert r35["cost"] == pytest.approx((10 * 1 + 1) / 6)
    for r, tau in zip(rows, (0.35, 0.5), strict=True):
        assert r["macro_f1"] == pytest.approx(macro_f1(labels, decide(probs, ZERO, tau)))


def test_choose_tau_tie_breaking():
    def row(tau, cost, f1):
        return {"tau": tau, "cost": cost, "macro_f1": f1}

    assert choose_tau([row(0.5, 0.2, 0.9), row(0.3, 0.1, 0.1)])["tau"] == 0.3  # min cost first
    assert choose_tau([row(0.5, 0.1, 0.5), row(0.3, 0.1, 0.6)])["tau"] == 0.3  # then higher F1
    assert choose_tau([row(0.2, 0.1, 0.6), row(0.6, 0.1, 0.6), row(0.9, 0.1, 0.6)])["tau"] == 0.6


def _biased(n=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n)
    logits = rng.normal(0.0, 1.0, (n, NUM_CLASSES))
    logits[np.arange(n), labels] += 2.0
    logits[:, CLASS_INDEX["Loc"]] += 1.5  # a biased model that over-predicts Loc
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), labels


def test_fit_class_thresholds_improves_or_keeps_macro_f1():
    probs, labels = _biased()
    tau = 0.5
    t, record = fit_class_thresholds(probs, labels, tau, None, 0.2, 10, 0.002)
    assert t.shape == (NUM_CLASSES,)
    assert t[NONE_INDEX] == 0.0 and np.all(np.delete(t, NONE_INDEX) >= 0.2)
    floor = floor_thresholds(NUM_CLASSES, 0.2)
    f1_floor = macro_f1(labels, decide(probs, floor, tau))
    assert f1_floor == macro_f1(labels, decide(probs, ZERO, tau))  # the floor is plain argmax
    f1_fit = macro_f1(labels, decide(probs, t, tau))
    assert f1_fit > f1_floor  # the bias is correctable here
    assert CLASS_INDEX["Loc"] in record["fitted"]
    # no data reason to move a threshold -> all stay at the floor
    one_hot = np.eye(NUM_CLASSES)[labels]
    t1, rec1 = fit_class_thresholds(one_hot, labels, tau, None, 0.2, 10, 0.002)
    np.testing.assert_array_equal(t1, floor)
    assert rec1["fitted"] == []


def test_a_class_with_almost_no_probability_never_takes_a_map():
    # the top defect misses its raised threshold; the runner-up has 0.05 < floor -> keep the top
    probs = _probs({NONE: 0.3, C: 0.6, D: 0.05, EL: 0.05})
    t = floor_thresholds(NUM_CLASSES, 0.2)
    t[C] = 0.7
    assert decide(probs, t, tau=0.5).tolist() == [C]
    # a runner-up that clears its own threshold does take it
    probs = _probs({NONE: 0.1, C: 0.55, D: 0.35})
    assert decide(probs, t, tau=0.5).tolist() == [D]


def test_thresholds_need_support_and_gain():
    probs, labels = _biased(n=200)
    loc = CLASS_INDEX["Loc"]
    support = np.bincount(labels, minlength=NUM_CLASSES)
    t, record = fit_class_thresholds(probs, labels, 0.5, None, 0.2, int(support.max()) + 1, 0.002)
    np.testing.assert_array_equal(t, floor_thresholds(NUM_CLASSES, 0.2))  # nobody has support
    assert set(record["too_few_maps"]) == set(range(NUM_CLASSES)) - {NONE_INDEX}
    t, _ = fit_class_thresholds(probs, labels, 0.5, None, 0.2, 1, 1.0)
    assert t[loc] == 0.2  # no gain is that large


def test_two_operating_points_fit_on_weighted_validation():
    probs, labels = _biased(n=600, seed=1)
    w = np.where(labels == NONE_INDEX, 5.0, 1.0)
    cost = fit_operating_point(probs, labels, "cost", 10.0, w, 0.2, 10, 0.002)
    f1 = fit_operating_point(probs, labels, "macro_f1", 10.0, w, 0.2, 10, 0.002)
    assert cost["chosen"]["cost"] == min(r["cost"] for r in cost["sweep"])
    assert f1["chosen"]["macro_f1"] == max(r["macro_f1"] for r in f1["sweep"])
    assert cost["tau"] <= f1["tau"]  # escapes cost 10x: the screen flags more
    unweighted = fit_operating_point(probs, labels, "macro_f1", 10.0, None, 0.2, 10, 0.002)
    assert unweighted["sweep"] != f1["sweep"]  # the prior changes the fit
    with pytest.raises(ValueError, match="objective"):
        fit_operating_point(probs, labels, "accuracy", 10.0, None, 0.2, 10, 0.002)
