"""docs/SERVING.md's tables are what scripts/report_serving.py renders from the committed
benchmark results (no hand-typed figure), and each result names its processor and command."""

import json
import subprocess
import sys

from conftest import ROOT


def test_the_serving_page_is_rendered_from_the_benchmarks():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report_serving.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_benchmark_result_names_its_processor_and_command():
    bench = ROOT / "docs" / "benchmarks"
    assert (bench / "serving.json").is_file()
    for name in ("serving", "serving_test", "ann_index", "full_size"):
        path = bench / f"{name}.json"
        if not path.is_file():  # not measured yet (docs/SERVING.md says so)
            continue
        result = json.loads(path.read_text())
        assert result["processor"] and result["cpu_capability"], name
        assert result["command"].startswith("python benchmarks/"), name
