"""Tests of wafer.serving.calibration: ECE variants, temperature scaling, NLL / Brier, reliability
bins."""

import math

import numpy as np
import pytest

from wafer.core.classes import CLASS_NAMES, NONE_INDEX, NUM_CLASSES
from wafer.core.probs import softmax
from wafer.serving.calibration import (
    bin_index,
    brier,
    calibration_report,
    classwise_ece,
    defect_ece,
    ece,
    fit_temperature,
    nll,
    reliability_bins,
)


def _random_probs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(0.0, 2.0, (n, NUM_CLASSES)))
    labels = rng.integers(0, NUM_CLASSES, n)
    return probs, labels


def test_bin_edges_lower_open_upper_closed():
    # bins (0, 0.5], (0.5, 1]; 0 goes to the first bin
    np.testing.assert_array_equal(
        bin_index(np.array([0.0, 0.25, 0.5, 0.51, 1.0]), 2), [0, 0, 0, 1, 1]
    )


def test_ece_perfect_is_zero():
    labels = np.arange(NUM_CLASSES).repeat(3)
    probs = np.eye(NUM_CLASSES)[labels]
    assert ece(probs, labels, 15) == 0.0
    np.testing.assert_array_equal(classwise_ece(probs, labels, 15), np.zeros(NUM_CLASSES))


def test_ece_confident_and_wrong_is_one():
    labels = np.arange(NUM_CLASSES).repeat(2)
    probs = np.eye(NUM_CLASSES)[(labels + 1) % NUM_CLASSES]
    assert ece(probs, labels, 15) == pytest.approx(1.0)


def test_ece_hand_computed():
    probs = np.array(
        [
            [0.9, 0.05, 0.03, 0.02],  # conf 0.9, correct   -> bin 13
            [0.9, 0.05, 0.03, 0.02],  # conf 0.9, wrong     -> bin 13
            [0.1, 0.7, 0.1, 0.1],  # conf 0.7, correct      -> bin 10
            [0.45, 0.2, 0.2, 0.15],  # conf 0.45, wrong     -> bin 6
        ]
    )
    labels = np.array([0, 1, 1, 3])
    expected = 0.5 * abs(0.5 - 0.9) + 0.25 * abs(1 - 0.7) + 0.25 * abs(0 - 0.45)  # 0.3875
    assert ece(probs, labels, 15) == pytest.approx(expected)
    # one bin: |accuracy - mean confidence| = |0.5 - 0.7375|
    assert ece(probs, labels, n_bins=1) == pytest.approx(abs(0.5 - 0.7375))


def test_defect_ece_conditions_on_prediction():
    probs = np.zeros((3, NUM_CLASSES))
    probs[0, NONE_INDEX] = 1.0  # predicted none: excluded
    probs[1, 0], probs[1, NONE_INDEX] = 0.8, 0.2  # predicted Center, true Center
    probs[2, 1], probs[2, NONE_INDEX] = 0.8, 0.2  # predicted Donut, true none
    labels = np.array([NONE_INDEX, 0, NONE_INDEX])
    assert defect_ece(probs, labels, n_bins=15) == pytest.approx(abs(0.5 - 0.8))
    assert math.isnan(defect_ece(probs[:1], labels[:1], n_bins=15))


def test_temperature_scaling_recovers_known_T():
    rng = np.random.default_rng(1234)
    z = rng.normal(0.0, 3.0, (20000, NUM_CLASSES))
    p = softmax(z)
    labels = (rng.random((len(z), 1)) > p.cumsum(axis=1)).sum(axis=1)  # labels ~ softmax(z)
    labels = np.minimum(labels, NUM_CLASSES - 1)
    t0 = 2.0
    t = fit_temperature(z * t0, labels)
    assert isinstance(t, float) and t > 0
    assert t == pytest.approx(t0, rel=0.05)
    assert fit_temperature(z * t0, labels) == t  # deterministic
    # scaling improves NLL of the over-confident logits
    assert nll(softmax(z * t0, t), labels) < nll(softmax(z * t0), labels)


def test_nll_and_brier_hand_example():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]])
    labels = np.array([0, 2])
    assert nll(probs, labels) == pytest.approx(-(math.log(0.7) + math.log(0.3)) / 2)
    assert brier(probs, labels) == pytest.approx((0.14 + 0.78) / 2)
    assert nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(1e-12))


def test_reliability_bins_counts_sum_to_n():
    probs, labels = _random_probs(200)
    rows = reliability_bins(probs, labels, 15)
    assert sum(r["count"] for r in rows) == 200
    for r in rows:
        assert r["count"] > 0
        assert r["bin_lower"] < r["confidence"] <= r["bin_upper"]
        assert 0.0 <= r["accuracy"] <= 1.0
    # the count-weighted bin gaps reproduce the ECE
    gap = sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / 200
    assert gap == pytest.approx(ece(probs, labels, 15))


def test_calibration_report_keys():
    probs, labels = _random_probs(100)
    rep = calibration_report(probs, labels, 15)
    assert set(rep) == {
        "ece",
        "defect_ece",
        "mean_classwise_ece",
        "mean_defect_classwise_ece",
        "classwise_ece",
        "nll",
        "brier",
    }
    assert list(rep["classwise_ece"]) == list(CLASS_NAMES)
    cw = np.array(list(rep["classwise_ece"].values()))
    assert rep["mean_classwise_ece"] == pytest.approx(cw.mean())
    assert rep["mean_defect_classwise_ece"] == pytest.approx(np.delete(cw, NONE_INDEX).mean())
