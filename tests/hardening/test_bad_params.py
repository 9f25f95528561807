"""The bad-input and fault catalogue, 1: params.

Every value of params.yaml is checked by one table before any stage runs, with one line
naming the parameter; a bad `dvc exp run -S` value deletes no output."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch
from typer.testing import CliRunner

from wafer.config.params import load_params, validate_all
from wafer.config.rules import ParamError
from wafer.config.sections import rules

from conftest import (
    ROOT,
    params_file,
    sh,
    tiny_repo,
)

# --------------------------------------------------------------------------- 1. params

BAD_PARAMS = [
    # (section, key, value, what the one-line error says)
    ("train", "loss", "foo", "train.loss: 'foo' is not one of ce, focal"),
    ("thresholds", "cost_ratio", -1.0, "thresholds.cost_ratio: -1.0 is not above 0"),
    ("thresholds", "cost_ratio", float("nan"), "thresholds.cost_ratio: nan is not a finite"),
    ("thresholds", "cost_ratio", "nan", "thresholds.cost_ratio: 'nan' is not a number"),
    ("prior", "target_prior", [0] * 9, "prior.target_prior: all values are 0"),
    ("prior", "target_prior", [-1] + [1] * 8, "prior.target_prior: value 0: -1 is below"),
    ("prior", "target_prior", [1] * 8, "prior.target_prior: has 8 value(s), expected 9"),
    ("evaluate", "bootstrap", 0, "evaluate.bootstrap: 0 is below 1"),
    ("evaluate", "bootstrap", -5, "evaluate.bootstrap: -5 is below 1"),
    ("calibrate", "n_bins", 0, "calibrate.n_bins: 0 is below 1"),
    ("split", "val", 1.5, "split.val: 1.5 is not below 1"),
    ("split", "test", -0.1, "split.test: -0.1 is below 0"),
    ("split", "val", 0.85, "split: split.val + split.test = 1.05 leaves no training maps"),
    ("train", "ema_warmup", True, "train: train.ema_warmup needs train.ema_decay above 0"),
    ("ingest", "on_invalid", "skip", "ingest.on_invalid: 'skip' is not one of drop, fail"),
    ("infer", "batch_size", 0, "infer.batch_size: 0 is below 1"),
    ("gradcam", "layer", "fc", "gradcam.layer: 'fc' is not 'auto' or a ResNet stage"),
    ("gradcam", "layer", "avgpool", "gradcam.layer: 'avgpool' is not"),
    ("gradcam", "per_class", 4, "gradcam.per_class: 4 is above 3"),
    ("train", "device", "tpu9", "train.device: 'tpu9' is not auto, cpu"),
    ("train", "epochs", 1.5, "train.epochs: 1.5 is not an integer"),
    ("train", "cbam", "yes", "train.cbam: 'yes' is not true/false"),
    ("train", "focal_alpha", [1, 2], "train.focal_alpha: has 2 value(s), expected 0 or 9"),
    ("shard", "input_px", 4, "shard.input_px: 4 is below 8"),
    ("synthesize", "floor", 0.5, "synthesize.floor: 0.5 is above"),
    ("synthesize", "unlabeled", -1, "synthesize.unlabeled: -1 is below 0"),
    ("synthesize", "unlabeled", 4995, "synthesize: unlabeled = 4995 of n_maps = 5000 leaves"),
]


def test_params_yaml_is_valid():
    """The shipped params.yaml passes the table (and the table covers every section)."""
    params = load_params(ROOT / "params.yaml")
    validate_all(params)
    assert set(rules()) == set(params)
    for section, table in rules().items():
        assert set(table) == set(params[section]), section


@pytest.mark.parametrize(("section", "key", "value", "message"), BAD_PARAMS)
def test_bad_param_is_one_line_naming_it(section, key, value, message):
    """Each unchecked param of the issue (and a few more) is refused with a one-line error
    naming section.key and the reason."""
    params = load_params(ROOT / "params.yaml")
    params[section][key] = value
    with pytest.raises(ParamError) as info:
        validate_all(params)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_unknown_and_missing_params_are_errors():
    """A misspelt key is not silently ignored; a missing key or section is named."""
    params = load_params(ROOT / "params.yaml")
    params["train"]["los"] = "ce"
    with pytest.raises(ParamError, match=r"^train\.los: unknown parameter"):
        validate_all(params)
    del params["train"]["los"], params["train"]["loss"]
    with pytest.raises(ParamError, match=r"^train\.loss: missing"):
        validate_all(params)
    with pytest.raises(ParamError, match=r"^calibrate: section missing"):
        fresh = load_params(ROOT / "params.yaml")
        validate_all({k: v for k, v in fresh.items() if k != "calibrate"})


def test_gradcam_per_class_bound_matches_the_report_slots():
    """gradcam.per_class's upper bound is the number of example slots of the report."""
    from wafer.explain.report import SLOTS

    assert rules()["gradcam"]["per_class"].hi == len(SLOTS)


def test_unreadable_params_file(tmp_path):
    """A params.yaml that is not YAML: one line naming the file."""
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ParamError, match="params.yaml: not readable as YAML") as info:
        load_params(tmp_path / "params.yaml")
    assert "\n" not in str(info.value)


def test_stage_scripts_check_their_section_with_the_same_table(load_stage, tmp_path):
    """A stage run by hand on a params file with a bad value stops with the table's one-line
    message, before reading or writing anything (its other options name missing files)."""
    cases = [
        ("train", {"train.loss": "foo"}, "train.loss: 'foo' is not one of ce, focal"),
        ("thresholds", {"thresholds.cost_ratio": -2}, "thresholds.cost_ratio: -2 is not above 0"),
        (
            "thresholds",
            {"thresholds.objective": "accuracy"},
            "thresholds.objective: 'accuracy' is not one of cost, macro_f1",
        ),
        ("thresholds", {"prior.target_prior": [0] * 9}, "prior.target_prior: all values are 0"),
        ("train", {"train.precision": "fp8"}, "train.precision: 'fp8' is not one of fp32, bf16"),
        ("calibrate", {"calibrate.n_bins": 0}, "calibrate.n_bins: 0 is below 1"),
        ("infer", {"infer.batch_size": 0}, "infer.batch_size: 0 is below 1"),
        ("gradcam", {"gradcam.layer": "fc"}, "gradcam.layer: 'fc' is not"),
        ("split", {"split.val": 2}, "split.val: 2 is not below 1"),
        ("ingest", {"ingest.on_invalid": "skip"}, "ingest.on_invalid: 'skip' is not one of drop"),
        ("evaluate", {"evaluate.bootstrap": 0}, "evaluate.bootstrap"),
        ("evaluate", {"prior.target_prior": [1] * 8}, "prior.target_prior: has 8 value(s)"),
        ("index", {"index.k": 0}, "index.k: 0 is below 1"),
        ("synthesize", {"synthesize.floor": 0.5}, "synthesize.floor: 0.5 is above"),
        ("shard", {"shard.input_px": 4}, "shard.input_px: 4 is below 8"),
    ]
    import typer

    missing = tmp_path / "missing"
    for stage, changes, message in cases:
        app = load_stage(stage).app
        args = ["--params", str(params_file(tmp_path, changes))]
        for opt in typer.main.get_command(app).params:  # every other option: a missing path
            if opt.required and opt.opts[0] != "--params":
                args += [opt.opts[0], str(missing / opt.name)]
        res = CliRunner().invoke(app, args, catch_exceptions=False)
        assert res.exit_code == 2, (stage, res.output)
        assert res.stderr.strip() == f"error: {message}" or res.stderr.startswith(
            f"error: {message}"
        ), (stage, res.stderr)


IMPOSSIBLE = [  # well formed (the table accepts them) but impossible here (issue 29)
    ({"gradcam.layer": "layer2.nope"}, "gradcam.layer: no module 'layer2.nope' in ResNet"),
    ({"ingest.input": "/missing.pkl"}, "ingest.input: /missing.pkl: no such file"),
    ({"gradcam.device": "mps"}, "gradcam.device 'mps': MPS is not available on this machine"),
    ({"train.device": "cuda"}, "train.device 'cuda': no CUDA GPU is available"),
    ({"infer.device": "cuda"}, "infer.device 'cuda': no CUDA GPU is available"),
    ({"index.device": "cuda:3"}, "index.device 'cuda:3': "),
]


@pytest.mark.parametrize(("changes", "message"), IMPOSSIBLE)
def test_impossible_values_stop_first(tmp_path, load_stage, changes, message):
    """validate_params finds what the table cannot (a device this machine lacks, a layer the
    network has not, a missing input) in one line, so `dvc exp run -S train.device=cuda`
    deletes nothing (it was a 93-line traceback after models/model.pt was gone)."""
    if "cuda" in str(changes) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = ["--params", str(params_file(tmp_path, changes)), "--synthetic", "data/raw/x.npz"]
    args += ["--out", str(tmp_path / "ok")]
    res = CliRunner().invoke(load_stage("validate_params").app, args)
    assert res.exit_code == 2 and res.output.startswith(f"error: {message}"), res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "ok").exists()


@pytest.mark.slow
def test_bad_param_in_dvc_exp_run_deletes_no_output(tmp_path):
    """`dvc exp run -S train.loss=foo` fails in the validate_params stage, before DVC deletes
    the train stage's outputs (model, metrics/train.json, plots/train_curves.csv: the last two
    are not in the DVC cache); afterwards `git checkout params.yaml && dvc checkout` gives a
    workspace that `dvc status` reports up to date."""
    env = tiny_repo(tmp_path, repro="train")
    dvc = [sys.executable, "-m", "dvc"]
    outs = ["models/model.pt", "metrics/train.json", "plots/train_curves.csv"]
    before = {f: (tmp_path / f).read_bytes() for f in outs}

    bad = [  # a value the table refuses, and one it lets through but the machine cannot run
        ("index.method=foo", "index.method: 'foo' is not one of auto, msp, energy, knn"),
        ("gradcam.layer=layer2.nope", "gradcam.layer: no module 'layer2.nope' in ResNet"),
    ]  # the other impossible values stop the same stage: test_impossible_values_stop_first
    for value, message in bad:
        proc = sh([*dvc, "exp", "run", "-S", value, "train"], tmp_path, env, ok=False)
        assert proc.returncode != 0, value
        assert f"error: {message}" in proc.stdout + proc.stderr, (value, proc.stderr)
        assert "Running stage 'train'" not in proc.stdout
        assert "Traceback" not in proc.stdout + proc.stderr, value
        for f in outs:
            assert (tmp_path / f).read_bytes() == before[f], (value, f)
        sh(["git", "checkout", "params.yaml"], tmp_path, env)

    sh(["git", "checkout", "params.yaml"], tmp_path, env)
    sh([*dvc, "checkout", "--with-deps", "train"], tmp_path, env)
    status = sh([*dvc, "status", "--with-deps", "train"], tmp_path, env).stdout
    assert "up to date" in status, status
    assert (tmp_path / "data/params.ok").read_text() == "ok\n"


@pytest.mark.slow
def test_a_recipe_typo_stops_dvc_exp_run_before_anything_runs(tmp_path):
    """`dvc exp run -n seed-224 $(python -m wafer.tools.recipes seed-22)`: the recipe error is
    one line on stderr and the word it prints makes `dvc exp run` refuse to start, so no
    experiment runs (it used to run the default params under the recipe's name, exit 0)."""
    if shutil.which("bash") is None:
        pytest.skip("bash is needed")
    env = tiny_repo(tmp_path)
    py = sys.executable
    cmd = f"{py} -m dvc exp run -n seed-224 $({py} -m wafer.tools.recipes seed-22)"
    proc = sh(["bash", "-c", cmd], tmp_path, env, ok=False)
    assert proc.returncode != 0
    assert "error: unknown recipe 'seed-22'" in proc.stderr
    assert "Running stage" not in proc.stdout + proc.stderr
    shown = sh([py, "-m", "dvc", "exp", "list", "--all-commits"], tmp_path, env).stdout
    assert "seed-224" not in shown
