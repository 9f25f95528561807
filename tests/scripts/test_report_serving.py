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
    sizes = sorted(bench.glob("serving_views_*px.json"))  # --quality-only, by input size
    for path in [
        *(bench / f"{n}.json" for n in ("serving", "serving_test", "ann_index", "full_size")),
        *sizes,
    ]:
        name = path.stem
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


def test_views_by_size_table_marks_the_served_count_and_what_was_not_measured():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import report_serving
    finally:
        sys.path.pop(0)

    def q(f1, gain):
        g = {"gain": gain, "low": gain - 0.01, "high": gain + 0.01, "share_above_zero": 0.5}
        return {"macro_f1_pc_at_macro_f1_point": f1, "macro_f1_pc_argmax": f1 - 0.02} | {
            "gain_vs_1_view": {"argmax": g, "macro_f1_point": g}
        }

    def record(px, served_views, int8):
        r = {"model": {"input_size": px, "sha256": "ab" * 32, "val_maps": 5290}}
        r |= {"served": {"views": served_views, "runtime": "eager"}, "command": f"c{px}"}
        r |= {"processor": "X", "cpu_capability": "AVX512", "threads": 2}
        r |= {"views_on_validation": {"1": q(0.925, 0.0), "4": q(0.921, -0.004)}}
        by = {"4": {"macro_f1_pc_at_macro_f1_point": 0.9225, "delta_macro_f1_pc_vs_eager": 0.0015}}
        r["runtimes_on_validation"] = {"int8": {"by_views": by}} if int8 else {}
        return r

    text = "\n".join(
        report_serving.views_by_size_tables([record(224, 8, False), record(160, 4, True)])
    )
    lines = [ln for ln in text.splitlines() if ln.startswith(("| 160 ", "| 224 "))]
    assert lines[0].startswith("| 160 |") and lines[-1].startswith("| 224 |")  # by size
    assert (
        "| 4 (served) | 0.9210 | 0.9010 | -0.0040 [-0.0140, +0.0060] | 0.9225 | +0.0015 |" in text
    )
    assert "| 1 | 0.9250 | 0.9050 | +0.0000 [-0.0100, +0.0100] | not measured |  |" in text
    assert (
        "- 224 px (5,290 validation maps): processor **X**, AVX512, 2 threads; command: `c224`"
        in text
    )
