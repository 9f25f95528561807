"""scripts/cost_stability.py (issue 23, item 4): its one-pass cost curve is the served sweep's,
its arg-min the served choice, and the study compares the rules on held-out halves."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from wafer.core.classes import CLASS_NAMES, NONE_INDEX
from wafer.report.metrics import prevalence_weights
from wafer.serving.thresholds import choose_tau, default_taus, sweep

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import cost_stability as cs  # noqa: E402 - a script, imported by path

PRIOR = {c: (50.0 if c == "none" else 3.0 + i) for i, c in enumerate(CLASS_NAMES)}


def _probs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(len(CLASS_NAMES), n, p=np.r_[np.full(8, 0.06), 0.52])
    logits = rng.normal(size=(n, len(CLASS_NAMES)))
    logits[np.arange(n), y] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return np.round(probs, 2), y  # rounded: ties on the grid, as real probabilities have


def test_cost_curve_and_argmin_are_the_served_sweep_and_choice():
    probs, y = _probs()
    w = prevalence_weights(y, PRIOR)
    taus = default_taus()
    rows = sweep(probs, y, taus, 10.0, None, w)
    curve = cs.cost_curve(1.0 - probs[:, NONE_INDEX], y, w, taus, 10.0)
    for key in ("escapes", "false_alarms", "escape_rate", "false_alarm_rate", "cost"):
        assert np.allclose(curve[key], [r[key] for r in rows]), key
    assert taus[cs._argmin(curve["cost"], taus)] == choose_tau(rows)["tau"]
    rng = np.random.default_rng(0)
    assert (
        cs.fit_tau("argmin", 1.0 - probs[:, NONE_INDEX], y, PRIOR, 10.0, rng)
        == choose_tau(rows)["tau"]
    )


def test_halves_split_every_class_and_the_study_reports_every_rule():
    probs, y = _probs()
    a, b = cs.halves(y, np.random.default_rng(1))
    assert len(np.intersect1d(a, b)) == 0 and len(a) + len(b) == len(y)
    for k in np.unique(y):
        assert abs((y[a] == k).sum() - (y[b] == k).sum()) <= 1
    out = cs.study(1.0 - probs[:, NONE_INDEX], y, PRIOR, 10.0, repeats=5, bags=5)
    assert set(out["rules"]) == set(cs.RULES)
    for rule in cs.RULES[1:]:
        assert isinstance(out["rules"][rule]["kept"], bool)
    assert out["rules"]["argmin"]["tau_sd"] >= 0
    with pytest.raises(ValueError, match="rule must be one of"):
        cs.fit_tau("median", probs[:, 0], y, PRIOR, 10.0, np.random.default_rng(0))


def test_main_reads_the_workspace_given_not_the_checkout(tmp_path):
    """The workspace's own dvc.yaml paths, params, logits and calibration (validation only)."""
    import json
    import shutil

    from wafer.data.files import Logits
    from wafer.serving.files import Calibration

    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    from wafer.config.pipeline import pipeline_paths

    paths = pipeline_paths(tmp_path)
    probs, y = _probs(n=300)
    logits = np.log(np.clip(probs, 1e-6, 1)).astype(np.float32)
    split = {"val": (logits, y), "test": (logits[:10], y[:10])}  # test: never read
    paths["logits"].parent.mkdir(parents=True, exist_ok=True)
    Logits(
        views=1,
        runtime="eager",
        model_sha256="0" * 64,
        logits={k: v[0] for k, v in split.items()},
        y={k: v[1].astype(np.int64) for k, v in split.items()},
        rows={k: np.arange(len(v[1])) for k, v in split.items()},
    ).save(paths["logits"])
    paths["calibration"].parent.mkdir(parents=True, exist_ok=True)
    Calibration(1.0, 1, "eager", 300, "0" * 64, "0" * 64).save(paths["calibration"])
    out = tmp_path / "cs.json"
    assert cs.main(["--workdir", str(tmp_path), "--out", str(out), "--repeats", "3"]) == 0
    result = json.loads(out.read_text())
    assert result["val_maps"] == 300 and result["val_defects"] == int((y != NONE_INDEX).sum())
