"""docs/RESULTS.md is generated from the saved real-data experiments, which agree with DVC's
record of them (`dvc exp show --json`) and with the commands that made them."""

import importlib.util
import json
import shutil
import sys

import pytest

from conftest import ROOT


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


sys.path.insert(0, str(ROOT / "scripts"))  # report_results imports results_screen, its neighbour
report = _module("report_results")


@pytest.fixture(scope="module")
def runs():
    found = report.load_runs()
    if not found:
        pytest.skip("no real-data runs saved under results/")
    return found


def test_results_page_is_regenerated_identically(runs):
    assert report.OUT.read_text() == report.render(runs), (
        "docs/RESULTS.md is stale: run python scripts/report_results.py"
    )


def test_saved_runs_match_their_commands_and_dvc_exp_show(runs):
    assert report.check(runs) == []


def test_results_cover_the_issue(runs):
    recipes = {r.recipe for r in runs.values()}
    assert {"CE", "focal + CBAM"} <= recipes
    sizes = {r.size for r in runs.values() if r.stem == "standard"}
    assert {32, 48, 64, 96} <= sizes, "resolution study needs 32, 48, 64 and 96 px"
    seeds = {
        r.params["train"]["seed"]
        for r in runs.values()
        if r.recipe == "focal + CBAM" and r.size == 32 and r.stem == "compact"
    }
    assert len(seeds) >= 3


def test_check_catches_a_tampered_copy(runs, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(report.RESULTS, root)
    name = next(iter(runs))
    ev = root / name / "evaluate.json"
    data = json.loads(ev.read_text())
    figures = data["val"]["macro_f1"] if runs[name].current else data
    figures["macro_f1"] += 0.01
    ev.write_text(json.dumps(data))
    (root / name / "command.txt").write_text(
        runs[name].command.replace("shard.size=", "shard.size=1")
    )
    params = root / name / "params.yaml"  # a value the command does not set
    params.write_text(params.read_text().replace("lr: 0.001", "lr: 0.002"))
    problems = report.check(report.load_runs(root), root)
    assert any("macro_f1" in p for p in problems)
    assert any("shard.size" in p for p in problems)
    assert any("train.lr" in p for p in problems)


def test_every_run_trained_at_the_size_its_command_asked(runs, tmp_path):
    """No committed result was made under DVC's run-cache blind spot (a param named `size` was
    left out of the cache key, so `-S shard.size=96` could restore 32-px shards): each run's
    shard.json holds the side its params ask for, and a copy that disagrees is caught."""
    assert all(r.shard_size == r.size for r in runs.values() if r.shard_size is not None)
    assert sum(r.shard_size is not None for r in runs.values()) >= 10
    root = tmp_path / "results"
    shutil.copytree(report.RESULTS, root)
    name = next(iter(runs))
    shard = root / name / "shard.json"
    data = json.loads(shard.read_text())
    data["input_px" if "input_px" in data else "size"] = 32 if runs[name].size != 32 else 48
    shard.write_text(json.dumps(data))
    problems = report.check(report.load_runs(root), root)
    assert any("shard.json says" in p for p in problems)


def test_overrides_parse_the_command():
    cmd = "dvc exp run -n x -S ingest.input=../a.pkl -S train.cbam=false -S shard.size=48"
    assert report.overrides(cmd)["train.cbam"] == "false"
    assert report.overrides(cmd)["shard.size"] == "48"


def _perturb_test_figures(run, rng) -> None:
    """Scale every number that comes from test maps (evaluate's test figures, calibrate's test
    section); validation figures, params and timings stay as they are."""

    def scale(tree):
        if isinstance(tree, dict):
            return {k: scale(v) for k, v in tree.items()}
        if isinstance(tree, list):
            return [scale(v) for v in tree]
        if isinstance(tree, int | float) and not isinstance(tree, bool):
            return tree * float(rng.uniform(0.3, 1.7))
        return tree

    ev = run.m["evaluate"]
    if run.current:
        ev["test"] = scale(ev["test"])
    else:  # earlier runs: the whole file is test figures
        run.m["evaluate"] = scale(ev)
    run.m["calibrate"]["test"] = scale(run.m["calibrate"]["test"])


def test_changing_only_test_metrics_changes_no_choice(runs):
    import copy

    import numpy as np

    before = report.choices(runs)
    assert "headline" in before
    for seed in range(20):
        rng = np.random.default_rng(seed)
        perturbed = copy.deepcopy(runs)
        for r in perturbed.values():
            _perturb_test_figures(r, rng)
        assert report.choices(perturbed) == before
    # and the page's choices do follow validation: raise one run's validation figure
    perturbed = copy.deepcopy(runs)
    name = min(perturbed, key=lambda n: report.val_score(perturbed[n]))
    r = perturbed[name]
    if r.current:
        r.m["evaluate"]["val"]["macro_f1"]["prevalence_corrected"]["macro_f1"] = 2.0
    else:
        r.m["thresholds"]["val"]["macro_f1_with_class_thresholds"] = 2.0
    after = report.choices(perturbed)
    assert after != before and name in after.values()


def test_a_recipe_on_fewer_seeds_does_not_win_on_one_lucky_seed(runs):
    """A recipe re-run on one seed (a group of its own: e.g. other serving params) is shown but
    not compared with recipes run on more seeds, however high its one validation figure."""
    import copy

    before = report.choices(runs)
    head = runs[before["headline"]]
    lone = copy.deepcopy(head)
    lone.name = "lone-recipe"
    lone.params["train"]["lr"] = 123.0  # another recipe, one seed
    lone.m["evaluate"]["val"]["macro_f1"]["prevalence_corrected"]["macro_f1"] = 2.0
    after = report.choices(runs | {"lone-recipe": lone})
    assert after["headline"] == before["headline"]
    groups = report.recipe_groups([*runs.values(), lone])
    assert [lone] not in report.comparable(groups)


def _gpu_run(folder, val, test):
    """A results/gpu/<run> folder as scripts/gpu_lease.sh leaves it (the files the page reads)."""
    folder.mkdir(parents=True)
    (folder / "timing").mkdir()

    def point(f1, escapes):
        plain = {"macro_f1": f1 + 0.004, "balanced_accuracy": f1 - 0.001}
        return {"prevalence_corrected": {"macro_f1": f1}, "escapes": escapes, **plain}

    files = {
        "evaluate.json": {
            "val": {"macro_f1": point(val, 3), "cost": point(val - 0.02, 1)},
            "test": {"macro_f1": point(test, 9), "cost": point(test - 0.03, 4)},
        },
        "train.json": {"epochs_run": 30, "best_epoch": 24, "stopped_at_time_limit": False},
        "env.json": {"device_name": "NVIDIA H200", "torch": "2.11.0+cu130"},
        "calibrate.json": {"test": {"after": {"ece": 0.0042}}},
        "timing/train.json": {
            "train_maps_per_s": 3600.0,
            "train_seconds": 330.0,
            "first_step_s": 12.5,
            "epoch_s": [28.0, 11.0, 11.2, 10.9],
        },
    }
    for name, value in files.items():
        (folder / name).write_text(json.dumps(value))
    (folder / "commit.txt").write_text("0123456789abcdef0123456789abcdef01234567\n")
    params = "shard: {input_px: 224}\ntrain: {loss: focal, cbam: true, stem: standard, "
    (folder / "params.yaml").write_text(params + "batch_size: 128, epochs: 30}\n")


def test_gpu_section_compares_on_validation_only(tmp_path):
    """A GPU run is rendered with its device and timing; the verdict follows its validation
    figure against the CPU recipe's mean, and a test figure that beats everything moves
    nothing. No run: no section (the page stays as it was)."""
    gpu = _module("results_gpu")
    assert gpu.gpu_section(tmp_path / "none", [0.92], "CPU headline recipe") == []
    _gpu_run(tmp_path / "gpu" / "seed-224", val=0.915, test=0.99)
    text = "\n".join(gpu.gpu_section(tmp_path / "gpu", [0.918, 0.920], "CPU headline recipe"))
    assert "NVIDIA H200" in text and "| 0.915 |" in text and "0.990 (9 escapes)" in text
    assert "the CPU headline recipe stays the headline" in text
    assert "first training step 12.5 s" in text and "median 11.0 s" in text
    text = "\n".join(gpu.gpu_section(tmp_path / "gpu", [0.900, 0.905], "CPU headline recipe"))
    assert "validation prefers it" in text and "seed system" not in text
    seed = {"focal + CBAM": {"macro_f1": 0.92, "balanced_accuracy": 0.91, "ece": 0.0031}}
    text = "\n".join(gpu.gpu_section(tmp_path / "gpu", [0.92], "CPU headline recipe", seed))
    assert "seed system's focal + CBAM (0.92 / 0.91 / 0.0031" in text
    assert "point 0.994 / 0.989 / 0.0042" in text  # the plain test figures beside the seed's
