"""Generated docs match the metrics files they are generated from."""

import importlib.util

import pytest

from conftest import ROOT


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_real_data_page_is_generated_from_the_saved_metrics():
    report = _module("report_real")
    if not any(report.RUNS.glob("*/evaluate.json")):
        pytest.skip("no real-data runs saved under docs/real/")
    assert report.OUT.read_text() == report.render(), (
        "docs/REAL_DATA.md is stale: run python scripts/report_real.py"
    )
