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


def test_full_size_table_names_the_served_setting_and_extrapolates_only_a_part():
    """The predict row says how the network ran (views, runtime); a run over part of the file
    is extrapolated to the whole and says so; a run over the whole file is not."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import report_serving
    finally:
        sys.path.pop(0)
    stage = {"stage": "ingest", "seconds": 25.0, "peak_rss_mib": 6031.0}
    predict = {"maps": 100_000, "seconds": 500.0, "maps_per_s": 200.0, "peak_rss_mib": 900.0}
    predict |= {"model_input_px": 96, "pipeline": "/p", "runtime": "int8", "views": 4}
    record = {"maps": 800_000, "unlabeled": 600_000, "input_px": 96, "stages": [stage]}
    record |= {"file_mib": {"shards": 10.0}, "predict": predict, "command": "c"}
    record |= {"predict_command": "c", "processor": "X", "cpu_capability": "AVX2", "threads": 2}
    text = "\n".join(report_serving.full_size_tables(record))
    assert "96-px model of `/p`, 4 views, int8; 200.0 maps/s" in text
    assert "all 800,000 maps would take 67 min (extrapolated from the 100,000 maps" in text
    record["predict"] = predict | {"maps": 800_000}
    assert "extrapolated" not in "\n".join(report_serving.full_size_tables(record))
