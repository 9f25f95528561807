"""End to end: the whole DVC pipeline on tiny params in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import copy_checkout

TINY = {
    "synthesize": {"n_maps": 240, "floor": 0.06},
    "shard": {"size": 16},
    "train": {"epochs": 2, "batch_size": 32, "patience": 2},
    "infer": {"batch_size": 256},
    "evaluate": {"bootstrap": 30},
    "gradcam": {"max_maps": 4, "per_class": 1},
}


def _run(args: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict]:
    if shutil.which("git") is None:
        pytest.skip("git is needed for dvc")
    dst = tmp_path_factory.mktemp("repo")
    copy_checkout(dst, ("metrics/", "plots/train", "dvc.lock"))
    params = yaml.safe_load((dst / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    _run(["git", "init", "-q"], dst, env)
    _run(["git", "config", "user.email", "t@t"], dst, env)
    _run(["git", "config", "user.name", "t"], dst, env)
    _run(["git", "add", "-A"], dst, env)
    _run(["git", "commit", "-qm", "tiny"], dst, env)
    out = _run([sys.executable, "-m", "dvc", "repro"], dst, env)
    assert "Running stage 'gradcam'" in out
    _run(["git", "add", "-A"], dst, env)
    _run(["git", "commit", "-qm", "results"], dst, env)
    return dst, env


def test_repro_writes_every_output(repo):
    dst, _ = repo
    for name in (
        "ingest",
        "split",
        "shard",
        "train",
        "calibrate",
        "thresholds",
        "evaluate",
        "gradcam",
    ):
        assert (dst / "metrics" / f"{name}.json").is_file(), name
    for f in (
        "plots/confusion.csv",
        "plots/confusion.png",
        "plots/reliability.png",
        "plots/sweep.csv",
        "plots/train_curves.csv",
        "reports/gradcam/index.html",
        "models/model.pt",
        "models/calibration.json",
        "models/thresholds.json",
        "data/predictions.csv",
    ):
        assert (dst / f).is_file(), f
    ev = json.loads((dst / "metrics/evaluate.json").read_text())
    assert ev["objective"] == "cost"
    for split in ("val", "test"):  # same report on both splits, both operating points
        assert "macro_f1_prevalence_corrected" in ev[split]["argmax"]
        for point in ("cost", "macro_f1"):
            for key in (
                "macro_f1",
                "balanced_accuracy",
                "macro_auprc",
                "escapes",
                "false_alarms",
                "cost",
                "macro_f1_ci95",
                "per_class",
                "prevalence_corrected",
                "tau_only",
                "operating_point",
            ):
                assert key in ev[split][point], (split, point, key)
    html = (dst / "reports/gradcam/index.html").read_text()
    assert all(c in html for c in ("Center", "Scratch", "Near-full"))


def test_second_repro_is_a_no_op(repo):
    dst, env = repo
    out = _run([sys.executable, "-m", "dvc", "repro"], dst, env)
    assert "Running stage" not in out
    assert (
        _run([sys.executable, "-m", "dvc", "status"], dst, env)
        .strip()
        .endswith("Data and pipelines are up to date.")
    )


def test_forced_rerun_is_byte_identical(repo):
    """Same params, same machine: every output and metric is identical, dvc.lock unchanged."""
    dst, env = repo
    _run([sys.executable, "-m", "dvc", "repro", "--force"], dst, env)
    assert _run(["git", "status", "--porcelain"], dst, env).strip() == ""


def test_exp_run_boolean_round_trip(repo):
    """`dvc exp run -S train.cbam=false` really trains without CBAM (DVC would drop a false
    boolean without parsing.bool = boolean_optional)."""
    dst, env = repo
    _run(
        [
            sys.executable,
            "-m",
            "dvc",
            "exp",
            "run",
            "-n",
            "nocbam",
            "-S",
            "train.cbam=false",
            "-S",
            "train.loss=ce",
        ],
        dst,
        env,
    )
    payload = torch.load(dst / "models/model.pt", weights_only=True)
    assert payload["model_config"]["cbam"] is False
    assert payload["extra"]["loss"] == "ce"
    lock = yaml.safe_load((dst / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["cbam"] is False
    shown = _run([sys.executable, "-m", "dvc", "exp", "show", "--json"], dst, env)
    assert "nocbam" in shown
