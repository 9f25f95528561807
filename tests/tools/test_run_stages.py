"""Named recipes and the DVC-less stage runner behind scripts/gpu_run.sh."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from wafer.tools.recipes import (
    RecipeError,
    apply_overrides,
    list_recipes,
    load_recipe,
    load_yaml,
    parse_override,
    set_args,
)
from wafer.tools.recipes import main as recipes_main
from wafer.tools.render import (
    RunError,
    choose_stages,
    effective_params,
    render_stages,
    to_str,
    topo_order,
)
from wafer.tools.returned import unpack

from conftest import ROOT, TINY_RUN

PARAMS = load_yaml((ROOT / "params.yaml").read_text())


def _dvc_rendered(params: dict, tmp_path: Path) -> dict[str, str]:
    """DVC's own rendering of each stage's cmd for ``params`` (dvc.yaml, .dvc/config)."""
    pytest.importorskip("dvc")
    from dvc.repo import Repo

    (tmp_path / ".dvc").mkdir()
    shutil.copy2(ROOT / ".dvc" / "config", tmp_path / ".dvc" / "config")
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repo = Repo(str(tmp_path), config={"core": {"no_scm": True}})
    return {s.name: s.cmd for s in repo.index.stages}


def _ours(params: dict) -> dict[str, str]:
    return {s.name: " ".join(s.cmds) for s in render_stages(ROOT, params)}


@pytest.mark.parametrize("recipe", [None, "seed-224", "ce-baseline"])
def test_commands_match_dvc(recipe, tmp_path):
    params = PARAMS if recipe is None else apply_overrides(PARAMS, load_recipe(recipe))
    assert _ours(params) == _dvc_rendered(params, tmp_path)


def test_awkward_values_match_dvc(tmp_path):
    params = apply_overrides(
        PARAMS,
        {
            "ingest.input": "my data/LSWMD $x.pkl",  # as is in deps
            "train.focal_alpha": [1, 0.5, 2],
            "train.augment": False,
            "split.use_original": True,
            "train.lr": 1e-05,
        },
    )
    assert _ours(params) == _dvc_rendered(params, tmp_path)


def test_to_str_matches_dvc():
    interpolate = pytest.importorskip("dvc.parsing.interpolate")
    for value in (True, False, 1, 2.5, 1e-05, "x y", "s'q"):
        assert to_str(value) == interpolate.to_str(value)


def test_commands_match_dvc_lock():
    """dvc.lock holds DVC's rendering for the params it records: where those equal
    params.yaml's, our rendering of dvc.yaml must equal the lock's cmd."""
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    ours = _ours(PARAMS)
    checked = 0
    for name, entry in lock.items():
        recorded = entry.get("params", {}).get("params.yaml", {})
        if name in ours and all(PARAMS.get(k) == v for k, v in recorded.items()):
            assert ours[name] == entry["cmd"], name
            checked += 1
    if not checked:
        pytest.skip("dvc.lock records other params than params.yaml")


def test_order_and_pruning():
    stages = topo_order(render_stages(ROOT, PARAMS))
    names = [s.name for s in stages]
    assert names.index("ingest") < names.index("split") < names.index("train")
    assert names.index("train") < names.index("infer") < names.index("evaluate")
    real = apply_overrides(PARAMS, {"ingest.input": "data/external/x.pkl.xz"})
    run, skipped = choose_stages(topo_order(render_stages(ROOT, real)), ["gradcam"])
    assert "synthesize" in skipped and skipped["gradcam"] == "--skip"
    assert [s.name for s in run][:2] == ["validate_params", "ingest"]  # params checked first
    run, skipped = choose_stages(stages)  # synthetic data: synthesize feeds ingest
    assert not skipped and [s.name for s in run][:2] == ["validate_params", "synthesize"]


def test_recipes_load_apply_render():
    assert {"seed-224", "ce-baseline"} <= set(list_recipes())
    seed = load_recipe("seed-224")
    assert seed["shard.input_px"] == 224 and seed["train.loss"] == "focal" and seed["train.cbam"]
    ce = load_recipe("ce-baseline")
    assert ce["train.loss"] == "ce" and ce["train.cbam"] is False and ce["shard.input_px"] == 224
    for recipe in (seed, ce):
        assert "ingest.input" not in recipe
    params = apply_overrides(PARAMS, seed)
    assert params["train"]["epochs"] == 40 and PARAMS["train"]["epochs"] != 40
    assert list(params["train"]) == list(PARAMS["train"])  # key order kept
    args = set_args(seed)
    assert args[:2] == ["-S", "shard.input_px=224"] and "train.cbam=true" in args
    for flag, pair in zip(args[::2], args[1::2], strict=True):
        key, value = parse_override(pair)
        assert flag == "-S" and value == seed[key]


def test_recipe_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "typo.yaml").write_text("train.epoch: 3\n")
    (tmp_path / "kind.yaml").write_text("train.cbam: 'yes'\n")
    (tmp_path / "data.yaml").write_text("ingest.input: x.pkl\n")
    (tmp_path / "flat.yaml").write_text("epochs: 3\n")
    cases = {
        "nope": "unknown recipe 'nope'",
        "typo": "did you mean train.epochs",
        "kind": "is a string, but params.yaml holds a bool",
        "data": "must not set ingest.input",
        "flat": "not a dotted params key",
    }
    for name, text in cases.items():
        with pytest.raises(RecipeError, match=text) as err:
            load_recipe(name, PARAMS, tmp_path)
        assert "\n" not in str(err.value)
    assert recipes_main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown recipe") and err.count("\n") == 1
    with pytest.raises(RecipeError, match="not key=value"):
        parse_override("train.epochs")
    with pytest.raises(RecipeError, match="unknown key"):
        effective_params(ROOT, None, ["train.nope=1"], None)
    assert parse_override("train.lr=1e-3") == ("train.lr", 0.001)  # YAML 1.2, as DVC reads it


def test_recipes_cli_prints_set_args(capsys):
    assert recipes_main(["ce-baseline"]) == 0
    assert capsys.readouterr().out.split() == set_args(load_recipe("ce-baseline"))


TINY = TINY_RUN


def test_end_to_end_tiny_run(tmp_path):
    """scripts/gpu_run.sh on tiny synthetic data: every result lands in --out (and the
    $OUT archive), nothing is written into the checkout."""
    before = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    out, work, arch = tmp_path / "out", tmp_path / "work", tmp_path / "OUT"
    args = [str(ROOT / "scripts" / "gpu_run.sh"), "--synthetic", "--name", "tiny"]
    args += [a for kv in TINY for a in ("-S", kv)]
    args += ["--skip", "gradcam", "--out", str(out), "--workdir", str(work)]
    args += ["--time-limit", "280", "--after-train", "20", "--train-time-limit", "150"]
    args += ["--return-file", "data/logits.npz"]
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(arch)}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("ingest", "split", "shard", "train", "calibrate", "thresholds", "evaluate"):
        assert (out / f"{name}.json").is_file(), name
    for name in ("confusion.png", "reliability.png", "sweep.png", "train_curves.csv"):
        assert (out / name).is_file(), name
    for name in ("train.json", "run_stages.json"):
        assert (out / "timing" / name).is_file(), name
    env_json = json.loads((out / "env.json").read_text())
    assert {"torch", "device_name", "cpu_model", "cpu_capability"} <= set(env_json)
    params = yaml.safe_load((out / "params.yaml").read_text())
    assert params["train"]["epochs"] == 1 and params["shard"]["input_px"] == 32
    assert "wafer.tools.run_stages" in (out / "command.txt").read_text()
    commit = (out / "commit.txt").read_text().strip()
    assert commit == "unknown" or len(commit) == 40
    commands = (out / "commands.sh").read_text()
    assert "stages/train.py --params params.yaml --shards data/shards" in commands
    assert "${" not in commands and params["train"]["cbam"] is False  # what the stage read
    record = json.loads((out / "timing" / "run_stages.json").read_text())
    assert record["skipped"] == {"gradcam": "--skip"}
    for stage in record["stages"]:  # every stage's peak memory (a Python with numpy: > 20 MiB)
        assert 20 < stage["peak_rss_mib"] < 64 * 1024, stage
    train = json.loads((out / "train.json").read_text())  # the bound training says so
    assert 0 < train["time_limit_s"] <= 150 and train["stopped_at_time_limit"] is False
    assert (out / "logits.npz").is_file()
    with tarfile.open(arch / "tiny.tar.gz") as tar:
        assert {"tiny/evaluate.json", "tiny/served.json"} <= set(tar.getnames())
        assert "tiny/served/calibration.json" in tar.getnames()
    # the served files come back (the checkpoint in parts) and join to what the run wrote
    (joined,) = unpack(arch, tmp_path / "back")
    manifest = json.loads((out / "served.json").read_text())["served"]
    for artifact, entry in manifest.items():
        assert "left_behind" not in entry, artifact
        assert (joined / "served" / entry["file"]).stat().st_size == entry["bytes"]
    assert (joined / "served" / "model.pt").read_bytes() == (work / "models/model.pt").read_bytes()
    assert not (work / "metrics" / "gradcam.json").exists()
    # the index built from a returned model (as after a GPU lease): train and what follows
    # skipped, their outputs taken from the first run with --use; in a committed repository
    # (links to this checkout's entries) whose results/ the run writes: its own results folder
    # is not an uncommitted change of the code that ran
    linked = tmp_path / "linked"
    linked.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".git", "results", ".venv"}:
            (linked / entry.name).symlink_to(entry)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "linked"]):
        subprocess.run([*git, *cmd], cwd=linked, check=True, capture_output=True)
    out2 = linked / "results" / "gpu" / "tiny-index"
    args2 = [str(ROOT / "scripts" / "gpu_run.sh"), "--synthetic", "--name", "tiny-index"]
    args2 += [a for kv in TINY for a in ("-S", kv)] + ["--repo", str(linked)]
    for stage in ("train", "infer", "calibrate", "thresholds", "evaluate", "gradcam"):
        args2 += ["--skip", stage]
    for path in ("models/model.pt", "data/logits.npz", "models/calibration.json"):
        args2 += ["--use", f"{path}={work / path}"]
    env2 = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(args2, env=env2, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out2 / "index.json").is_file() and (out2 / "served" / "novelty.json").is_file()
    assert (out2 / "served" / "model.pt").read_bytes() == (work / "models/model.pt").read_bytes()
    ran = [s["stage"] for s in json.loads((out2 / "timing/run_stages.json").read_text())["stages"]]
    assert "index" in ran and "train" not in ran and "infer" not in ran
    assert json.loads((out2 / "env.json").read_text())["uncommitted_changes"] is False
    after = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert after == before  # no tracked or ignored file of the checkout changed or appeared


def test_use_takes_only_outputs_of_stages_that_do_not_run(tmp_path):
    from wafer.tools.run_stages import use_files

    stages = topo_order(render_stages(ROOT, PARAMS))
    run, _ = choose_stages(stages, ["train"])
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    use_files([f"models/model.pt={model}"], tmp_path / "w", stages, run)
    assert (tmp_path / "w" / "models" / "model.pt").read_bytes() == b"weights"
    bad = {
        f"data/logits.npz={model}": "stage infer runs",
        f"models/nothing.pt={model}": "no stage's output",
        "models/model.pt": "PATH=FILE",
        f"models/model.pt={tmp_path / 'absent.pt'}": "no file",
    }
    for text, why in bad.items():
        with pytest.raises(RunError, match=why):
            use_files([text], tmp_path / "w", stages, run)
