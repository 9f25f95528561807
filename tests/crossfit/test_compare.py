"""Stage compare_cleaned (stages/crossfit/compare.py) and its paired bootstrap
(wafer.report.evaluate.paired_gain_prior): a candidate replaces its baseline only for a gain
validation resolves."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from wafer.core.io import save_npz
from wafer.report.evaluate import paired_gain_prior, prior_from_list
from wafer.report.metrics import macro_f1, prevalence_weights

from conftest import params_file  # noqa: E402

PRIOR = prior_from_list([4294, 555, 5189, 9680, 3593, 149, 866, 1193, 147431])
N_VAL, N_TEST = 600, 200


def _labels():
    rng = np.random.default_rng(0)
    return rng.integers(0, 9, N_VAL), rng.integers(0, 9, N_TEST)


def _noisy(y, accuracy: float, seed: int):
    rng = np.random.default_rng(seed)
    return np.where(rng.random(len(y)) < accuracy, y, rng.integers(0, 9, len(y)))


def test_paired_gain_of_a_model_over_itself_is_exactly_zero():
    y, _ = _labels()
    pred = _noisy(y, 0.7, 1)
    g = paired_gain_prior(macro_f1, y, pred, pred, PRIOR, n_boot=50, seed=0)
    assert g["candidate"] == g["baseline"] == macro_f1(y, pred, prevalence_weights(y, PRIOR))
    assert {k: g[k] for k in ("gain", "lower_bound", "low", "high", "share_above_zero")} == {
        "gain": 0.0,
        "lower_bound": 0.0,
        "low": 0.0,
        "high": 0.0,
        "share_above_zero": 0,
    }


def test_paired_gain_resolves_a_clear_gain_and_not_a_coin_flip():
    y, _ = _labels()
    base = _noisy(y, 0.6, 1)
    better = np.where(np.random.default_rng(2).random(len(y)) < 0.5, y, base)  # fixes half
    g = paired_gain_prior(macro_f1, y, better, base, PRIOR, n_boot=200, seed=0)
    w = prevalence_weights(y, PRIOR)
    assert g["gain"] == pytest.approx(macro_f1(y, better, w) - macro_f1(y, base, w))
    assert 0 < g["lower_bound"] < g["gain"] and g["low"] < g["lower_bound"]
    assert g["share_above_zero"] == 1.0
    # two models of the same skill: their difference is noise, which the bound does not pass
    other = _noisy(y, 0.6, 3)
    g = paired_gain_prior(macro_f1, y, other, base, PRIOR, n_boot=200, seed=0)
    assert g["lower_bound"] < 0 < g["high"]


def test_paired_gain_is_narrower_than_unpaired_intervals():
    """Pairing is the point: the shared difficulty of the maps cancels."""
    y, _ = _labels()
    base = _noisy(y, 0.6, 1)
    cand = np.where(np.random.default_rng(4).random(len(y)) < 0.05, y, base)  # a small gain
    g = paired_gain_prior(macro_f1, y, cand, base, PRIOR, n_boot=200, seed=0)
    rng = np.random.default_rng(0)
    unpaired = []
    for _ in range(200):  # independent resamples for each model
        i, j = rng.integers(0, len(y), len(y)), rng.integers(0, len(y), len(y))
        unpaired.append(
            macro_f1(y[i], cand[i], prevalence_weights(y[i], PRIOR))
            - macro_f1(y[j], base[j], prevalence_weights(y[j], PRIOR))
        )
    lo, hi = np.quantile(unpaired, [0.025, 0.975])
    assert g["high"] - g["low"] < (hi - lo) / 2


def test_paired_gain_refuses_unpaired_input():
    y, _ = _labels()
    with pytest.raises(ValueError, match="same maps"):
        paired_gain_prior(macro_f1, y, y[:-1], y, PRIOR, n_boot=10, seed=0)
    with pytest.raises(ValueError, match="confidence"):
        paired_gain_prior(macro_f1, y, y, y, PRIOR, n_boot=10, seed=0, confidence=0.4)


def _served(d, load_stage, params, signal: float, seed: int, rows=None):
    """A model's logits (``signal`` on the true class) and their calibration and thresholds,
    fit by the calibrate and thresholds stages as the pipeline fits them."""
    d.mkdir()
    val_y, test_y = _labels()
    rng = np.random.default_rng(seed)
    logits = d / "logits.npz"
    save_npz(
        logits,
        views=np.array(1),
        runtime=np.array("eager"),
        val_logits=rng.normal(0, 1, (N_VAL, 9)) + signal * np.eye(9)[val_y],
        val_y=val_y,
        val_rows=np.arange(N_VAL) if rows is None else rows,
        test_logits=rng.normal(0, 1, (N_TEST, 9)) + signal * np.eye(9)[test_y],
        test_y=test_y,
        test_rows=np.arange(N_TEST),
        model_sha256=np.array(f"{seed:064d}"),
    )
    out = {"logits": logits, "cal": d / "cal.json", "thr": d / "thr.json"}
    for stage, args in (
        ("calibrate", ["--out", out["cal"], "--metrics", d / "c.json"]),
        ("thresholds", ["--calibration", out["cal"], "--out", out["thr"]]),
    ):
        extra = {
            "calibrate": ["--plots-dir", d / "rel", "--png", d / "rel.png"],
            "thresholds": [
                *("--metrics", d / "t.json", "--curve", d / "sweep.csv", "--png", d / "s.png"),
                *("--screen-png", d / "screen.png", "--sets-curve", d / "sets.csv"),
                *("--sets-png", d / "sets.png"),
            ],
        }[stage]
        argv = ["--params", params, "--logits", logits, *args, *extra]
        r = CliRunner().invoke(load_stage(stage).app, [str(a) for a in argv])
        assert r.exit_code == 0, r.output
    return out


def _compare(load_stage, params, cand, base, metrics, adopt=True):
    argv = [
        "--adopt" if adopt else "--report",
        *("--params", params, "--logits", cand["logits"], "--calibration", cand["cal"]),
        *("--thresholds", cand["thr"], "--baseline-logits", base["logits"]),
        *("--baseline-calibration", base["cal"], "--baseline-thresholds", base["thr"]),
        *("--metrics", metrics),
    ]
    return CliRunner().invoke(load_stage("crossfit/compare").app, [str(a) for a in argv])


@pytest.fixture
def served(tmp_path, load_stage):
    params = str(params_file(tmp_path, {"evaluate.bootstrap": 200}))
    models = {
        "weak": _served(tmp_path / "weak", load_stage, params, 1.0, 1),
        "strong": _served(tmp_path / "strong", load_stage, params, 4.0, 2),
        "twin": _served(tmp_path / "twin", load_stage, params, 1.0, 3),
    }
    return params, models


def test_compare_adopts_a_clear_gain_only(tmp_path, load_stage, served):
    params, m = served
    r = _compare(load_stage, params, m["strong"], m["weak"], tmp_path / "a.json")
    assert r.exit_code == 0, r.output
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["adopted"] is True and a["gain_lower_bound"] > 0
    assert a["gain"] == pytest.approx(a["candidate"] - a["baseline"])
    assert (a["split"], a["point"], a["maps"], a["confidence"]) == ("val", "macro_f1", 600, 0.95)
    # the figure is the one evaluate reports: the served rule at the macro_f1 point
    r = _compare(load_stage, params, m["weak"], m["strong"], tmp_path / "b.json")
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["adopted"] is False and b["gain"] == pytest.approx(-a["gain"])
    # a model of the same skill wins or loses by chance: never adopted on that
    r = _compare(load_stage, params, m["twin"], m["weak"], tmp_path / "c.json")
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["adopted"] is False and c["gain_ci"]["low"] < 0 < c["gain_ci"]["high"]
    assert [x["resolved"] for x in (a, b, c)] == [True, False, False]


def test_compare_reports_a_gain_without_deciding_for_the_ensemble_and_student(
    tmp_path, load_stage, served
):
    """compare and compare_student (--report) give the page a paired figure; only
    compare_cleaned (--adopt) records a decision."""
    params, m = served
    r = _compare(load_stage, params, m["strong"], m["weak"], tmp_path / "r.json", adopt=False)
    assert r.exit_code == 0 and "resolved" in r.output and "adopted" not in r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    _compare(load_stage, params, m["strong"], m["weak"], tmp_path / "a.json")
    dec = json.loads((tmp_path / "a.json").read_text())
    assert "adopted" not in rep and "rule" not in rep and rep["resolved"] is True
    assert {k: v for k, v in dec.items() if k not in ("adopted", "rule")} == rep


def test_compare_refuses_files_that_do_not_belong_together(tmp_path, load_stage, served):
    params, m = served
    wrong = dict(m["strong"], cal=m["weak"]["cal"])  # another model's calibration
    r = _compare(load_stage, params, wrong, m["weak"], tmp_path / "x.json")
    assert r.exit_code != 0 and "logits_sha256" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()
    shuffled = _served(
        tmp_path / "shuffled", load_stage, params, 4.0, 2, rows=np.arange(N_VAL)[::-1]
    )
    r = _compare(load_stage, params, shuffled, m["weak"], tmp_path / "x.json")
    assert r.exit_code != 0 and "rows differ" in r.output
