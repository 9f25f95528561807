import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from wafer.core.classes import CLASS_NAMES, NONE_INDEX
from wafer.core.io import save_npz
from wafer.report.evaluate import bootstrap_ci_prior, evaluate, prior_from_list
from wafer.report.metrics import (
    balanced_accuracy,
    bootstrap_ci,
    cost_weighted_error,
    escapes_false_alarms,
    macro_f1,
    prevalence_weights,
)

from conftest import params_file  # noqa: E402

C = CLASS_NAMES.index("Center")
N = NONE_INDEX


def test_prevalence_reweighting_hand_example():
    y = np.array([C, C, N, N])
    pred = np.array([C, N, N, C])
    counts = {c: 0 for c in CLASS_NAMES} | {"Center": 1, "none": 3}
    w = prevalence_weights(y, counts)
    np.testing.assert_allclose(w, [0.5, 0.5, 1.5, 1.5])
    assert np.isclose(w.sum(), len(y))
    assert np.isclose(macro_f1(y, pred), 0.5)
    # Center: P = 0.5 / 2.0, R = 0.5 -> F1 1/3; none: P = 1.5 / 2.0, R = 0.5 -> F1 0.6
    assert np.isclose(macro_f1(y, pred, w), (1 / 3 + 0.6) / 2)
    # recall is unchanged by class re-weighting, so balanced accuracy is too
    assert np.isclose(balanced_accuracy(y, pred, w), balanced_accuracy(y, pred))
    esc, fa = escapes_false_alarms(y, pred, w)
    assert (esc, fa) == (0.5, 1.5)


def test_cost_formula():
    assert cost_weighted_error(escapes=3, false_alarms=7, n=100, cost_ratio=10) == 0.37


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 9, 400)
    pred = np.where(rng.random(400) < 0.7, y, rng.integers(0, 9, 400))
    point = macro_f1(y, pred)
    lo, hi = bootstrap_ci(macro_f1, y, pred, n_boot=200, seed=1)
    assert lo < point < hi and hi - lo < 0.2
    assert bootstrap_ci(macro_f1, y, pred, n_boot=200, seed=1) == (lo, hi)  # seeded


def test_evaluate_report_is_complete():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 9, 300)
    probs = rng.dirichlet(np.ones(9), 300)
    probs[np.arange(300), y] += 0.15
    probs /= probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    prior = prior_from_list([4294, 555, 5189, 9680, 3593, 149, 866, 1193, 147431])
    rep = evaluate(y, pred, probs, 10.0, prior, n_boot=50, seed=0)
    assert rep["n"] == 300 and set(rep["per_class"]) == set(CLASS_NAMES)
    assert rep["macro_f1_ci95"]["low"] <= rep["macro_f1"] <= rep["macro_f1_ci95"]["high"]
    pc = rep["prevalence_corrected"]
    assert pc["macro_f1"] != rep["macro_f1"]
    assert np.isclose(pc["balanced_accuracy"], rep["balanced_accuracy"])
    assert np.isclose(rep["cost"], (10 * rep["escapes"] + rep["false_alarms"]) / 300)
    with pytest.raises(ValueError, match="needs 9 values"):
        prior_from_list([1, 2, 3])


def _logits(tmp_path, test_y_seed: int):
    rng = np.random.default_rng(0)
    val_y, test_y = rng.integers(0, 9, 400), rng.integers(0, 9, 300)
    val_logits = rng.normal(0, 1, (400, 9)) + 3 * np.eye(9)[val_y]
    test_logits = rng.normal(0, 1, (300, 9)) + 3 * np.eye(9)[test_y]
    test_y = np.random.default_rng(test_y_seed).permutation(test_y)  # change the test labels
    save_npz(
        tmp_path / "logits.npz",
        views=np.array(8),
        runtime=np.array("eager"),
        val_logits=val_logits,
        val_y=val_y,
        val_rows=np.arange(400),
        test_logits=test_logits,
        test_y=test_y,
        test_rows=np.arange(300),
        model_sha256=np.array("a" * 64),
    )
    return tmp_path / "logits.npz"


PRIOR = [str(v) for v in (4294, 555, 5189, 9680, 3593, 149, 866, 1193, 147431)]


def test_prior_bootstrap_recomputes_the_weights_per_resample():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 9, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 9, 300))
    prior = prior_from_list([float(v) for v in PRIOR])
    lo, hi = bootstrap_ci_prior(macro_f1, y, pred, prior, n_boot=100, seed=3)
    point = macro_f1(y, pred, prevalence_weights(y, prior))
    assert lo < point < hi
    frozen = bootstrap_ci(
        macro_f1, y, pred, n_boot=100, seed=3, weights=prevalence_weights(y, prior)
    )
    assert (lo, hi) != frozen  # the frozen weights give another (wrong) interval


def test_nothing_is_fit_on_test(tmp_path, load_stage):
    """Changing the test labels changes nothing that calibrate and thresholds fit."""
    fitted, reports = [], []
    for seed in (1, 2):
        d = tmp_path / str(seed)
        d.mkdir()
        logits = _logits(d, seed)
        params = str(params_file(d, {"evaluate.bootstrap": 20}))
        r = CliRunner().invoke(
            load_stage("calibrate").app,
            [
                "--params",
                params,
                "--logits",
                str(logits),
                "--out",
                str(d / "cal.json"),
                "--metrics",
                str(d / "c.json"),
                "--plots-dir",
                str(d / "rel"),
                "--png",
                str(d / "rel.png"),
            ],
        )
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(
            load_stage("thresholds").app,
            [
                "--params",
                params,
                "--logits",
                str(logits),
                "--calibration",
                str(d / "cal.json"),
                "--out",
                str(d / "thr.json"),
                "--metrics",
                str(d / "t.json"),
                "--curve",
                str(d / "sweep.csv"),
                "--png",
                str(d / "sweep.png"),
                "--screen-png",
                str(d / "screen.png"),
                "--sets-curve",
                str(d / "sets.csv"),
                "--sets-png",
                str(d / "sets.png"),
            ],
        )
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(
            load_stage("evaluate").app,
            [
                "--params",
                params,
                "--logits",
                str(logits),
                "--calibration",
                str(d / "cal.json"),
                "--thresholds",
                str(d / "thr.json"),
                "--metrics",
                str(d / "e.json"),
                "--confusion-csv",
                str(d / "cm.csv"),
                "--confusion-png",
                str(d / "cm.png"),
                "--predictions",
                str(d / "pred.csv"),
            ],
        )
        assert r.exit_code == 0, r.output
        fitted.append(  # all but the hash of the logits file, which holds the test labels
            [
                re.sub(r'"logits_sha256": "\w+"', "", (d / f).read_text())
                for f in ("cal.json", "thr.json", "t.json", "sweep.csv")
            ]
        )
        reports.append(json.loads((d / "e.json").read_text()))
        test_report = (d / "c.json").read_text()
    assert fitted[0] == fitted[1]
    assert '"test"' in test_report  # test is reported (and differs), never fit
    # validation figures (what choices are made on) do not move when only test changes
    assert reports[0]["val"] == reports[1]["val"] and reports[0]["test"] != reports[1]["test"]
    rep = reports[0]
    for split in ("val", "test"):
        for point in ("cost", "macro_f1"):
            r = rep[split][point]
            assert {"tau_only", "operating_point", "prevalence_corrected", "per_class"} <= set(r)
        assert "macro_f1_prevalence_corrected" in rep[split]["argmax"]
    thr = json.loads((tmp_path / "1" / "thr.json").read_text())
    assert thr["model_sha256"] == "a" * 64 and len(thr["logits_sha256"]) == 64
    assert set(thr["operating_points"]) == {"cost", "macro_f1"} and thr["objective"] == "cost"


def test_metrics_json_is_standard_json(tmp_path):
    """A NaN figure (e.g. a rate with an empty denominator) is written as null, never as the
    bare NaN token that strict JSON readers refuse."""
    from wafer.core.io import write_json

    write_json(tmp_path / "m.json", {"a": float("nan"), "b": np.float64("inf"), "c": 0.1234567})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": None, "c": 0.123457}
