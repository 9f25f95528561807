"""dvc.yaml declares, for every stage, exactly the library modules its script runs: a change to
any of them re-runs the stage (and `dvc status` reports it), and no unrelated change does."""

import importlib.util
import sys

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


def test_every_stage_depends_on_every_wafer_module_it_imports():
    assert deps.differences() == [], "run: python scripts/sync_dvc_deps.py"


def test_closure_follows_imports_inside_functions_and_through_other_modules(tmp_path):
    # evaluate -> wafer.serve -> wafer.thresholds (where the decision rule lives)
    got = deps.closure(ROOT / "stages" / "evaluate.py")
    names = {p.name for p in got}
    assert {"serve.py", "thresholds.py", "calibration.py", "__init__.py"} <= names
    # a lazy import inside a function counts too
    script = tmp_path / "s.py"
    script.write_text("def f():\n    from wafer.cam import compute_cam\n")
    assert {p.name for p in deps.closure(script)} >= {"cam.py", "model.py"}


def test_a_missing_dependency_is_reported(tmp_path):
    text = (ROOT / "dvc.yaml").read_text()
    broken = tmp_path / "dvc.yaml"
    broken.write_text(text.replace("      - src/wafer/thresholds.py\n", "", 1))
    problems = deps.differences(broken)
    assert any("src/wafer/thresholds.py" in p and "does not depend on" in p for p in problems)
    assert deps.differences(ROOT / "dvc.yaml") == []
