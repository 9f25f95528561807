"""scripts/transfer_study.py (issue 24's transfer study): which runs in which order, with which
params; a reused model must have been trained with the run's params; and one tiny study (a
scratch and a donor run) through the mixed pipeline's own stages, resumed without re-running."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from wafer.core.io import sha256_file
from wafer.mixed.synth import generate_mixed
from wafer.model.checkpoint import Checkpoint
from wafer.model.net import ModelConfig, build_model

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import transfer_study as ts  # noqa: E402 - a script, imported by path

BASE = yaml.safe_load((ts.PIPE / "params.yaml").read_text())


def _donor(path, stem="compact"):
    cfg = ModelConfig(num_classes=9, stem=stem, cbam=True, cbam_reduction=16)
    Checkpoint.of(build_model(cfg), cfg, 16, {}).save(path)
    return path


def test_the_small_fractions_run_seed_by_seed_with_both_arms_side_by_side():
    runs = ts.plan([0, 1], [0], [0.01, 0.1, 1.0])
    assert runs[:4] == [
        ("scratch", 0.01, 0),
        ("donor", 0.01, 0),
        ("scratch", 0.1, 0),
        ("donor", 0.1, 0),
    ]
    assert runs[-2:] == [("scratch", 1.0, 0), ("donor", 1.0, 0)]  # the costly ones last
    assert len(runs) == 2 * 2 * 2 + 2
    assert ts.run_name("donor", 0.05, 2) == "donor-f0.05-s2"


def test_a_runs_params_differ_only_in_fraction_seed_budget_and_donor(tmp_path):
    donor = _donor(tmp_path / "d.pt")
    a = ts.run_params(BASE, tmp_path / "x.npz", "scratch", 0.05, 1, donor, ts.BUDGET, {})
    b = ts.run_params(BASE, tmp_path / "x.npz", "donor", 0.05, 1, donor, ts.BUDGET, {})
    assert a["train"]["init"] == "" and a["train"]["init_sha256"] == ""
    assert b["train"]["init"] == str(donor) and b["train"]["init_sha256"] == sha256_file(donor)
    assert (a["train"]["epochs"], a["train"]["patience"]) == ts.BUDGET[0.05]
    a["train"].pop("init"), a["train"].pop("init_sha256")
    b["train"].pop("init"), b["train"].pop("init_sha256")
    assert a == b
    assert a["infer"]["views"] == 1 and a["shard"]["input_px"] == 52 and a["train"]["seed"] == 1
    with pytest.raises(Exception, match="train.lr"):
        ts.run_params(
            BASE, tmp_path / "x.npz", "scratch", 0.05, 1, donor, ts.BUDGET, {"train.lr": -1}
        )


def test_a_reused_model_must_come_from_the_same_params(tmp_path):
    donor = _donor(tmp_path / "d.pt")
    params = ts.run_params(BASE, tmp_path / "x.npz", "scratch", 1.0, 0, donor, ts.BUDGET, {})
    src = tmp_path / "earlier"
    src.mkdir()
    theirs = yaml.safe_load(yaml.safe_dump(params))
    theirs["train"]["lr"] = 0.01
    (src / "params.yaml").write_text(yaml.safe_dump(theirs))
    with pytest.raises(SystemExit, match=r"train.lr is 0.01 there"):
        ts.reuse_model(src, tmp_path / "run", params)


def test_a_tiny_study_runs_the_pipelines_stages_and_resumes(tmp_path):
    data = tmp_path / "mixed.npz"
    generate_mixed(n_maps=190, side=24, rare_share=0.5, seed=0).save(data)
    donor = _donor(tmp_path / "donor.pt")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "scripts" / "transfer_study.py")]
    cmd += ["--workdir", str(tmp_path / "w"), "--out", str(out), "--donor", str(donor)]
    cmd += ["--data", str(data), "--fractions", "0.5", "--seeds", "0", "--budget", "0.5:1:1"]
    for kv in ("shard.input_px=16", "train.stem=compact", "train.batch_size=32"):
        cmd += ["-S", kv]
    cmd += ["-S", "evaluate.bootstrap=10", "-S", "infer.batch_size=256"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    scratch, dn = out / "scratch-f0.50-s0", out / "donor-f0.50-s0"
    for run in (scratch, dn):
        for f in ("train.json", "evaluate.json", "calibrate.json", "run.json", "params.yaml"):
            assert (run / f).is_file(), (run.name, f)
    ts_, td = (json.loads((r / "train.json").read_text()) for r in (scratch, dn))
    assert ts_["train_maps"] == td["train_maps"] < 190 * 0.7  # the same half of train
    assert ts_["epoch_maps"] >= ts_["train_maps"]
    assert ts_["init"] is None and td["init"]["donor_sha256"] == sha256_file(donor)
    run = json.loads((dn / "run.json").read_text())
    assert run["arm"] == "donor" and run["fraction"] == 0.5 and run["machine"]["cpu_model"]
    ev = json.loads((dn / "evaluate.json").read_text())
    assert {"val", "test"} <= set(ev) and ev["served"] == "macro_f1"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0 and again.stdout.count("done already") == 2
    assert "] train" not in again.stdout
