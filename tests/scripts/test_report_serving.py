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
    for path in (bench / "serving.json", bench / "ann_index.json", bench / "full_size.json"):
        if not path.is_file():  # not measured yet (docs/SERVING.md says so)
            continue
        result = json.loads(path.read_text())
        name = path.name
        assert result["processor"] and result["cpu_capability"], name
        assert result["command"].startswith("python benchmarks/"), name
