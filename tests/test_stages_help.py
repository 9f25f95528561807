"""Every stage script is a standalone Typer app with a working --help."""

import pytest
from typer.testing import CliRunner

from conftest import ROOT

STAGES = sorted(p.stem for p in (ROOT / "stages").glob("*.py"))


def test_every_dvc_stage_has_a_script():
    import yaml

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGES)
    for name, stage in stages.items():
        assert stage["cmd"].startswith(f"python stages/{name}.py"), name


@pytest.mark.parametrize("name", STAGES)
def test_help(name, load_stage):
    result = CliRunner().invoke(load_stage(name).app, ["--help"])
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
