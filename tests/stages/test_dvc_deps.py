"""dvc.yaml declares, for every stage, exactly the library modules its script runs: a change to
any of them re-runs the stage (and `dvc status` reports it), and no unrelated change does; and
the first stage, validate_params, checks every section of the rule table."""

import importlib.util
import sys

import yaml

from wafer.config.sections import SECTIONS

from conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location(
        "sync_dvc_deps", ROOT / "scripts" / "sync_dvc_deps.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sync_dvc_deps"] = mod
    spec.loader.exec_module(mod)
    return mod


deps = _script()
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_depends_on_every_wafer_module_it_imports():
    assert deps.differences() == [], "run: python scripts/sync_dvc_deps.py"


def test_closure_follows_imports_inside_functions_and_through_other_modules(tmp_path):
    # evaluate -> wafer.serving.decision -> wafer.serving.files, wafer.core.probs
    got = {str(p.relative_to(ROOT)) for p in deps.closure(ROOT / "stages" / "evaluate.py")}
    assert {
        "src/wafer/serving/decision.py",
        "src/wafer/serving/files.py",
        "src/wafer/core/probs.py",
        "src/wafer/serving/__init__.py",  # importing a module runs its package's __init__
        "src/wafer/__init__.py",
    } <= got
    assert "src/wafer/serving/calibration.py" not in got  # nothing it runs imports it
    # a lazy import inside a function counts too
    script = tmp_path / "s.py"
    script.write_text("def f():\n    from wafer.explain.cam import compute_cam\n")
    assert {p.name for p in deps.closure(script)} >= {"cam.py", "net.py"}


def test_a_missing_dependency_is_reported(tmp_path):
    text = (ROOT / "dvc.yaml").read_text()
    broken = tmp_path / "dvc.yaml"
    line = "      - src/wafer/serving/thresholds.py\n"
    assert line in text
    broken.write_text(text.replace(line, "", 1))
    problems = deps.differences(broken)
    assert any(
        "src/wafer/serving/thresholds.py" in p and "does not depend on" in p for p in problems
    )
    assert deps.differences(ROOT / "dvc.yaml") == []


def test_validate_params_checks_every_section_first():
    """Its `params:` list is the rule table's sections (the sync script writes it), and those are
    the sections of params.yaml: a section left out (as `index` once was) is reported."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert STAGES["validate_params"]["params"] == list(SECTIONS) == list(params)


def test_a_section_missing_from_validate_params_is_reported(tmp_path):
    text = (ROOT / "dvc.yaml").read_text()
    broken = tmp_path / "dvc.yaml"
    broken.write_text(text.replace("      - index\n", "", 1))
    assert yaml.safe_load(broken.read_text())["stages"]["validate_params"]["params"] != list(
        SECTIONS
    )
    assert any("missing: index" in p for p in deps.differences(broken))


def test_training_depends_on_no_serving_reading_or_novelty_code():
    """Editing how maps are read, served or scored for novelty does not mark the model stale."""
    train = [d for d in STAGES["train"]["deps"] if str(d).startswith("src/wafer/")]
    for part in ("serving/", "inputs/", "apps/", "explain/", "tools/", "data/ingest", "novelty"):
        assert not [d for d in train if part in d], (part, train)


def test_a_foreach_stage_is_checked_and_rewritten_under_its_do(tmp_path, monkeypatch):
    """The cross-fitting pipeline's serving steps are foreach stages, their deps under `do:`,
    two columns deeper: a module missing there is reported, and the rewrite puts it back."""
    crossfit = ROOT / "pipelines" / "crossfit"
    text = (crossfit / "dvc.yaml").read_text()
    line = "        - ../../src/wafer/serving/decision.py\n"  # a `do:` block's deps item
    assert line in text
    broken = tmp_path / "dvc.yaml"
    broken.write_text(text.replace(line, "", 1))
    monkeypatch.setattr(deps, "_wdir", lambda _: crossfit)  # read as that pipeline's file
    problems = deps.differences(broken)
    assert len(problems) == 1 and "serving/decision.py" in problems[0], problems
    assert deps.rewrite(broken) == text
