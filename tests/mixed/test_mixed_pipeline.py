"""End to end: the mixed-type DVC pipeline (pipelines/mixed/, its own DVC project) on tiny params
in a temporary copy of the repository: every stage runs, a second `dvc repro` is a no-op,
`dvc exp run -S` reaches its params, the 9-class project does not see it, and the served files
refuse a mismatched set."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from wafer.core.errors import WaferInputError
from wafer.core.io import sha256_file
from wafer.mixed.labels import MIXED_LABELS, code_of
from wafer.mixed.served import MixedCalibration, MixedThresholds, check_mixed_binding
from wafer.model.checkpoint import Checkpoint
from wafer.model.net import ModelConfig, build_model

from conftest import copy_checkout

PIPE = Path("pipelines/mixed")
TINY = {
    "synthesize": {"n_maps": 190, "side": 24},
    "shard": {"input_px": 16},
    "train": {"epochs": 1, "batch_size": 32},
    "infer": {"batch_size": 256},
    "evaluate": {"bootstrap": 20},
    "gradcam": {"max_maps": 6, "per_class": 1},
}


def _run(args: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict]:
    if shutil.which("git") is None:
        pytest.skip("git is needed for dvc")
    dst = tmp_path_factory.mktemp("mixed")
    copy_checkout(
        dst,
        (
            "dvc.lock",
            "metrics/",
            "plots/",
            "results/",
            "docs/",
            "pipelines/mixed/dvc.lock",
            "pipelines/mixed/metrics/",
            "pipelines/mixed/plots/",
        ),
    )
    params_file = dst / PIPE / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for section, values in TINY.items():
        params[section].update(values)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    _run(["git", "init", "-q"], dst, env)
    _run(["git", "add", "-A"], dst, env)
    _run(["git", "commit", "-qm", "tiny"], dst, env)
    out = _run([sys.executable, "-m", "dvc", "repro"], dst / PIPE, env)
    assert "Running stage 'gradcam'" in out
    _run(["git", "add", "-A"], dst, env)
    _run(["git", "commit", "-qm", "results"], dst, env)
    return dst, env


def test_every_stage_writes_its_outputs_and_a_second_repro_is_a_no_op(repo):
    dst, env = repo
    pipe = dst / PIPE
    for name in ("ingest", "split", "shard", "train", "calibrate", "thresholds", "evaluate"):
        assert (pipe / "metrics" / f"{name}.json").is_file(), name
    for f in (
        "plots/label_confusion.png",
        "plots/patterns.png",
        "plots/reliability.png",
        "data/predictions.csv",
        "models/model.pt",
        "dvc.lock",
    ):
        assert (pipe / f).is_file(), f
    out = _run([sys.executable, "-m", "dvc", "repro"], dst / PIPE, env)
    assert "Running stage" not in out
    assert "up to date" in _run([sys.executable, "-m", "dvc", "status"], dst / PIPE, env)
    assert "pipelines/mixed" not in _run([sys.executable, "-m", "dvc", "status"], dst, env)


def test_evaluate_reports_every_figure_the_task_needs(repo):
    dst, _ = repo
    ev = json.loads((dst / PIPE / "metrics" / "evaluate.json").read_text())
    test = ev["test"][ev["served"]]
    for key in ("macro_f1", "micro_f1", "exact_match", "hamming_loss", "escapes", "ci95"):
        assert key in test, key
    assert set(test["per_label"]) == set(MIXED_LABELS)
    assert sum(v["maps"] for v in test["per_pattern"].values()) == ev["test"]["maps"]
    assert set(ev["test"]) >= {"cost", "macro_f1", "p0.5", "auprc"}
    cal = json.loads((dst / PIPE / "metrics" / "calibrate.json").read_text())
    assert set(cal["test"]["label_ece_after"]) == set(MIXED_LABELS)


def test_the_model_names_its_8_labels_and_a_9_class_reader_refuses_it(repo):
    dst, _ = repo
    model = dst / PIPE / "models" / "model.pt"
    assert Checkpoint.load(model, class_names=MIXED_LABELS).config.num_classes == 8
    with pytest.raises(ValueError, match="class names"):
        Checkpoint.load(model)  # the 9-class default


def test_served_files_refuse_a_set_that_does_not_belong_together(repo, tmp_path):
    dst, _ = repo
    models = dst / PIPE / "models"
    cal = MixedCalibration.load(models / "calibration.json")
    thr = MixedThresholds.load(models / "thresholds.json")
    check_mixed_binding("m", cal.model_sha256, "c", cal, "t", thr)
    with pytest.raises(WaferInputError, match="another model"):
        check_mixed_binding("m", "0" * 64, "c", cal, "t", thr)
    data = json.loads((models / "thresholds.json").read_text())
    data["points"]["cost"][2] = 1.5
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(WaferInputError, match=r"cost\[2\]"):
        MixedThresholds.load(bad)


def test_exp_run_sets_a_mixed_param_and_the_9_class_project_does_not_see_it(repo):
    dst, env = repo
    out = _run(
        [sys.executable, "-m", "dvc", "exp", "run", "-S", "thresholds.objective=cost"],
        dst / PIPE,
        env,
    )
    assert "Running stage 'thresholds'" in out and "Running stage 'train'" not in out
    assert "pipelines/mixed" not in _run([sys.executable, "-m", "dvc", "status"], dst, env)
    served = json.loads((dst / PIPE / "models" / "thresholds.json").read_text())["objective"]
    assert served == "cost"
    rows = np.loadtxt(
        dst / PIPE / "data" / "predictions.csv", delimiter=",", skiprows=1, usecols=range(4, 12)
    )
    assert rows.shape[1] == 8 and torch.all(torch.from_numpy(rows) <= 1)


def test_train_starts_from_a_9_class_donor_on_a_share_of_the_maps(repo, tmp_path):
    """The transfer study's run: train.init (path + SHA-256) and train.fraction, recorded in
    metrics/train.json; a donor whose bytes are not the named ones stops the stage in one line."""
    dst, env = repo
    pipe = dst / PIPE
    params = yaml.safe_load((pipe / "params.yaml").read_text())
    cfg = ModelConfig(
        num_classes=9,
        stem=params["train"]["stem"],
        cbam=params["train"]["cbam"],
        cbam_reduction=params["train"]["cbam_reduction"],
    )
    donor = tmp_path / "donor.pt"
    Checkpoint.of(build_model(cfg), cfg, 16, {}).save(donor)
    params["train"] |= {"init": str(donor), "init_sha256": sha256_file(donor), "fraction": 0.5}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def train(params_file: Path) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "../../stages/mixed/train.py", "--params", str(params_file)]
        cmd += ["--shards", "data/shards", "--model-out", str(tmp_path / "m.pt"), "--no-progress"]
        cmd += ["--curves", str(tmp_path / "c.csv"), "--metrics", str(tmp_path / "train.json")]
        return subprocess.run(cmd, cwd=pipe, env=env, capture_output=True, text=True, timeout=600)

    proc = train(tmp_path / "params.yaml")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "train.json").read_text())
    full = json.loads((pipe / "metrics" / "train.json").read_text())
    n_train = len(np.load(pipe / "data" / "shards" / "train_y.npy"))
    assert full["train_maps"] == n_train and full["init"] is None
    assert 0.4 * n_train <= metrics["train_maps"] <= 0.6 * n_train + 38
    init = metrics["init"]
    assert init["donor_sha256"] == sha256_file(donor) and init["head_copied"] is False
    assert init["donor_classes"][0] == "Center" and init["tensors_copied"] > 100
    params["train"]["init_sha256"] = "0" * 64
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = train(tmp_path / "bad.yaml")
    assert proc.returncode != 0
    assert "train.init:" in proc.stderr and "Traceback" not in proc.stderr
    check = [sys.executable, "../../stages/mixed/validate_params.py", "--synthetic", "x.npz"]
    for name, ok in (("params.yaml", True), ("bad.yaml", False)):  # stopped before any stage
        cmd = [*check, "--params", str(tmp_path / name), "--out", str(tmp_path / "ok")]
        proc = subprocess.run(cmd, cwd=pipe, env=env, capture_output=True, text=True, timeout=300)
        assert (proc.returncode == 0) == ok, proc.stderr
    assert "SHA-256" in proc.stderr and "Traceback" not in proc.stderr


def test_gradcam_scores_each_labels_cam_against_its_own_pattern(repo):
    dst, _ = repo
    cam = json.loads((dst / PIPE / "metrics" / "gradcam.json").read_text())
    assert cam["masks"] is True
    scored = {k: v for k, v in cam["per_label"].items() if v["maps"]}
    assert scored, cam
    for v in scored.values():
        assert 0 <= v["own_energy"] <= 1 and 0 <= v["own_area"] <= 1
        assert 0 <= v["own_beats_other"] <= 1
    assert list((dst / PIPE / "reports" / "gradcam" / "png").glob("*.png"))


def test_wafer_predict_serves_the_mixed_model(repo, tmp_path):
    dst, env = repo
    out = tmp_path / "mixed.csv"
    wafer = [sys.executable, "-m", "wafer.apps.cli"]
    src = str(PIPE / "data" / "raw" / "synthetic.npz")  # MixedWM38's layout: maps are read
    _run(
        [*wafer, "predict", src, "-o", str(out), "--pipeline", str(PIPE), "--no-progress"], dst, env
    )
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == TINY["synthesize"]["n_maps"]
    assert rows[0]["source"].endswith("synthetic.npz[maps] row 0")
    assert {f"p_{n}" for n in MIXED_LABELS} <= set(rows[0])
    for r in rows:
        present = [n for n in r["labels"].split(";") if n]
        assert r["pattern_code"] == code_of(labels_vector(present))
    proc = subprocess.run(
        [
            *wafer,
            "predict",
            src,
            "-o",
            str(tmp_path / "x.csv"),
            "--pipeline",
            str(PIPE),
            "--neighbours",
            "3",
        ],
        cwd=dst,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "not available for a mixed-type model" in proc.stderr


def labels_vector(names: list[str]) -> np.ndarray:
    return np.array([n in names for n in MIXED_LABELS], dtype=np.uint8)


def test_the_demo_serves_the_mixed_model(repo, tmp_path):
    """`python -m wafer.apps.demo --pipeline pipelines/mixed`: the header's figures are the
    evaluate stage's, one example per test pattern code, every label's probability against its
    threshold, one CAM per present label, and uploads checked before the model lock."""
    from wafer.apps.demo.mixed import (
        analyse_mixed,
        build_mixed_app,
        handle_mixed_upload,
        load_mixed_assets,
        mixed_header_markdown,
    )

    dst, _ = repo
    pipe = dst / PIPE
    assets = load_mixed_assets(pipe, device="cpu", max_side=60)
    ev = json.loads((pipe / "metrics" / "evaluate.json").read_text())
    assert assets.figures["macro_f1"] == ev["test"][ev["served"]]["macro_f1"]
    assert f"{ev['test'][ev['served']]['macro_f1']:.3f}" in mixed_header_markdown(assets)
    with open(pipe / "data" / "predictions.csv", newline="") as fh:
        test_codes = {r["true_code"] for r in csv.DictReader(fh) if r["split"] == "test"}
    assert [ex.code for ex in assets.examples] == sorted(test_codes)
    for ex in assets.examples:
        assert ex.correct == (ex.predicted == ex.code)
    ex = next(e for e in assets.examples if e.predicted != "Normal")
    a = analyse_mixed(assets, ex.map, "example", None, ex)
    assert set(a.top3) == set(MIXED_LABELS) and a.row["pattern_code"] in a.result_md
    for name in a.row["labels"]:
        assert f"| {name} |" in a.result_md and "**yes**" in a.result_md
    assert a.cam_png is not None and a.cam_png.startswith(b"\x89PNG")
    again = analyse_mixed(assets, ex.map, "example", None, ex)
    assert again.row == a.row  # deterministic, and the CAM left the model as it was
    ok = tmp_path / "map.npy"
    np.save(ok, ex.map)
    assert handle_mixed_upload(assets, str(ok)).row["pattern_code"] == a.row["pattern_code"]
    big = tmp_path / "big.npy"
    np.save(big, np.ones((61, 61), dtype=np.uint8))
    refused = handle_mixed_upload(assets, str(big))
    assert refused.row is None and "big.npy" in refused.warning_md
    bad = tmp_path / "bad.txt"
    bad.write_text("x")
    assert handle_mixed_upload(assets, str(bad)).row is None
    pytest.importorskip("gradio")
    assert build_mixed_app(assets) is not None
