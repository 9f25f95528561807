"""scripts/crossfit_outputs.py: a saved cross-fitting run holds its own files only, not those an
earlier run with other params left in the workspace, and names every stage it has not run."""

from __future__ import annotations

import shlex
import sys

import pytest
import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import crossfit_outputs as co  # noqa: E402 - a script, imported by path

CROSSFIT = ROOT / "pipelines" / "crossfit"

# a small pipeline: two members, their ensemble, a student distilled from it
STAGES = {
    "train_member@0": ["metrics/members/0.json"],
    "train_member@1": ["metrics/members/1.json"],
    "ensemble": ["metrics/ensemble.json"],
    "train_student": ["metrics/student/train.json"],
    "infer_student": [],
    "evaluate_student": ["metrics/student/evaluate.json"],
}
UPSTREAM = {
    "train_member@0": set(),
    "train_member@1": set(),
    "ensemble": {"train_member@0", "train_member@1"},
    "train_student": {"train_member@0", "train_member@1"},
    "infer_student": {"train_student", "train_member@0", "train_member@1"},
    "evaluate_student": {"infer_student", "train_student", "train_member@0", "train_member@1"},
}
OURS = {m for ms in STAGES.values() for m in ms}
TIMINGS = {
    "metrics/timing/train_member_0.json",
    "metrics/timing/train_member_1.json",
    "metrics/timing/train_student.json",
}
STALE = {  # an earlier run's: a seed ensemble's member, a third fold, a cleaned-label model
    "metrics/seeds/1.json",
    "metrics/timing/train_seed_1.json",
    "metrics/members/2.json",
    "metrics/timing/train_member_2.json",
    "metrics/timing/train_cleaned.json",
}


def test_a_finished_run_keeps_its_metrics_and_timings_and_nothing_stale():
    keep, not_run = co.select(STAGES, UPSTREAM, set(), OURS | TIMINGS | STALE)
    assert set(keep) == OURS | TIMINGS
    assert not_run == []
    assert keep[0] == "metrics/members/0.json"  # dvc.yaml's order


def test_a_stopped_run_names_every_stage_left_downstream_included():
    # the student's training is stopped: `dvc status` lists it alone (its deps and outs
    # changed), yet the stages after it still hold an earlier run's files
    keep, not_run = co.select(STAGES, UPSTREAM, {"train_student"}, OURS | TIMINGS | STALE)
    assert not_run == [
        ("train_student", "metrics/student/train.json"),
        ("infer_student", "-"),
        ("evaluate_student", "metrics/student/evaluate.json"),
    ]
    assert set(keep) == {
        "metrics/members/0.json",
        "metrics/members/1.json",
        "metrics/ensemble.json",
        "metrics/timing/train_member_0.json",
        "metrics/timing/train_member_1.json",
    }


def test_an_up_to_date_stage_without_its_metrics_or_an_unknown_stage_is_an_error():
    with pytest.raises(ValueError, match="ensemble is up to date but metrics/ensemble.json"):
        co.select(STAGES, UPSTREAM, set(), (OURS | TIMINGS) - {"metrics/ensemble.json"})
    with pytest.raises(ValueError, match="not stages of this pipeline: train_seed@1"):
        co.select(STAGES, UPSTREAM, {"train_seed@1"}, OURS)


def test_the_committed_pipeline_resolves_from_its_params():
    from dvc.repo import Repo

    with Repo(str(CROSSFIT)) as repo:
        stages, upstream = co.pipeline_stages(repo, CROSSFIT)
    folds = yaml.safe_load((CROSSFIT / "params.yaml").read_text())["crossfit"]["folds"]
    assert [s for s in stages if s.startswith("train_member@")] == [
        f"train_member@{k}" for k in folds
    ]
    assert not [s for s in stages if s.startswith("train_seed@")]  # ensemble.seeds is empty
    assert stages["evaluate@student"] == ["metrics/student/evaluate.json"]
    assert {"train_student", "oof", "train_member@0"} <= upstream["evaluate@student"]
    assert "train_student" not in upstream["evaluate@ensemble"]


def test_each_serving_step_is_one_stage_over_the_served_models_writing_where_it_did():
    """infer, calibrate, thresholds, evaluate and compare are each written once (a foreach over
    the ensemble, the student and the cleaned-label model), and each model's metrics stay where
    the saved runs and scripts/results_crossfit.py read them."""
    from dvc.repo import Repo

    doc = yaml.safe_load((CROSSFIT / "dvc.yaml").read_text())["stages"]
    with Repo(str(CROSSFIT)) as repo:
        stages, _ = co.pipeline_stages(repo, CROSSFIT)
    folder = {"ensemble": "metrics/", "student": "metrics/student/", "cleaned": "metrics/cleaned/"}
    for step in ("infer", "calibrate", "thresholds", "evaluate", "compare"):
        assert set(doc[step]["foreach"]) == set(folder), step
        assert not [n for n in doc if n.startswith(f"{step}_")], step  # no near-copies
        for model, where in folder.items():
            want = [] if step == "infer" else [f"{where}{step}.json"]
            assert stages[f"{step}@{model}"] == want, (step, model)


def test_each_index_stage_writes_the_timing_file_named_after_it():
    """Two index stages once wrote one metrics/timing/index.json: the student's overwrote the
    ensemble's. The name crossfit_outputs looks for is the stage's."""
    index_stages = {}
    for dvcyaml in (ROOT / "dvc.yaml", CROSSFIT / "dvc.yaml"):
        doc = yaml.safe_load(dvcyaml.read_text())
        stages = doc["stages"].items()  # a foreach stage's command is under its `do:`
        index_stages |= {(dvcyaml, n): s for n, s in stages if "index.py" in s.get("do", s)["cmd"]}
    assert {n for _, n in index_stages} == {"index", "index_student"}
    assert len(index_stages) == 3  # the root's, the ensemble's, the student's
    for (_, name), stage in index_stages.items():
        argv = shlex.split(stage["cmd"])
        assert co.timing_file(name) == f"metrics/timing/{argv[argv.index('--timing') + 1]}.json"


def test_each_train_stage_writes_the_timing_file_named_after_it(load_stage):
    """stages/train.py names its timing file from its options; crossfit_outputs looks for the
    stage's name. Every train stage of both pipelines, as DVC resolves them (matrix members
    included), must agree, or a run's training time is silently left out of its save."""
    from dvc.repo import Repo

    train = load_stage("train")
    resolved = {}
    for pipeline in (ROOT, CROSSFIT):
        with Repo(str(pipeline)) as repo:
            stages, _ = co.pipeline_stages(repo, pipeline)
            resolved |= {
                s.name: s.cmd
                for s in repo.index.stages
                if s.name in stages and "stages/train.py" in s.cmd
            }
    assert {"train", "train_member@0", "train_student", "train_cleaned"} <= set(resolved)

    def option(argv, name, cast=str):
        return cast(argv[argv.index(name) + 1]) if name in argv else None

    for name, cmd in resolved.items():
        argv = shlex.split(cmd)
        got = train.timing_name(
            option(argv, "--fold", int),
            option(argv, "--seed-member", int),
            option(argv, "--soft-targets"),
            option(argv, "--label-issues"),
        )
        assert co.timing_file(name) == f"metrics/timing/{got}.json", name
    # the seed members (none in the committed default: ensemble.seeds is empty)
    assert (
        co.timing_file("train_seed@3")
        == f"metrics/timing/{train.timing_name(None, 3, None, None)}.json"
    )


def test_the_ensemble_depends_on_the_member_set_it_serves_only():
    """dvc.yaml names the ensemble's members folder models/<ensemble.members> (DVC cannot look a
    path up by a param's value): for each value, that must be the folder its training stages
    write, or a seed ensemble would wait for (or miss) the wrong members."""
    from wafer.config.rules import ENSEMBLE_MEMBERS

    doc = yaml.safe_load((CROSSFIT / "dvc.yaml").read_text())
    paths = next(v["paths"] for v in doc["vars"] if isinstance(v, dict) and "paths" in v)
    assert "models/${ensemble.members}" in doc["stages"]["ensemble"]["deps"]
    written = {"folds": "members", "seeds": "seeds"}  # the paths key each set's stage writes
    assert set(written) == set(ENSEMBLE_MEMBERS)
    for value, key in written.items():
        assert paths[key] == f"models/{value}", value
    assert "${paths.members}/${item.fold}.pt" in doc["stages"]["train_member"]["cmd"]
    assert "${paths.seeds}/${item.seed}.pt" in doc["stages"]["train_seed"]["cmd"]
