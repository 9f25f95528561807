"""scripts/explore_multires.py: the validation-only look at an ensemble of served models (at
different input sizes, or fine-tuned members) reads the validation maps of each logits file or
shard folder and nothing of their test split."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import explore_multires as em  # noqa: E402 - a script, imported by path

from wafer.config.params import load_params, load_section  # noqa: E402
from wafer.config.sections import InferParams, PriorParams  # noqa: E402
from wafer.core.io import sha256_file  # noqa: E402
from wafer.data.files import Shard  # noqa: E402
from wafer.model.checkpoint import Checkpoint  # noqa: E402
from wafer.model.forward import predict_outputs  # noqa: E402
from wafer.model.net import ModelConfig, build_model, combine  # noqa: E402
from wafer.report.evaluate import prior_from_list  # noqa: E402
from wafer.report.metrics import macro_f1, prevalence_weights  # noqa: E402
from wafer.serving.refit import quality  # noqa: E402


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
    # a benchmark's header: the command as given, the processor and torch beside every figure
    assert got["command"] == f"python scripts/explore_multires.py small={pa} large={pb} --out {out}"
    assert got["processor"] and got["cpu_capability"] and got["threads"] >= 1 and got["torch"]
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


def test_refits_the_served_point_and_gives_paired_gains_and_a_noise_control(two):
    """Each model's and average's `macro_f1` point fit on its own validation logits (as the
    served decision is fit), each average's paired gain over the first model, and the control
    (the first model plus noise) scored the same way."""
    tmp, (pa, a), (pb, _), y = two
    out = tmp / "val.json"
    assert (
        em.main(
            [f"one={pa}", f"two={pb}", "--out", str(out), "--params", str(ROOT / "params.yaml")]
        )
        == 0
    )
    got = json.loads(out.read_text())
    params = load_params(ROOT / "params.yaml")
    assert got["models"]["one"]["refit"] == quality(a.astype(np.float32), y, params)
    gain = got["average_logit"]["gain_vs_one"]
    assert gain["argmax"]["gain"] == pytest.approx(
        got["average_logit"]["macro_f1_prevalence_corrected"]
        - got["models"]["one"]["macro_f1_prevalence_corrected"],
        abs=2e-5,
    )
    assert (
        gain["macro_f1_point"]["low"]
        <= gain["macro_f1_point"]["gain"]
        <= gain["macro_f1_point"]["high"]
    )
    control = got["control_one_plus_noise"]
    assert control["sd"] == em.NOISE_SD and set(control["refit"]) == set(
        got["models"]["one"]["refit"]
    )
    # a name used twice would merge two models into one entry
    with pytest.raises(SystemExit):
        em.main([f"one={pa}", f"one={pb}", "--out", str(out)])


def test_model_files_are_scored_on_the_validation_maps_of_the_shards(tmp_path):
    """NAME=model.pt: its validation logits computed as `infer` computes them (eager, the
    params' infer.views), on the shards' validation maps; the same model given as a file and as
    its logits scores the same; a model of another input size is refused in one line."""
    cfg = ModelConfig(stem="compact", cbam=False, cbam_reduction=16)
    rng = np.random.default_rng(1)
    n = 40
    val = Shard(rng.integers(0, 3, (n, 16, 16), dtype=np.uint8), np.arange(n) % 9, np.arange(n) * 2)
    val.save(tmp_path / "shards", "val")
    model = tmp_path / "m.pt"
    torch.manual_seed(0)
    Checkpoint.of(build_model(cfg), cfg, 16, {}).save(model)
    infer = load_section(ROOT / "params.yaml", InferParams)
    views = infer.views
    net = Checkpoint.load(model).build("cpu")
    want = predict_outputs(net, val.x, infer.batch_size, views=views).logits  # as `infer` does
    logits = _val_only(tmp_path / "m.npz", want, val.y, val.rows)
    out = tmp_path / "v.json"
    args = ["--shards", str(tmp_path / "shards"), "--out", str(out)]
    assert em.main([f"file={model}", f"logits={logits}", *args]) == 0
    got = json.loads(out.read_text())["models"]
    assert got["file"]["views"] == views and got["file"]["model_sha256"] == sha256_file(model)
    assert got["file"]["macro_f1"] == got["logits"]["macro_f1"]
    assert got["file"]["refit"] == got["logits"]["refit"]
    other = tmp_path / "o.pt"
    Checkpoint.of(build_model(cfg), cfg, 32, {}).save(other)
    assert em.main([f"o={other}", f"logits={logits}", *args]) == 1
    with pytest.raises(SystemExit):  # a model file without shards
        em.main([f"file={model}", f"logits={logits}", "--out", str(out)])
