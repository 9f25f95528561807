"""End to end: the whole DVC pipeline on tiny params in a temporary copy of the repository."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from wafer.core.classes import CLASS_NAMES

from conftest import copy_checkout

TINY = {
    "synthesize": {"n_maps": 240, "floor": 0.06},
    "shard": {"input_px": 16},
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
        # train saves its state every epoch (wafer.model.resume) and deletes it at the end
        WAFER_RESUME_DIR=str(tmp_path_factory.mktemp("resume")),
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
    dst, env = repo
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
                "screen",
            ):
                assert key in ev[split][point], (split, point, key)
        sets = ev[split]["prediction_sets"]  # coverage of the served prediction sets
        alpha = yaml.safe_load((dst / "params.yaml").read_text())["thresholds"]["set_alpha"]
        assert sets["target_coverage"] == pytest.approx(1 - alpha)
        assert 0 <= sets["coverage"] <= 1
        assert sets["mean_size"] >= 1 and set(sets["per_class"]) == set(CLASS_NAMES)
    # the tiny run's few validation defects cannot guarantee 0.5 %: refused, and says why
    assert ev["escape_budget"]["attainable"] is False and ev["escape_budget"]["why"]
    assert "escape_budget" not in ev["test"]
    html = (dst / "reports/gradcam/index.html").read_text()
    assert all(c in html for c in ("Center", "Scratch", "Near-full"))
    # train saved a resumable state every epoch and deleted it once its outputs were written
    resume = Path(env["WAFER_RESUME_DIR"])
    assert resume.is_dir() and not list(resume.iterdir())
    assert json.loads((dst / "metrics/timing/train.json").read_text())["resumed_after_epoch"] == 0


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


def test_remote_push_then_pull_into_a_fresh_clone(repo, tmp_path):
    """A team shares outputs through a DVC remote (a local folder here; S3, GCS, SSH or Azure
    by the same commands): push from one clone, `dvc pull` into a fresh one instead of
    retraining; the clone is clean for DVC and git, `wafer predict` serves the pulled model,
    and the served model is fetched by its artifact name."""
    dst, env = repo
    remote = tmp_path / "remote"
    _run([sys.executable, "-m", "dvc", "remote", "add", "-d", "shared", str(remote)], dst, env)
    _run(["git", "commit", "-qam", "a shared DVC remote"], dst, env)
    _run([sys.executable, "-m", "dvc", "push"], dst, env)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(dst), str(clone)], tmp_path, env)
    assert not (clone / "models/model.pt").exists()
    _run([sys.executable, "-m", "dvc", "pull"], clone, env)
    status = _run([sys.executable, "-m", "dvc", "status"], clone, env)
    assert status.strip().endswith("Data and pipelines are up to date."), status
    assert _run(["git", "status", "--porcelain"], clone, env).strip() == ""
    served = ("model.pt", "calibration.json", "thresholds.json", "index.npz", "novelty.json")
    for f in (f"models/{name}" for name in served):
        assert (clone / f).read_bytes() == (dst / f).read_bytes(), f

    np.save(tmp_path / "m.npy", np.pad(np.ones((20, 20), np.uint8), 2))
    wafer_cli = Path(sys.executable).parent / "wafer"
    _run([str(wafer_cli), "predict", str(tmp_path / "m.npy"), "-o", "p.csv"], clone, env)
    assert (clone / "p.csv").read_text().count("\n") == 2
    with open(clone / "p.csv", newline="") as fh:  # the pulled index serves the novelty flag
        (row,) = list(csv.DictReader(fh))
    assert row["novel"] in ("0", "1") and np.isfinite(float(row["novelty_score"]))
    (clone / "p.csv").unlink()

    # a version of the model artifact is a git tag (GTO's format, which DVC reads)
    gto = str(Path(sys.executable).parent / "gto")
    _run([gto, "register", "wafer-model", "--version", "v1.0.0"], dst, env)
    got = tmp_path / "fetched.pt"
    _run(
        [sys.executable, "-m", "dvc", "artifacts", "get", str(dst), "wafer-model", "-o", str(got)],
        tmp_path,
        env,
    )
    assert got.read_bytes() == (dst / "models/model.pt").read_bytes()


def test_queued_experiments_both_run(repo):
    """`dvc exp run --queue` twice, then the queue's worker runs them (`dvc queue start`):
    both are in `dvc exp show`."""
    dst, env = repo
    for seed in (1, 2):
        _run(
            [sys.executable, "-m", "dvc", "exp", "run", "--queue", "-n", f"q{seed}"]
            # up to split (a cheap stage): the queue is the point, not what it runs
            + ["-S", f"split.seed={seed}", "split"],
            dst,
            env,
        )
    _run([sys.executable, "-m", "dvc", "queue", "start", "--jobs", "1"], dst, env)
    deadline = time.monotonic() + 540
    while time.monotonic() < deadline:
        status = _run([sys.executable, "-m", "dvc", "queue", "status"], dst, env)
        if not any(s in status for s in ("Queued", "Running")):
            break
        time.sleep(3)
    assert "Failed" not in status, status
    shown = json.loads(_run([sys.executable, "-m", "dvc", "exp", "show", "--json"], dst, env))
    names = {e.get("name") for commit in shown for e in (commit.get("experiments") or [])}
    assert {"q1", "q2"} <= names, (names, status)


def test_exp_run_boolean_round_trip(repo):
    """`dvc exp run -S train.cbam=false` really trains without CBAM: the stage reads the value
    DVC wrote into params.yaml, and the checkpoint and dvc.lock record the same section."""
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
            "train",  # the stages up to train: what the round trip is about
        ],
        dst,
        env,
    )
    payload = torch.load(dst / "models/model.pt", weights_only=True)
    assert payload["model_config"]["cbam"] is False
    assert payload["extra"]["train"]["loss"] == "ce"
    lock = yaml.safe_load((dst / "dvc.lock").read_text())
    assert payload["extra"]["train"] == lock["stages"]["train"]["params"]["params.yaml"]["train"]
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["cbam"] is False
    shown = _run([sys.executable, "-m", "dvc", "exp", "show", "--json"], dst, env)
    assert "nocbam" in shown


def test_torchrun_train_through_the_stage(repo):
    """`train.nproc=2`: the train stage runs as 2 gloo processes under torchrun; the loss falls,
    rank 0 alone writes one checkpoint and the same metrics files as one process, and dvc.lock
    records the process count."""
    dst, env = repo
    one = json.loads(_run(["git", "show", "HEAD:metrics/train.json"], dst, env))
    env = env | {"OMP_NUM_THREADS": "1"}
    _run(
        [sys.executable, "-m", "dvc", "exp", "run", "-n", "ddp2", "-S", "train.nproc=2", "train"],
        dst,
        env,
    )
    two = json.loads((dst / "metrics/train.json").read_text())
    assert set(two) == set(one)
    timing = json.loads((dst / "metrics/timing/train.json").read_text())
    assert timing["processes"] == 2
    curves = (dst / "plots/train_curves.csv").read_text().splitlines()
    losses = [float(line.split(",")[1]) for line in curves[1:]]
    assert len(losses) == TINY["train"]["epochs"] and losses[-1] < losses[0]
    assert sorted(p.name for p in (dst / "models").iterdir() if p.suffix == ".pt") == ["model.pt"]
    payload = torch.load(dst / "models/model.pt", weights_only=True)
    assert payload["input_size"] == TINY["shard"]["input_px"]
    lock = yaml.safe_load((dst / "dvc.lock").read_text())
    assert lock["stages"]["train"]["params"]["params.yaml"]["train"]["nproc"] == 2
