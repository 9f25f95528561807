"""docs/RESULTS_MIXED.md is what scripts/report_mixed.py renders from the committed runs in
pipelines/mixed/results/ (no hand-typed figure), and every run there has what the page needs."""

import json
import subprocess
import sys

from conftest import ROOT

RUNS = ROOT / "pipelines" / "mixed" / "results"


def test_the_results_page_is_rendered_from_the_runs():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "report_mixed.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_every_run_records_its_command_commit_machine_and_served_point():
    runs = [p for p in RUNS.iterdir() if p.is_dir()]
    assert runs
    for run in runs:
        for f in ("command.txt", "commit.txt", "machine.txt", "params.yaml", "timing/train.json"):
            assert (run / f).is_file(), (run.name, f)
        ev = json.loads((run / "evaluate.json").read_text())
        assert ev["served"] in ("macro_f1", "cost")
        assert "ci95" in ev["test"][ev["served"]]
        assert "dvc exp run" in (run / "command.txt").read_text()
