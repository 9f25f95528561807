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
    runs = [p for p in RUNS.iterdir() if (p / "evaluate.json").is_file()]
    assert runs
    for run in runs:
        for f in ("command.txt", "commit.txt", "machine.txt", "params.yaml", "timing/train.json"):
            assert (run / f).is_file(), (run.name, f)
        ev = json.loads((run / "evaluate.json").read_text())
        assert ev["served"] in ("macro_f1", "cost")
        assert "ci95" in ev["test"][ev["served"]]
        assert "dvc exp run" in (run / "command.txt").read_text()


def test_every_transfer_run_names_its_arm_donor_machine_and_training_maps():
    """The transfer study's runs (scripts/transfer_study.py): a donor run names the donor's
    SHA-256, and at one fraction and seed both arms trained on the same number of maps."""
    runs = sorted((RUNS / "transfer").glob("*/run.json"))
    if not runs:
        return  # the study has not been run here
    assert (RUNS / "transfer" / "transfer.png").is_file()  # the page shows it
    seen = {}
    # one donor, the one the donor folder describes, and one kind of processor for every run
    donor = json.loads((RUNS / "transfer" / "donor" / "timing.json").read_text())["model_sha256"]
    kinds = set()
    for path in runs:
        run = json.loads(path.read_text())
        assert run["donor"]["sha256"] == donor, path.parent.name
        kinds.add(run["machine"]["cpu_capability"])
        train = json.loads((path.parent / "train.json").read_text())
        assert run["arm"] in ("scratch", "donor") and 0 < run["fraction"] <= 1
        assert run["machine"]["cpu_model"] and run["commit"]
        if run["arm"] == "donor":
            assert train["init"]["donor_sha256"] == run["donor"]["sha256"]
            assert train["init"]["head_copied"] is False
        else:
            assert train.get("init") is None
        key = (run["fraction"], run["seed"])
        assert seen.setdefault(key, train["train_maps"]) == train["train_maps"], key
    assert len(kinds) == 1, kinds
