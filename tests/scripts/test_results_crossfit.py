"""scripts/results_crossfit.py: the cross-fitting section of docs/RESULTS.md (issue 25) puts the
single model, the ensemble, the student and the cleaned-label model side by side, states the
choices validation makes (and only validation), and renders the audit's per-class noise."""

from __future__ import annotations

import copy
import json
import shutil
import sys

import yaml

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import results_crossfit as rc  # noqa: E402 - a script, imported by path

CROSSFIT = ROOT / "pipelines" / "crossfit"


def _saved_run(root, name="synthetic"):
    """A run folder as scripts/real_crossfit.sh saves it, from the committed synthetic default."""
    d = root / name
    shutil.copytree(CROSSFIT / "metrics", d / "metrics", ignore=shutil.ignore_patterns("timing"))
    (d / "single" / "timing").mkdir(parents=True)
    shutil.copy(ROOT / "metrics" / "evaluate.json", d / "single")
    # timings are not versioned (a run writes them): made up here, as a run would write them
    (d / "metrics" / "timing").mkdir()
    for k in range(3):
        (d / "metrics" / "timing" / f"train_member_{k}.json").write_text(
            json.dumps({"train_seconds": 60.0 + 6 * k})
        )
    for f in ("metrics/timing/train_student.json", "metrics/timing/train_cleaned.json"):
        (d / f).write_text(json.dumps({"train_seconds": 90.0}))
    (d / "single" / "timing" / "train.json").write_text(json.dumps({"train_seconds": 180.0}))
    shutil.copy(CROSSFIT / "params.yaml", d / "params.yaml")
    shutil.copy(ROOT / "params.yaml", d / "root_params.yaml")
    (d / "command.txt").write_text("cd pipelines/crossfit && dvc exp run -n synthetic\n")
    (d / "commit.txt").write_text("0123456789abcdef\n")
    return d


def _set_val(d, rel, value):
    """Overwrite a model's validation macro-F1 (macro_f1 point, prevalence-corrected)."""
    f = d / "metrics" / rel
    e = json.loads(f.read_text())
    e["val"]["macro_f1"]["prevalence_corrected"]["macro_f1"] = value
    f.write_text(json.dumps(e))


def test_side_by_side_with_costs_and_noise(tmp_path):
    _saved_run(tmp_path)
    text = "\n".join(rc.crossfit_section(tmp_path))
    runs = rc.load_crossfit_runs(tmp_path)
    run = runs[0]
    assert rc.models(run) == ["single", "ensemble", "student", "cleaned"]
    for m in ("single", "ensemble", "student", "cleaned"):
        assert f"| {m} |" in text
    ens = run.evaluate("ensemble")
    assert f"{ens['test']['macro_f1']['prevalence_corrected']['macro_f1']:.3f}" in text
    # an ensemble's map costs members x views forward passes, a single model's views
    assert f"| ensemble | {run.members} | {run.members * run.views} |" in text
    assert run.members == 3
    assert "| single | 1 | 8 | 3.0 min |" in text
    assert "| ensemble | 3 | 24 | 3.3 min |" in text  # the members' sum: 60 + 66 + 72 s
    assert "1.5 min (+ cross-fitted members 3.3 min)" in text
    audit = json.loads((CROSSFIT / "metrics" / "audit.json").read_text())
    for cls, v in audit["per_class"].items():
        assert f"| {cls} | {v['maps']} | {v['flagged']} |" in text
    assert "not ground truth" in text
    # the cost the `cost` point minimises, beside its macro-F1
    c = [ens[s]["cost"]["prevalence_corrected"]["cost"] for s in ("val", "test")]
    assert f"| {c[0]:.4f} / {c[1]:.4f} |" in text


def test_a_seed_ensemble_costs_the_single_model_and_its_seed_members(tmp_path):
    """ensemble.members: seeds: the served ensemble is the single model plus one model per
    seed; its training is theirs, and the student still waits for the cross-fitted members."""
    d = _saved_run(tmp_path)
    ens = json.loads((d / "metrics" / "ensemble.json").read_text())
    ens.update(members=3, members_from="seeds")
    (d / "metrics" / "ensemble.json").write_text(json.dumps(ens))
    for seed in (5, 6):
        (d / "metrics" / "timing" / f"train_seed_{seed}.json").write_text(
            json.dumps({"train_seconds": 150.0})
        )
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["ensemble"].update(members="seeds", seeds=[5, 6])
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    run = rc.load_crossfit_runs(tmp_path)[0]
    assert run.seed_members and run.train_seconds("ensemble") == 180.0 + 2 * 150.0
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert "| ensemble | 3 | 24 | 8.0 min |" in text
    assert "1.5 min (+ cross-fitted members 3.3 min)" in text
    assert "the single model and one per seed of `ensemble.seeds` [5, 6]" in text


def test_a_gpu_root_with_cpu_fine_tuned_members_names_each_device(tmp_path):
    """ensemble.start: root: the single model came from a GPU and its seed members were
    fine-tuned from it on a CPU; a GPU minute and a CPU minute are not one cost, so the page
    names each device instead of adding them, and says how the members began."""
    d = _saved_run(tmp_path)
    ens = json.loads((d / "metrics" / "ensemble.json").read_text())
    ens.update(members=3, members_from="seeds", start="root")
    (d / "metrics" / "ensemble.json").write_text(json.dumps(ens))
    for seed in (1, 2):
        (d / "metrics" / "timing" / f"train_seed_{seed}.json").write_text(
            json.dumps({"train_seconds": 2700.0, "device": "cpu"})
        )
    (d / "single" / "timing" / "train.json").write_text(
        json.dumps({"train_seconds": 330.0, "device": "cuda"})
    )
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["ensemble"].update(
        members="seeds", seeds=[1, 2], start="root", finetune_epochs=1, finetune_lr=0.0001
    )
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    run = rc.load_crossfit_runs(tmp_path)[0]
    assert run.start == "root"
    assert run.train_time("ensemble") == {"cpu": 5400.0, "cuda": 330.0}
    assert run.train_time("single") == {"cuda": 330.0}
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert "| single | 1 | 8 | 5.5 min (GPU) |" in text
    assert "| ensemble | 3 | 24 | 5.5 min (GPU) + 90.0 min (CPU) |" in text
    assert "fine-tuned from the single model** (`ensemble.start: root`) for 1 epoch(s)" in text
    assert "from lr 0.0001" in text and "each the recipe on every training map" not in text
    assert "cross-fitted members give the out-of-fold probabilities" in text
    # served on its own: no fold member trained, so no crossfit.epochs or fold seed is claimed
    (d / "not_run.txt").write_text("train_member@0 metrics/members/0.json\noof metrics/oof.json\n")
    shutil.rmtree(d / "metrics" / "student")  # nothing taught it
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert "no cross-fitted member was trained" in text and "`crossfit.epochs`" not in text
    assert "out-of-fold probabilities, student, audit or cleaned model" in text
    # a student taught by the seed ensemble's in-sample logits, warm-started from the single
    # model: said so, and its training is not charged to cross-fitted members it never had
    shutil.copytree(CROSSFIT / "metrics" / "student", d / "metrics" / "student")
    params["student"].update(teacher="insample", start="root")
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    (d / "metrics" / "timing" / "train_student.json").write_text(
        json.dumps({"train_seconds": 2820.0, "device": "cpu"})
    )
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert "out-of-fold probabilities, audit or cleaned model)" in text
    assert "learnt from the served ensemble's **in-sample** logits" in text
    (d / "command.txt").write_text("dvc repro evaluate@ensemble\ndvc repro evaluate@student\n")
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert "Command: `dvc repro evaluate@ensemble`, then `dvc repro evaluate@student`" in text
    assert "starting from the single model (`student.start: root`) for 1 epoch(s)" in text
    assert "| student | 1 | 8 | 47.0 min (+ the ensemble's, whose in-sample logits it" in text


def test_a_run_saved_before_its_end_says_which_stages_had_not_run(tmp_path):
    d = _saved_run(tmp_path)
    shutil.rmtree(d / "metrics" / "cleaned")  # as --save-only leaves it
    lines = ["train_cleaned metrics/cleaned/train.json", "evaluate_cleaned metrics/cleaned/x.json"]
    (d / "not_run.txt").write_text("\n".join(lines) + "\n")
    run = rc.load_crossfit_runs(tmp_path)[0]
    assert run.not_run == ["train_cleaned", "evaluate_cleaned"]
    assert rc.models(run) == ["single", "ensemble", "student"]
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert "`train_cleaned`, `evaluate_cleaned` had not run" in text and "| cleaned |" not in text


def test_choices_follow_validation_not_test(tmp_path):
    d = _saved_run(tmp_path)
    _set_val(d, "evaluate.json", 0.99)  # ensemble best on validation...
    _set_val(d, "student/evaluate.json", 0.50)
    run = rc.load_crossfit_runs(tmp_path)[0]
    student = run.evaluate("student")
    assert rc.validation_choice(run)["best"] == "ensemble"
    # ...whatever test says: a much better student on test changes nothing
    boosted = copy.deepcopy(student)
    boosted["test"]["macro_f1"]["prevalence_corrected"]["macro_f1"] = 0.999
    (d / "metrics" / "student" / "evaluate.json").write_text(json.dumps(boosted))
    assert rc.validation_choice(rc.load_crossfit_runs(tmp_path)[0])["best"] == "ensemble"


def test_cleaning_adopted_only_when_validation_improves(tmp_path):
    """A run saved before stage compare_cleaned existed keeps its own rule (any gain)."""
    d = _saved_run(tmp_path)
    (d / "metrics" / "cleaned" / "compare.json").unlink(missing_ok=True)
    single = json.loads((d / "single" / "evaluate.json").read_text())
    s = single["val"]["macro_f1"]["prevalence_corrected"]["macro_f1"]
    _set_val(d, "cleaned/evaluate.json", s - 0.01)
    run = rc.load_crossfit_runs(tmp_path)[0]
    assert rc.validation_choice(run)["cleaning_adopted"] is False
    assert "**not adopted**" in "\n".join(rc.crossfit_section(tmp_path))
    _set_val(d, "cleaned/evaluate.json", s + 0.01)
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert "**adopted**" in text
    assert "this run's rule, fixed before it: adopt it for any gain" in text


def test_cleaning_follows_the_paired_rule_when_the_run_has_it(tmp_path):
    """compare_cleaned decides: a higher validation figure whose gain the paired bootstrap does
    not resolve is not adopted, and the page shows the bound that decided."""
    d = _saved_run(tmp_path)
    single = json.loads((d / "single" / "evaluate.json").read_text())
    s = single["val"]["macro_f1"]["prevalence_corrected"]["macro_f1"]
    _set_val(d, "cleaned/evaluate.json", s + 0.001)
    compare = {
        "confidence": 0.95,
        "gain": 0.001,
        "gain_lower_bound": -0.004,
        "gain_ci": {"low": -0.005, "high": 0.007},
        "rule": "adopt if the one-sided 95% paired bootstrap lower bound of the gain is above 0",
        "adopted": False,
    }
    (d / "metrics" / "cleaned" / "compare.json").write_text(json.dumps(compare))
    run = rc.load_crossfit_runs(tmp_path)[0]
    assert rc.validation_choice(run)["cleaning_adopted"] is False
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert "**not adopted**" in text
    assert "one-sided 95 % lower bound -0.0040, interval [-0.0050, +0.0070]" in text
    compare.update(gain_lower_bound=0.0005, adopted=True)
    (d / "metrics" / "cleaned" / "compare.json").write_text(json.dumps(compare))
    assert rc.validation_choice(rc.load_crossfit_runs(tmp_path)[0])["cleaning_adopted"] is True


def test_the_ensemble_and_student_gains_over_the_single_model_are_shown_when_saved(tmp_path):
    """Stages compare and compare_student: the paired gain and its bound, on validation; runs
    saved before those stages existed show no such line."""
    d = _saved_run(tmp_path)
    for rel, gain, bound, resolved in (
        ("compare.json", 0.0123, 0.0041, True),
        ("student/compare.json", 0.002, -0.003, False),
    ):
        c = {"confidence": 0.95, "gain": gain, "gain_lower_bound": bound, "resolved": resolved}
        (d / "metrics" / rel).write_text(json.dumps(c))
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert (
        "the ensemble +0.0123 (one-sided 95 % lower bound +0.0041: resolved); the student "
        "+0.0020 (one-sided 95 % lower bound -0.0030: not resolved)."
    ) in text
    for rel in ("compare.json", "student/compare.json"):
        (d / "metrics" / rel).unlink()
    assert "Gain over the single model" not in "\n".join(rc.crossfit_section(tmp_path))


def test_averaging_choice_flags_a_served_average_validation_does_not_prefer(tmp_path):
    d = _saved_run(tmp_path)
    ens = json.loads((d / "metrics" / "ensemble.json").read_text())
    served = yaml.safe_load((d / "params.yaml").read_text())["ensemble"]["average"]
    other = "prob" if served == "logit" else "logit"
    ens["val_macro_f1"][f"average_{served}"] = 0.1
    ens["val_macro_f1"][f"average_{other}"] = 0.9
    (d / "metrics" / "ensemble.json").write_text(json.dumps(ens))
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert f"validation prefers `{other}`" in text and "(**not** the preferred)" in text


def test_no_saved_run_no_section(tmp_path):
    assert rc.crossfit_section(tmp_path / "crossfit") == []
    assert rc.crossfit_section(tmp_path) == []


def _issues(d, rows):
    """A saved run's audit list: (row, given, suggested) triples."""
    (d / "audit").mkdir(exist_ok=True)
    lines = ["rank,row,given,suggested,quality,p_suggested,fold"]
    lines += [f"{i + 1},{r},{g},{s},0.01,0.6,0" for i, (r, g, s) in enumerate(rows)]
    (d / "audit" / "label_issues.csv").write_text("\n".join(lines) + "\n")


def test_audit_agreement_counts_maps_both_runs_flag(tmp_path):
    """Two runs on the same maps and folds: the rows both flag, whether they suggest the same
    label, per given class, and what independent lists would share by chance."""
    a, b = _saved_run(tmp_path, "run-a"), _saved_run(tmp_path, "run-b")
    _issues(a, [(3, "Loc", "none"), (7, "Scratch", "none"), (9, "none", "Loc")])
    _issues(b, [(7, "Scratch", "none"), (3, "Loc", "Edge-Loc"), (11, "Loc", "none")])
    ra, rb = rc.load_crossfit_runs(tmp_path)
    ag = rc.audit_agreement(ra, rb)
    assert ag["flagged"] == (3, 3) and ag["both"] == 2 and ag["same_suggestion"] == 1
    assert ag["per_class"] == {"Loc": [1, 2, 1], "Scratch": [1, 1, 1], "none": [1, 0, 0]}
    maps = ra.metrics["folds"]["training_maps"]
    assert abs(ag["chance"] - 9 / maps) < 1e-12
    text = "\n".join(rc.crossfit_section(tmp_path))
    assert "### Audit agreement: run-a and run-b" in text and "**2 by both**" in text
    assert "| Loc | 1 | 2 | 1 |" in text


def test_audit_agreement_only_on_the_same_maps_and_folds(tmp_path):
    """Rows are shard rows: another split or fold assignment makes them other maps."""
    a, b = _saved_run(tmp_path, "run-a"), _saved_run(tmp_path, "run-b")
    _issues(a, [(3, "Loc", "none")])
    _issues(b, [(3, "Loc", "none")])
    folds = json.loads((b / "metrics" / "folds.json").read_text())
    folds["training_maps"] += 1
    (b / "metrics" / "folds.json").write_text(json.dumps(folds))
    ra, rb = rc.load_crossfit_runs(tmp_path)
    assert rc.audit_agreement(ra, rb) is None
    assert "Audit agreement" not in "\n".join(rc.crossfit_section(tmp_path))
    (b / "audit" / "label_issues.csv").unlink()  # and no list, no comparison
    assert rc.audit_agreement(ra, ra) is not None and rc.audit_agreement(rb, rb) is None
