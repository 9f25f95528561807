"""wafer.serving.refit: a model's (a view count's, a runtime's, an ensemble's) quality on
validation logits, at the argmax and at the `macro_f1` point fit on them, and one set of labels
against another on the same maps with a paired bootstrap (benchmarks/serving.py,
scripts/explore_multires.py)."""

from __future__ import annotations

import numpy as np
import pytest

from wafer.config.params import load_params
from wafer.report.metrics import macro_f1
from wafer.serving.refit import paired_vs, point_labels, quality, target_weights

from conftest import ROOT


@pytest.fixture
def val():
    rng = np.random.default_rng(3)
    y = np.arange(300) % 9
    good = rng.normal(0.0, 1.0, (300, 9))
    good[np.arange(300), y] += 2.5  # mostly right
    noisy = good + rng.normal(0.0, 2.0, good.shape)  # the same maps, worse logits
    return y, good, noisy


def test_quality_figures_match_a_direct_computation(val):
    y, good, _ = val
    params = load_params(ROOT / "params.yaml")
    q = quality(good, y, params)
    w = target_weights(y, params)
    assert q["macro_f1_argmax"] == pytest.approx(macro_f1(y, good.argmax(1)), abs=1e-5)
    assert q["macro_f1_pc_argmax"] == pytest.approx(macro_f1(y, good.argmax(1), w), abs=1e-5)
    temperature, pred = point_labels(good, y, params)
    assert q["macro_f1_pc_at_macro_f1_point"] == pytest.approx(macro_f1(y, pred, w), abs=1e-5)
    assert q["temperature"] == pytest.approx(temperature, abs=1e-4)
    assert quality(good, y, params, (temperature, pred)) == q  # a fit already made: reused


def test_paired_gain_is_zero_against_itself_and_the_difference_otherwise(val):
    y, good, noisy = val
    params = load_params(ROOT / "params.yaml")
    params["evaluate"]["bootstrap"] = 200  # the resamples' count is read from params

    def labels(logits):
        return {"argmax": logits.argmax(1), "macro_f1_point": point_labels(logits, y, params)[1]}

    same = paired_vs(labels(good), labels(good), y, params)
    for what in ("argmax", "macro_f1_point"):
        assert same[what] == {"gain": 0.0, "low": 0.0, "high": 0.0, "share_above_zero": 0.0}
    worse = paired_vs(labels(noisy), labels(good), y, params)
    qg, qn = quality(good, y, params), quality(noisy, y, params)
    for what, key in (
        ("argmax", "macro_f1_pc_argmax"),
        ("macro_f1_point", "macro_f1_pc_at_macro_f1_point"),
    ):
        g = worse[what]
        assert g["gain"] == pytest.approx(qn[key] - qg[key], abs=2e-5)
        assert g["low"] <= g["gain"] <= g["high"]
    assert worse["argmax"]["high"] < 0  # noise this large is a resolved loss
