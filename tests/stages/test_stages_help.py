"""Every stage script is a standalone Typer app with a working --help."""

import pytest
from typer.testing import CliRunner

from conftest import ROOT

STAGES = sorted(p.stem for p in (ROOT / "stages").glob("*.py"))
# the cross-fitting pipeline's own scripts (pipelines/crossfit/dvc.yaml)
CROSSFIT = sorted(f"crossfit/{p.stem}" for p in (ROOT / "stages" / "crossfit").glob("*.py"))
# options that may be left out: the progress switch, and train's modes of pipelines/crossfit (its
# params file, with a member's folds file and fold, the student's soft targets or the
# cleaned-label model's list of flagged maps; a seed member's seed, a matrix value as a fold is,
# and the root's model it may start from)
OPTIONAL = {"progress"}
MEMBER_OPTIONS = {
    "train": {
        "crossfit_params",
        "folds",
        "fold",
        "seed_member",
        "root_model",
        "soft_targets",
        "label_issues",
    }
}


def test_every_dvc_stage_has_a_script():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGES)
    for name, stage in stages.items():
        assert stage["cmd"].startswith(f"python stages/{name}.py"), name


@pytest.mark.parametrize("name", STAGES + CROSSFIT)
def test_help(name, load_stage):
    result = CliRunner().invoke(load_stage(name).app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "--help" in result.output


@pytest.mark.parametrize("name", STAGES + CROSSFIT)
def test_stage_takes_values_only_from_the_params_file(name, load_stage):
    """params.yaml is the one place a value is written: a stage's options are its params file
    and its paths, all required (no default to drift from params.yaml); only the progress bar
    switch has a default."""
    import typer

    options = typer.main.get_command(load_stage(name).app).params
    assert "params" in {o.name for o in options}, name
    for opt in options:
        optional = OPTIONAL | MEMBER_OPTIONS.get(name, set())
        assert opt.required or opt.name in optional, (name, opt.name)


def test_the_crossfit_pipeline_runs_its_scripts_and_the_roots():
    """Every stage of pipelines/crossfit/dvc.yaml runs a stage script (its own, or the root's
    with the root's params file), and every script of stages/crossfit/ is a stage there."""
    import yaml

    stages = yaml.safe_load((ROOT / "pipelines" / "crossfit" / "dvc.yaml").read_text())["stages"]
    scripts = set()
    for name, stage in stages.items():
        script = stage.get("do", stage)["cmd"].split()[1]  # foreach: under do
        assert script.startswith("../../stages/"), name
        scripts.add(script.removeprefix("../../stages/").removesuffix(".py"))
    assert set(CROSSFIT) <= scripts
    assert {"train", "infer", "calibrate", "thresholds", "index", "evaluate"} <= scripts


def test_paths_are_written_once_in_dvc_yaml():
    """dvc.yaml's `paths` variable names every file passed between stages; commands, deps,
    outs and artifacts use it, and no library module, stage script or tool spells one."""
    import re

    from wafer.config.pipeline import pipeline_paths

    text = (ROOT / "dvc.yaml").read_text()
    paths = pipeline_paths(ROOT)
    assert {"model", "calibration", "thresholds", "ingested", "logits", "shards"} <= set(paths)
    used = set(re.findall(r"\$\{paths\.(\w+)\}", text))
    assert used == set(paths), set(paths) ^ used  # every name used, none unknown
    code = [*(ROOT / "src" / "wafer").glob("*.py"), *(ROOT / "stages").glob("*.py")]
    code += [*(ROOT / "scripts").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    code = [f for f in code if f.name != "report_results.py"]  # writes docs prose, reads none
    for name, path in paths.items():
        rel = path.relative_to(ROOT).as_posix()
        assert text.count(rel) == 1, (name, rel)
        for f in code:
            assert rel not in f.read_text(), (rel, f.name)


@pytest.mark.parametrize(
    "extra",
    [
        ["--crossfit-params", "params.yaml"],  # no mode
        ["--folds", "f.npz", "--fold", "0"],  # a mode without the params file
        ["--soft-targets", "o.npz", "--label-issues", "l.csv", "--crossfit-params", "p.yaml"],
        [
            "--folds",
            "f.npz",
            "--crossfit-params",
            str(ROOT / "pipelines/crossfit/params.yaml"),
        ],  # no --fold
    ],
)
def test_train_takes_one_crossfit_mode_with_its_params_file(extra, load_stage, tmp_path):
    """stages/train.py trains the root's model, or exactly one model of pipelines/crossfit
    (a member, the student, the cleaned-label model) with that pipeline's params file; any other
    combination is refused in one line before anything is read or written."""
    runner = CliRunner()
    out = tmp_path / "m.pt"
    args = ["--params", str(ROOT / "params.yaml"), "--shards", str(tmp_path / "none")]
    args += ["--model-out", str(out), "--curves", str(tmp_path / "c.csv")]
    args += ["--metrics", str(tmp_path / "t.json"), *extra]
    result = runner.invoke(load_stage("train").app, args)
    assert result.exit_code != 0 and not out.exists()
    assert "go" in result.output and "Traceback" not in result.output, result.output


def test_index_stage_pins_openblas_kernels_before_numpy_loads():
    """stages/index.py runs numpy's OpenBLAS with one kernel set (Haswell's) whatever the CPU,
    so that its index, thresholds and figures do not change with OpenBLAS's CPU detection (two
    AMD EPYC generations wrote different index files from bit-identical features)."""
    import json
    import os
    import subprocess
    import sys

    probe = (
        "import json, runpy, threadpoolctl; runpy.run_path('stages/index.py', run_name='probe'); "
        "print(json.dumps(sorted({i.get('architecture') for i in threadpoolctl.threadpool_info() "
        "if i['internal_api'] == 'openblas'})))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    if not found:
        pytest.skip("numpy is not linked to OpenBLAS here")
    assert found == ["Haswell"], found
