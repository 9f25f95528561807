"""wafer.config.pipeline: a pipeline's params are its own params.yaml plus the params files its
dvc.yaml's ``vars`` names (pipelines/crossfit reads the root's recipe), each section from the
first file that has it."""

from __future__ import annotations

import pytest
import yaml

from wafer.config.pipeline import pipeline_params, recipe_params
from wafer.config.sections import InferParams
from wafer.core.errors import UsageError

from conftest import ROOT


def test_the_crossfit_pipeline_reads_the_roots_recipe():
    root = yaml.safe_load((ROOT / "params.yaml").read_text())
    own = yaml.safe_load((ROOT / "pipelines" / "crossfit" / "params.yaml").read_text())
    merged = recipe_params(ROOT / "pipelines" / "crossfit")
    assert merged["infer"] == root["infer"] and merged["student"] == own["student"]
    assert (
        pipeline_params(InferParams, ROOT / "pipelines" / "crossfit").views
        == (root["infer"]["views"])
    )


def test_a_section_of_its_own_comes_before_the_vars_files(tmp_path):
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "dvc.yaml").write_text(
        yaml.safe_dump({"vars": ["params.yaml", "../root.yaml", {"paths": {"a": "b"}}]})
    )
    (tmp_path / "pipe" / "params.yaml").write_text(yaml.safe_dump({"x": {"v": 1}}))
    (tmp_path / "root.yaml").write_text(yaml.safe_dump({"x": {"v": 2}, "y": {"v": 3}}))
    assert recipe_params(tmp_path / "pipe") == {"x": {"v": 1}, "y": {"v": 3}}
    with pytest.raises(UsageError, match="params.yaml"):
        recipe_params(tmp_path)
