"""scripts/build_ensemble.py: a saved run's served ensemble is rebuilt from its member files only
when the result is the model its served calibration was fit on; otherwise nothing is written and
the error is one line."""

from __future__ import annotations

import hashlib
import json
import sys

import torch
import yaml

from wafer.config.crossfit import EnsembleParams
from wafer.core.io import sha256_file
from wafer.model.checkpoint import Checkpoint
from wafer.model.members import member_file, served_ensemble
from wafer.model.net import ModelConfig, build_model

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import build_ensemble as be  # noqa: E402 - a script, imported by path

CFG = ModelConfig(stem="compact", cbam=False, cbam_reduction=16)
RECIPE = {"loss": "focal", "epochs": 8, "lr": 0.001, "seed": 0}
ENSEMBLE = {
    "average": "logit", "members": "seeds", "seeds": [3], "start": "root",
    "finetune_epochs": 1, "finetune_lr": 0.0001,
}  # fmt: skip


def _run(tmp_path):
    torch.manual_seed(0)
    root = tmp_path / "root" / "model.pt"
    root.parent.mkdir()
    Checkpoint.of(build_model(CFG), CFG, 16, {"train": RECIPE}).save(root)
    seeds = tmp_path / "served" / "seeds"
    made = {"seed": 3, "start": "root", "root_sha256": sha256_file(root)}
    tuned = RECIPE | {"seed": 3, "epochs": 1, "lr": 0.0001}
    seeds.mkdir(parents=True)
    Checkpoint.of(build_model(CFG), CFG, 16, {"train": tuned, "crossfit": made}).save(
        member_file(seeds, 3)
    )
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"ensemble": ENSEMBLE}))
    ckpt, _ = served_ensemble(EnsembleParams(**ENSEMBLE), root_model=root, seeds=seeds)
    sha = hashlib.sha256(ckpt.to_bytes()).hexdigest()
    cal = tmp_path / "served" / "calibration.json"
    cal.write_text(
        json.dumps(
            {"temperature": 1.0, "views": 1, "runtime": "eager", "fit_on": "val", "n_val": 10,
             "model_sha256": sha, "logits_sha256": "a" * 64}
        )
    )  # fmt: skip
    args = ["--params", str(params), "--root-model", str(root), "--seeds", str(seeds)]
    return args + ["--calibration", str(cal)], sha, cal


def test_rebuilds_the_model_the_calibration_was_fit_on(tmp_path, capsys):
    args, sha, _ = _run(tmp_path)
    out = tmp_path / "out" / "model.pt"
    assert be.main([*args, "--out", str(out)]) == 0
    assert sha256_file(out) == sha and sha in capsys.readouterr().out


def test_other_members_write_nothing(tmp_path, capsys):
    args, sha, cal = _run(tmp_path)
    data = json.loads(cal.read_text())
    cal.write_text(json.dumps(data | {"model_sha256": "b" * 64}))  # fit on another model
    out = tmp_path / "out" / "model.pt"
    assert be.main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert not out.exists() and err.count("\n") == 0
    assert str(cal) in err and "not the served ensemble" in err and sha[:12] in err


def test_a_missing_member_is_one_line(tmp_path, capsys):
    args, _, _ = _run(tmp_path)
    (tmp_path / "served" / "seeds" / "3.pt").unlink()
    assert be.main([*args, "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "3.pt" in err and not (tmp_path / "m.pt").exists()


def test_fold_members_without_their_folder_and_folds_file_is_one_line(tmp_path, capsys):
    args, _, _ = _run(tmp_path)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"ensemble": ENSEMBLE | {"members": "folds"}}))
    assert be.main([*args, "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--members, --folds" in err
