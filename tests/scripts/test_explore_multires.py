"""scripts/explore_multires.py: the validation-only look at an ensemble of models at different
input sizes reads the validation maps of each logits file and nothing of their test split."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import explore_multires as em  # noqa: E402 - a script, imported by path

from wafer.config.params import load_section  # noqa: E402
from wafer.config.sections import PriorParams  # noqa: E402
from wafer.model.net import combine  # noqa: E402
from wafer.report.evaluate import prior_from_list  # noqa: E402
from wafer.report.metrics import macro_f1, prevalence_weights  # noqa: E402


def _val_only(path, logits, y, rows):
    """A logits file as the infer stage writes it, less its test arrays (so that reading one
    would fail)."""
    np.savez(
        path,
        views=np.array(4),
        runtime=np.array("eager"),
        model_sha256=np.array("0" * 64),
        val_logits=logits.astype(np.float32),
        val_y=y,
        val_rows=rows,
    )
    return path


@pytest.fixture
def two(tmp_path):
    rng = np.random.default_rng(0)
    n, c = 300, 9
    y = rng.integers(0, c, n)
    rows = np.arange(n) * 3
    a = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[y]
    b = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[y]
    pa = _val_only(tmp_path / "a.npz", a, y, rows)
    pb = _val_only(tmp_path / "b.npz", b, y, rows)
    return tmp_path, (pa, a), (pb, b), y


def test_scores_each_model_and_both_averages_on_validation_only(two):
    tmp, (pa, a), (pb, b), y = two
    out = tmp / "val.json"
    assert em.main([f"small={pa}", f"large={pb}", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["split"] == "val" and got["maps"] == len(y)
    assert got["models"]["small"]["macro_f1"] == round(macro_f1(y, a.argmax(1)), 6)
    stacked = torch.stack(
        [torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32))]
    )
    for avg in ("logit", "prob"):
        want = macro_f1(y, combine(stacked, avg).numpy().argmax(1))
        assert got[f"average_{avg}"]["macro_f1"] == round(want, 6)
    # the prevalence-corrected figure weighs the maps to params.yaml's target prior
    prior = prior_from_list(load_section(ROOT / "params.yaml", PriorParams).target_prior)
    w = prevalence_weights(y, prior)
    got_pc = got["models"]["small"]["macro_f1_prevalence_corrected"]
    assert got_pc == round(macro_f1(y, a.argmax(1), w), 6) != got["models"]["small"]["macro_f1"]


def test_refuses_files_of_other_validation_maps(two, capsys):
    tmp, (pa, a), _, y = two
    other = _val_only(tmp / "c.npz", a, y, np.arange(len(y)) * 5)
    assert em.main([f"a={pa}", f"c={other}", "--out", str(tmp / "v.json")]) == 1
    assert "differ" in capsys.readouterr().err and not (tmp / "v.json").exists()
