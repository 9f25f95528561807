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
