"""End to end: the cross-fitting DVC pipeline (pipelines/crossfit/, its own DVC project) on tiny
params in a temporary copy of the repository, after the root pipeline: K members as a DVC
matrix, out-of-fold logits for every training map, the ensemble and the distilled student
served by the root's own stages and by `wafer predict`, the label-noise audit, a second
`dvc repro` a no-op, K set by `crossfit.folds`, and members that do not belong to the folds
refused."""

from __future__ import annotations

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

from wafer.core.classes import CLASS_NAMES
from wafer.core.io import sha256_file
from wafer.data.crossfit import FoldsFile, InsampleFile, OofFile
from wafer.data.files import load_shard
from wafer.model.checkpoint import Checkpoint

from conftest import copy_checkout

PIPE = Path("pipelines/crossfit")
ROOT_TINY = {
    "synthesize": {"n_maps": 240, "floor": 0.06},
    "shard": {"input_px": 16},
    "train": {"epochs": 2, "batch_size": 32, "patience": 2},  # crossfit.epochs (1) overrides it
    "infer": {"batch_size": 256, "views": 2},
    "evaluate": {"bootstrap": 20},
    "gradcam": {"max_maps": 4, "per_class": 1},
}
TINY = {"crossfit": {"folds": [0, 1], "epochs": 1}, "audit": {"review": 3, "neighbours": 2}}


def _run(args: list[str], cwd: Path, env: dict, ok: bool = True) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _tiny(path: Path, values: dict) -> None:
    params = yaml.safe_load(path.read_text())
    for section, v in values.items():
        params[section].update(v)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict]:
    if shutil.which("git") is None:
        pytest.skip("git is needed for dvc")
    dst = tmp_path_factory.mktemp("crossfit")
    copy_checkout(
        dst,
        (
            "dvc.lock",
            "metrics/",
            "plots/",
            "results/",
            "docs/",
            "pipelines/mixed/",
            f"{PIPE}/dvc.lock",
            f"{PIPE}/metrics/",
            f"{PIPE}/plots/",
        ),
    )
    _tiny(dst / "params.yaml", ROOT_TINY)
    _tiny(dst / PIPE / "params.yaml", TINY)
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
    # the root's data, its model (a seed ensemble's first member) and its served files
    # (compare@cleaned's baseline), not its index, report or Grad-CAM
    _run([sys.executable, "-m", "dvc", "repro", "thresholds"], dst, env)
    out = _run([sys.executable, "-m", "dvc", "repro"], dst / PIPE, env)
    assert "Running stage 'train_member@1'" in out and "Running stage 'evaluate@ensemble'" in out
    assert "Running stage 'compare@cleaned'" in out and "Running stage 'compare@student'" in out
    _run(["git", "add", "-A"], dst, env)
    _run(["git", "commit", "-qm", "results"], dst, env)
    return dst, env


def test_members_oof_and_ensemble_and_a_second_repro_is_a_no_op(repo):
    dst, env = repo
    pipe = dst / PIPE
    for f in (
        "models/folds/0.pt",
        "models/folds/1.pt",
        "models/ensemble.pt",
        "models/calibration.json",
        "models/thresholds.json",
        "models/index.npz",
        "data/predictions.csv",
        "metrics/evaluate.json",
        "metrics/members/1.json",
        "data/insample.npz",
        "metrics/insample.json",
        "models/student.pt",
        "models/student/thresholds.json",
        "metrics/student/evaluate.json",
        "reports/audit/index.html",
        "reports/audit/label_issues.csv",
        "metrics/audit.json",
        "models/cleaned.pt",
        "metrics/cleaned/evaluate.json",
    ):
        assert (pipe / f).is_file(), f
    out = _run([sys.executable, "-m", "dvc", "repro"], pipe, env)
    assert "Running stage" not in out
    assert "pipelines/crossfit" not in _run([sys.executable, "-m", "dvc", "status"], dst, env)


def test_every_training_map_gets_one_out_of_fold_prediction_from_the_member_that_left_it_out(repo):
    dst, _ = repo
    pipe = dst / PIPE
    train = load_shard(dst / "data" / "shards", "train")
    folds = FoldsFile.load(pipe / "data" / "folds.npz")
    oof = OofFile.load(pipe / "data" / "oof.npz")
    assert np.array_equal(oof.rows, train.rows) and np.array_equal(oof.y, train.y)
    assert np.array_equal(oof.fold, folds.fold) and oof.views == ROOT_TINY["infer"]["views"]
    assert np.isfinite(oof.logits).all() and not (oof.logits == 0).all(axis=1).any()
    for k in range(2):
        member = Checkpoint.load(pipe / "models" / "folds" / f"{k}.pt")
        assert member.extra["crossfit"]["fold"] == k
        assert member.extra["train"]["seed"] == k  # train.seed 0 + fold
        assert member.extra["train"]["epochs"] == 1
        assert oof.member_sha256[k] == sha256_file(pipe / "models" / "folds" / f"{k}.pt")
        trained = json.loads((pipe / "metrics" / "members" / f"{k}.json").read_text())
        assert trained["epochs_run"] == 1


def test_the_ensemble_binds_its_members_and_the_served_files_bind_the_ensemble(repo):
    dst, _ = repo
    pipe = dst / PIPE
    ens = Checkpoint.load(pipe / "models" / "ensemble.pt")
    assert ens.config.members == 2
    shas = [m["sha256"] for m in ens.extra["ensemble"]["members"]]
    assert shas == [sha256_file(pipe / "models" / "folds" / f"{k}.pt") for k in range(2)]
    cal = json.loads((pipe / "models" / "calibration.json").read_text())
    assert cal["model_sha256"] == sha256_file(pipe / "models" / "ensemble.pt")
    m = json.loads((pipe / "metrics" / "ensemble.json").read_text())["val_macro_f1"]
    assert len(m["members"]) == 2 and {"average_logit", "average_prob"} <= set(m)
    ev = json.loads((pipe / "metrics" / "evaluate.json").read_text())
    assert {"val", "test"} <= set(ev)


def test_the_ensemble_and_student_gains_over_the_single_model_are_paired_figures(repo):
    """compare@ensemble and compare@student: each served model against the root's single model on
    validation at the macro_f1 point, the figures evaluate reports; no decision recorded."""
    pipe = repo[0] / PIPE
    cleaned = json.loads((pipe / "metrics" / "cleaned" / "compare.json").read_text())
    for model in ("", "student/"):
        c = json.loads((pipe / "metrics" / f"{model}compare.json").read_text())
        e = json.loads((pipe / "metrics" / f"{model}evaluate.json").read_text())
        got = e["val"]["macro_f1"]["prevalence_corrected"]["macro_f1"]
        assert c["candidate"] == pytest.approx(got) and c["baseline"] == cleaned["baseline"]
        assert c["resolved"] == (c["gain_lower_bound"] > 0) and "adopted" not in c


def test_wafer_predict_serves_the_ensemble(repo, tmp_path):
    dst, env = repo
    pipe = dst / PIPE
    test = load_shard(dst / "data" / "shards", "test")
    maps = tmp_path / "maps.npy"
    np.save(maps, np.asarray(test.x[:5]))
    out = tmp_path / "p.csv"
    _run(
        ["wafer", "predict", str(maps), "--pipeline", str(pipe), "--out", str(out)],
        dst,
        env,
    )
    lines = out.read_text().splitlines()
    assert len(lines) == 6


def test_a_member_of_other_folds_is_refused_in_one_line(repo, tmp_path):
    dst, env = repo
    pipe = dst / PIPE
    members = tmp_path / "members"
    members.mkdir()
    shutil.copy(pipe / "models" / "folds" / "1.pt", members / "0.pt")
    shutil.copy(pipe / "models" / "folds" / "1.pt", members / "1.pt")
    cmd = [
        sys.executable,
        "../../stages/crossfit/oof.py",
        "--params",
        "../../params.yaml",
        "--folds",
        "data/folds.npz",
        "--members",
        str(members),
        "--shards",
        "../../data/shards",
        "--out",
        str(tmp_path / "o.npz"),
        "--metrics",
        str(tmp_path / "o.json"),
    ]
    proc = subprocess.run(cmd, cwd=pipe, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "was not trained as member 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_k_is_the_length_of_crossfit_folds(repo):
    """`crossfit.folds` of length K expands the matrix to K members (a dry `dvc repro`: a real
    run re-runs every stage, and `dvc exp run --dry` fails in its temporary copy, which lacks the
    outputs; a real `dvc exp run -S 'crossfit.folds=[0,1,2]'` ran to a 3-member ensemble when
    this pipeline was built). K = 3 folds and members are the library's, tested on their own."""
    dst, env = repo
    pipe = dst / PIPE
    params = pipe / "params.yaml"
    _tiny(params, {"crossfit": {"folds": [0, 1, 2]}})
    try:
        out = _run([sys.executable, "-m", "dvc", "repro", "--dry"], pipe, env)
    finally:
        _run(["git", "checkout", "--", str(PIPE / "params.yaml")], dst, env)
    for k in range(3):
        assert f"train_member@{k}" in out, out
    assert "'ensemble'" in out and "'audit'" in out


def test_the_student_learns_from_the_out_of_fold_targets_and_is_served(repo, tmp_path):
    dst, env = repo
    pipe = dst / PIPE
    student = Checkpoint.load(pipe / "models" / "student.pt")
    assert student.config.members == 1
    assert student.extra["train"]["epochs"] == TINY["crossfit"]["epochs"]  # not train.epochs
    made = student.extra["student"]
    assert made["oof_sha256"] == sha256_file(pipe / "data" / "oof.npz")
    assert made["alpha"] == 0.7 and made["temperature"] == 2.0
    cal = json.loads((pipe / "models" / "student" / "calibration.json").read_text())
    assert cal["model_sha256"] == sha256_file(pipe / "models" / "student.pt")
    test = load_shard(dst / "data" / "shards", "test")
    np.save(tmp_path / "maps.npy", np.asarray(test.x[:3]))
    served = ["--model", "models/student.pt", "--calibration", "models/student/calibration.json"]
    served += ["--thresholds", "models/student/thresholds.json"]
    served += ["--index", "models/student/index.npz", "--novelty", "models/student/novelty.json"]
    out = tmp_path / "p.csv"
    _run(["wafer", "predict", str(tmp_path / "maps.npy"), "-o", str(out), *served], pipe, env)
    assert len(out.read_text().splitlines()) == 4


def test_the_audit_lists_flagged_maps_and_estimates_noise_per_class(repo):
    dst, _ = repo
    pipe = dst / PIPE
    m = json.loads((pipe / "metrics" / "audit.json").read_text())
    lines = (pipe / "reports" / "audit" / "label_issues.csv").read_text().splitlines()
    assert lines[0] == "rank,row,given,suggested,quality,p_suggested,fold"
    assert len(lines) - 1 == m["flagged"] <= m["maps"]
    assert set(m["per_class"]) <= set(CLASS_NAMES)
    page = (pipe / "reports" / "audit" / "index.html").read_text()
    assert page.count('id="rank') == min(3, m["flagged"])
    assert "model's opinion" in page


def test_the_cleaned_model_trains_without_the_flagged_maps(repo, tmp_path):
    dst, env = repo
    pipe = dst / PIPE
    cleaned = Checkpoint.load(pipe / "models" / "cleaned.pt").extra["cleaned"]
    flagged = json.loads((pipe / "metrics" / "audit.json").read_text())["flagged"]
    assert cleaned["weight"] == 0.0 and cleaned["flagged_training_maps"] == flagged
    trained = Checkpoint.load(pipe / "models" / "cleaned.pt").extra["train"]
    assert trained["epochs"] == TINY["crossfit"]["epochs"] and trained["seed"] == 0
    issues = pipe / "reports" / "audit" / "label_issues.csv"
    assert cleaned["label_issues_sha256"] == sha256_file(issues)
    bad = tmp_path / "bad.csv"
    bad.write_text("rank,row\n1,2\n")
    cmd = [sys.executable, "../../stages/train.py", "--params", "../../params.yaml"]
    cmd += ["--shards", "../../data/shards", "--model-out", str(tmp_path / "m.pt")]
    cmd += ["--curves", str(tmp_path / "c.csv"), "--metrics", str(tmp_path / "t.json")]
    cmd += ["--label-issues", str(bad), "--crossfit-params", "params.yaml", "--no-progress"]
    proc = subprocess.run(cmd, cwd=pipe, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "not a label-issues list" in proc.stderr
    assert "Traceback" not in proc.stderr
    # compare@cleaned: the cleaned model against the root's single model, paired, on validation
    c = json.loads((pipe / "metrics" / "cleaned" / "compare.json").read_text())
    e = json.loads((pipe / "metrics" / "cleaned" / "evaluate.json").read_text())
    assert c["candidate"] == pytest.approx(e["val"]["macro_f1"]["prevalence_corrected"]["macro_f1"])
    assert c["adopted"] == (c["gain_lower_bound"] > 0) and c["split"] == "val"


def test_a_seed_ensemble_serves_the_root_model_and_its_seed_members(repo, tmp_path):
    """`ensemble.members: seeds`: one more model per seed (train_seed@seed, the root's recipe on
    every training map), served with the root's model as one ensemble; bad seeds refused in one
    line. Runs last: it leaves the workspace's ensemble as the folds' again."""
    dst, env = repo
    pipe = dst / PIPE
    params = pipe / "params.yaml"
    kept = params.read_text()
    _tiny(params, {"ensemble": {"members": "seeds", "seeds": [5]}})
    try:
        # the seed ensemble and its served files do not wait for the fold members
        dag = _run([sys.executable, "-m", "dvc", "dag", "evaluate@ensemble"], pipe, env)
        assert "train_seed@5" in dag and "train_member" not in dag and "oof" not in dag, dag
        out = _run([sys.executable, "-m", "dvc", "repro", "ensemble"], pipe, env)
        assert "Running stage 'train_seed@5'" in out and "Running stage 'train_member" not in out
        ens = Checkpoint.load(pipe / "models" / "ensemble.pt")
        e = ens.extra["ensemble"]
        assert e["members_from"] == "seeds" and ens.config.members == 2
        shas = [m["sha256"] for m in e["members"]]
        assert shas == [
            sha256_file(dst / "models/model.pt"),
            sha256_file(pipe / "models/seeds/5.pt"),
        ]
        seed5 = Checkpoint.load(pipe / "models" / "seeds" / "5.pt").extra
        root = Checkpoint.load(dst / "models" / "model.pt").extra["train"]
        assert seed5["crossfit"] == {"seed": 5} and seed5["train"] == root | {"seed": 5}
        m = json.loads((pipe / "metrics" / "ensemble.json").read_text())
        assert m["members_from"] == "seeds" and len(m["val_macro_f1"]["members"]) == 2
        assert m["start"] == "scratch"
        # ensemble.start: root: the member starts from the root's model (a warm restart) for
        # finetune_epochs at finetune_lr, and names that model's SHA-256
        _tiny(params, {"ensemble": {"start": "root", "finetune_epochs": 1, "finetune_lr": 1e-9}})
        out = _run([sys.executable, "-m", "dvc", "repro", "ensemble"], pipe, env)
        assert "Running stage 'train_seed@5'" in out
        tuned = Checkpoint.load(pipe / "models" / "seeds" / "5.pt")
        assert tuned.extra["crossfit"] == {
            "seed": 5,
            "start": "root",
            "root_sha256": sha256_file(dst / "models/model.pt"),
        }
        assert tuned.extra["train"] == root | {"seed": 5, "epochs": 1, "lr": 1e-9}
        # at a vanishing rate its weights are still the root's (batch-norm statistics move)
        root_w = Checkpoint.load(dst / "models" / "model.pt").state_dict
        for name, w in tuned.state_dict.items():
            if "running_" not in name and "num_batches" not in name:
                assert torch.allclose(w, root_w[name], atol=1e-6), name
        e = Checkpoint.load(pipe / "models" / "ensemble.pt").extra["ensemble"]
        assert (e["start"], e["finetune_epochs"], e["finetune_lr"]) == ("root", 1, 1e-9)
        for bad, why in (
            ({"members": "seeds", "seeds": [5], "start": "warm"}, "ensemble.start"),
            ({"members": "seeds", "seeds": []}, "needs at least one seed"),
            ({"members": "folds", "seeds": [3, 3]}, "names a value twice"),
            ({"members": "seeds", "seeds": [root["seed"]]}, "not the root's train.seed"),
        ):
            params.write_text(kept)
            _tiny(params, {"ensemble": bad})
            proc = subprocess.run(
                [sys.executable, "-m", "dvc", "repro", "ensemble"],
                cwd=pipe,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert proc.returncode != 0 and why in proc.stdout + proc.stderr, bad
            assert "Traceback" not in proc.stdout + proc.stderr
    finally:
        params.write_text(kept)
        _run([sys.executable, "-m", "dvc", "repro", "ensemble"], pipe, env)
    assert Checkpoint.load(pipe / "models" / "ensemble.pt").extra["ensemble"]["members_from"] == (
        "folds"
    )


def test_a_seed_ensembles_student_learns_from_its_in_sample_logits_warm_started(repo):
    """`student.teacher: insample`: the served ensemble's own logits on the training maps (the
    only teacher of a seed ensemble, whose members held no map out); `student.start: root`: the
    student starts from the root's model for ensemble.finetune_epochs at finetune_lr. Neither
    waits for the fold members. Restores the folds' student afterwards."""
    dst, env = repo
    pipe = dst / PIPE
    params = pipe / "params.yaml"
    kept = params.read_text()
    ens = {"members": "seeds", "seeds": [5], "start": "root", "finetune_epochs": 1}
    _tiny(params, {"ensemble": ens | {"finetune_lr": 1e-9}})
    _tiny(params, {"student": {"teacher": "insample", "start": "root", "insample_views": 2}})
    try:
        dag = _run([sys.executable, "-m", "dvc", "dag", "train_student"], pipe, env)
        assert "insample" in dag and "train_seed@5" in dag, dag
        assert "train_member" not in dag and "oof" not in dag, dag
        out = _run([sys.executable, "-m", "dvc", "repro", "train_student"], pipe, env)
        assert "Running stage 'insample'" in out and "Running stage 'train_member" not in out
        ins = InsampleFile.load(pipe / "data" / "insample.npz")
        train = load_shard(dst / "data" / "shards", "train")
        assert np.array_equal(ins.rows, train.rows) and np.array_equal(ins.y, train.y)
        assert ins.views == 2 and ins.runtime == "eager"
        assert ins.model_sha256 == sha256_file(pipe / "models" / "ensemble.pt")
        m = json.loads((pipe / "metrics" / "insample.json").read_text())
        assert m["maps"] == len(train.rows) and 0 <= m["macro_f1"] <= 1
        student = Checkpoint.load(pipe / "models" / "student.pt")
        made = student.extra["student"]
        assert made["teacher"] == "insample" and made["start"] == "root"
        assert made["insample_sha256"] == sha256_file(pipe / "data" / "insample.npz")
        assert made["root_sha256"] == sha256_file(dst / "models" / "model.pt")
        root = Checkpoint.load(dst / "models" / "model.pt")
        assert student.extra["train"] == root.extra["train"] | {"epochs": 1, "lr": 1e-9}
        for name, w in student.state_dict.items():  # a vanishing rate keeps the root's weights
            if "running_" not in name and "num_batches" not in name:
                assert torch.allclose(w, root.state_dict[name], atol=1e-6), name
        # an out-of-fold file is not an in-sample one: refused in one line, naming it
        _tiny(params, {"student": {"teacher": "oof"}})
        cmd = [sys.executable, "../../stages/train.py", "--params", "../../params.yaml"]
        cmd += ["--shards", "../../data/shards", "--model-out", "x.pt", "--curves", "c.csv"]
        cmd += ["--metrics", "t.json", "--soft-targets", "data/insample.npz", "--no-progress"]
        cmd += ["--root-model", "../../models/model.pt", "--crossfit-params", "params.yaml"]
        proc = subprocess.run(cmd, cwd=pipe, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0 and "data/insample.npz" in proc.stderr
        assert "missing array(s) fold" in proc.stderr and "Traceback" not in proc.stderr
        _tiny(params, {"student": {"teacher": "teachers"}})
        out = _run([sys.executable, "-m", "dvc", "repro", "validate_params"], pipe, env, ok=False)
        assert "student.teacher" in out and "Traceback" not in out
    finally:
        params.write_text(kept)
        _run([sys.executable, "-m", "dvc", "repro"], pipe, env)
    assert "oof_sha256" in Checkpoint.load(pipe / "models" / "student.pt").extra["student"]
