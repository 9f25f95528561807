"""docs/RESULTS.md's cross-fitting section (issue 25), rendered by scripts/report_results.py:
for every saved cross-fitting run (``results/crossfit/<name>/``, written by
scripts/real_crossfit.sh), the single model, the ensemble, the distilled student and the
cleaned-label model side by side on validation and test at both operating points
(prevalence-corrected macro-F1), with their training and serving cost; the choices the run
makes on validation (the ensemble's averaging, whether cleaning is adopted, which model
validation prefers); and the label-noise audit's per-class estimate.

A run folder holds what the pipelines wrote, copied: ``metrics/`` (pipelines/crossfit's
metrics tree), ``single/`` (the root pipeline's ``evaluate.json`` and ``timing/train.json``:
the single model of the same recipe on the same maps), ``params.yaml`` (crossfit's own),
``root_params.yaml`` (the recipe), ``command.txt``, ``commit.txt`` and ``audit/`` (the
label-issues list and review page). Nothing here reads a model or a map."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from wafer.data.crossfit import read_label_issues

POINTS = ("macro_f1", "cost")
TARGETS = {"ensemble": 0.93, "student": 0.92}  # issue 25's goals, test at the macro_f1 point


@dataclass
class CrossfitRun:
    name: str
    path: Path
    metrics: dict  # relative path without .json (e.g. "student/evaluate") -> content
    single: dict  # the root's evaluate.json
    single_train: dict  # the root's timing/train.json ({} when not saved)
    params: dict
    root_params: dict
    command: str
    commit: str
    not_run: list[str]  # stages the run had not finished when it was saved (--save-only)
    provenance: str = ""  # provenance.txt: how the run came about, when unusual

    def evaluate(self, model: str) -> dict | None:
        if model == "single":
            return self.single
        key = {"ensemble": "evaluate"}.get(model, f"{model}/evaluate")
        return self.metrics.get(key)

    @property
    def members(self) -> int:
        return int(self.metrics["ensemble"]["members"])

    @property
    def seed_members(self) -> bool:
        """The served ensemble is the root's model and seed members (not the folds')."""
        return self.metrics["ensemble"].get("members_from") == "seeds"

    def summed(self, prefix: str) -> float:
        """The training seconds of every timing file whose name starts with ``prefix``."""
        return sum(self.summed_by_device(prefix).values())

    def summed_by_device(self, prefix: str) -> dict[str, float]:
        """The training seconds of every timing file whose name starts with ``prefix``, per
        device (a timing file's ``device``; ``cpu`` when it names none, as runs saved before
        it was written)."""
        out: dict[str, float] = {}
        for k, v in self.metrics.items():
            if k.startswith(prefix):
                for dev, s in _timed(v).items():
                    out[dev] = out.get(dev, 0.0) + s
        return out

    @property
    def start(self) -> str:
        """A seed member's first weights (``ensemble.start``): scratch (the recipe) or root
        (fine-tuned from the single model); scratch for runs saved before it existed."""
        return self.metrics["ensemble"].get("start", "scratch")

    @property
    def student_teacher(self) -> str:
        """``student.teacher``: oof (the cross-fitted members' out-of-fold logits) or insample
        (the served ensemble's own on the training maps); oof for runs saved before it existed."""
        return self.params.get("student", {}).get("teacher", "oof")

    @property
    def views(self) -> int:
        return int(self.metrics["ensemble"]["views"])

    def train_seconds(self, model: str) -> float:
        """The model's own training time (the members' sum for the ensemble: the root's model
        and the seed members' for a seed ensemble), every device together."""
        return sum(self.train_time(model).values())

    def train_time(self, model: str) -> dict[str, float]:
        """:meth:`train_seconds` per device: a seed ensemble whose root model was trained on a
        GPU and its members on a CPU costs seconds of each, which do not add up to one
        figure ({"cpu": nan} when the timing was not saved)."""
        if model == "single":
            return _timed(self.single_train)
        if model == "ensemble":
            if not self.seed_members:
                return self.summed_by_device("timing/train_member_")
            out = self.summed_by_device("timing/train_seed_")
            for dev, s in self.train_time("single").items():
                out[dev] = out.get(dev, 0.0) + s
            return out
        return _timed(self.metrics.get(f"timing/train_{model}"))


def _timed(timing: dict | None) -> dict[str, float]:
    """A timing file's training seconds under its device (``cpu`` when it names none, as
    files written before it was recorded); ``{"cpu": nan}`` when there is no such file."""
    if not timing or "train_seconds" not in timing:
        return {"cpu": math.nan}
    return {timing.get("device", "cpu"): float(timing["train_seconds"])}


def _read_tree(folder: Path) -> dict[str, dict]:
    return {
        f.relative_to(folder).with_suffix("").as_posix(): json.loads(f.read_text())
        for f in sorted(folder.rglob("*.json"))
    }


def load_crossfit_runs(root: Path) -> list[CrossfitRun]:
    if not root.is_dir():
        return []
    runs = []
    for d in sorted(p for p in root.iterdir() if (p / "metrics" / "evaluate.json").is_file()):
        single = d / "single"
        runs.append(
            CrossfitRun(
                name=d.name,
                path=d,
                metrics=_read_tree(d / "metrics"),
                single=json.loads((single / "evaluate.json").read_text()),
                single_train=json.loads((single / "timing" / "train.json").read_text())
                if (single / "timing" / "train.json").is_file()
                else {},
                params=yaml.safe_load((d / "params.yaml").read_text()),
                root_params=yaml.safe_load((d / "root_params.yaml").read_text()),
                command=(d / "command.txt").read_text().strip(),
                commit=(d / "commit.txt").read_text().strip(),
                not_run=_not_run(d / "not_run.txt"),
                provenance=(d / "provenance.txt").read_text().strip()
                if (d / "provenance.txt").is_file()
                else "",
            )
        )
    return runs


def _not_run(path: Path) -> list[str]:
    """not_run.txt's stage names (``<stage> <metrics path>`` lines), in order, each once."""
    if not path.is_file():
        return []
    names = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(names))


def _pc(e: dict, split: str, point: str) -> float:
    return float(e[split][point]["prevalence_corrected"]["macro_f1"])


def _cost(e: dict, split: str) -> float:
    """What the `cost` point minimises: escapes x cost_ratio + false alarms, a map,
    prevalence-corrected (the same maps can score equal macro-F1 at very different costs)."""
    return float(e[split]["cost"]["prevalence_corrected"]["cost"])


def _ci(e: dict, split: str, point: str) -> str:
    ci = e[split][point]["prevalence_corrected"]["macro_f1_ci95"]
    return f"[{ci['low']:.3f}, {ci['high']:.3f}]"


def _minutes(seconds: float) -> str:
    return "not saved" if math.isnan(seconds) else f"{seconds / 60:.1f} min"


def _device_minutes(time: dict[str, float]) -> str:
    """Training time per device: a CPU's minutes alone as before; a GPU's named, and never
    added to a CPU's (their minutes are not the same cost)."""
    if set(time) <= {"cpu"}:
        return _minutes(sum(time.values()))
    names = {"cuda": "GPU", "mps": "GPU (mps)", "cpu": "CPU"}
    return " + ".join(
        f"{_minutes(s)} ({names.get(dev, dev)})"
        for dev, s in sorted(time.items(), key=lambda kv: kv[0] == "cpu")
    )


def models(run: CrossfitRun) -> list[str]:
    """The models this run evaluated, in the page's order."""
    return [m for m in ("single", "ensemble", "student", "cleaned") if run.evaluate(m)]


def validation_choice(run: CrossfitRun) -> dict[str, object]:
    """The run's choices, each on validation only (prevalence-corrected macro-F1 at the
    `macro_f1` point for the models; argmax macro-F1 with the served TTA for the averaging,
    as metrics/ensemble.json measures it)."""
    val = {m: _pc(run.evaluate(m), "val", "macro_f1") for m in models(run)}
    ens = run.metrics["ensemble"]["val_macro_f1"]
    out: dict[str, object] = {
        "val": val,
        "average_preferred": "logit" if ens["average_logit"] >= ens["average_prob"] else "prob",
        "average_served": run.params["ensemble"]["average"],
        "best": max((m for m in val if m != "cleaned"), key=lambda m: val[m]),
    }
    if "cleaned" in val:
        cmp = run.metrics.get("cleaned/compare")  # compare@cleaned's paired rule, when it ran
        out["cleaning_adopted"] = bool(cmp["adopted"]) if cmp else val["cleaned"] > val["single"]
    return out


def _side_by_side(run: CrossfitRun) -> list[str]:
    lines = [
        "| model | members | forward passes a map | training | val `macro_f1` | "
        "test `macro_f1` [95 % CI] | val `cost` | test `cost` | test escapes / false alarms "
        "(`cost`) | cost a map at `cost`, val / test |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    members_s = run.summed("timing/train_member_")  # the cross-fitted members
    for m in models(run):
        e = run.evaluate(m)
        k = run.members if m == "ensemble" else 1
        train = _device_minutes(run.train_time(m))
        if m == "student" and run.student_teacher == "insample":  # the ensemble teaches it
            train += " (+ the ensemble's, whose in-sample logits it learns from)"
        elif m in ("student", "cleaned"):  # needs the members' out-of-fold logits first
            train += f" (+ cross-fitted members {_minutes(members_s)})"
        c = e["test"]["cost"]
        lines.append(
            f"| {m} | {k} | {k * int(e['views'])} | {train} | "
            f"{_pc(e, 'val', 'macro_f1'):.3f} | {_pc(e, 'test', 'macro_f1'):.3f} "
            f"{_ci(e, 'test', 'macro_f1')} | {_pc(e, 'val', 'cost'):.3f} | "
            f"{_pc(e, 'test', 'cost'):.3f} | {c['escapes']:.0f} / {c['false_alarms']:.0f} | "
            f"{_cost(e, 'val'):.4f} / {_cost(e, 'test'):.4f} |"
        )
    return lines


def _choices(run: CrossfitRun) -> list[str]:
    ch = validation_choice(run)
    ens = run.metrics["ensemble"]["val_macro_f1"]
    members = ", ".join(f"{v:.3f}" for v in ens["members"])
    lines = [
        "",
        f"Choices, on validation only: the members' argmax macro-F1 {members}; averaged "
        f"logits {ens['average_logit']:.3f}, probabilities {ens['average_prob']:.3f}: "
        f"validation prefers `{ch['average_preferred']}`, the run served "
        f"`{ch['average_served']}`"
        + ("" if ch["average_preferred"] == ch["average_served"] else " (**not** the preferred)")
        + f". Of the models a fab would serve, validation prefers the **{ch['best']}** "
        f"({ch['val'][ch['best']]:.3f}).",
    ]
    paired = [
        f"the {m} {c['gain']:+.4f} (one-sided {100 * c['confidence']:.0f} % lower bound "
        f"{c['gain_lower_bound']:+.4f}: " + ("resolved" if c["resolved"] else "not resolved") + ")"
        for m, key in (("ensemble", "compare"), ("student", "student/compare"))
        if (c := run.metrics.get(key))
    ]
    # stages compare@ensemble and compare@student (compare and compare_student in runs saved
    # before 2026-12-05), when the run had them
    if paired:
        lines.append(
            "Gain over the single model on validation (paired bootstrap on the same maps, at "
            "the `macro_f1` point): " + "; ".join(paired) + "."
        )
    if "cleaning_adopted" in ch:
        v = ch["val"]
        w = run.params["audit"]["weight"]
        how = "left out" if w == 0 else f"weighed {w:g}"
        cmp = run.metrics.get("cleaned/compare")
        if cmp:  # the paired rule of stage compare@cleaned (compare_cleaned before 2026-12-05)
            margin = (
                f"paired bootstrap: one-sided {100 * cmp['confidence']:.0f} % lower bound "
                f"{cmp['gain_lower_bound']:+.4f}, interval [{cmp['gain_ci']['low']:+.4f}, "
                f"{cmp['gain_ci']['high']:+.4f}]"
            )
            rule = f"the rule, fixed before the run: {cmp['rule']}"
        else:  # runs saved before compare_cleaned existed: their own rule, not re-judged
            margin = "the cleaned model's validation interval " + _ci(
                run.evaluate("cleaned"), "val", "macro_f1"
            )
            rule = (
                "this run's rule, fixed before it: adopt it for any gain on validation; later "
                "runs ask for a gain a paired bootstrap resolves (stage compare@cleaned)"
            )
        lines.append(
            f"Cleaning (flagged training maps {how}): validation {v['cleaned']:.4f} against the "
            f"single model's {v['single']:.4f} ({v['cleaned'] - v['single']:+.4f}; {margin}): "
            + ("**adopted**" if ch["cleaning_adopted"] else "**not adopted**")
            + f" ({rule})."
        )
    for m, goal in TARGETS.items():
        e = run.evaluate(m)
        if e is not None:
            got = _pc(e, "test", "macro_f1")
            verdict = "met" if got >= goal else "not met"
            lines.append(f"Goal for the {m}: test ≥ {goal:.2f}: {got:.3f}, {verdict}.")
    return lines


def _noise(run: CrossfitRun) -> list[str]:
    a = run.metrics.get("audit")
    if a is None:
        return []
    lines = [
        "",
        f"Label-noise audit ({a['method']}, on the out-of-fold probabilities of "
        f"{a['maps']} training maps): {a['flagged']} flagged ({100 * a['flagged_share']:.1f} "
        "%). Estimated noise rate per given class and where its mislabelled maps most likely "
        "belong; the model's opinion, not ground truth (a class the model finds hard looks "
        "noisier for that reason too):",
        "",
        "| given class | maps | flagged | estimated noise rate | most likely true classes |",
        "|---|---|---|---|---|",
    ]
    for cls, v in a["per_class"].items():
        top = sorted(v["estimated_true_class"].items(), key=lambda kv: -kv[1])[:2]
        where = ", ".join(f"{c} {100 * p:.1f} %" for c, p in top) or "-"
        lines.append(
            f"| {cls} | {v['maps']} | {v['flagged']} | "
            f"{100 * v['estimated_noise_rate']:.1f} % | {where} |"
        )
    return lines


def flagged(run: CrossfitRun) -> dict[int, tuple[str, str]]:
    """The audit's flagged training maps: ingested row -> (given, suggested) label ({} without
    a saved list)."""
    f = run.path / "audit" / "label_issues.csv"
    if not f.is_file():
        return {}
    issues = read_label_issues(f)
    pairs = zip(issues.given, issues.suggested, strict=True)
    return dict(zip(issues.rows.tolist(), pairs, strict=True))


def audit_agreement(a: CrossfitRun, b: CrossfitRun) -> dict | None:
    """How far two runs' audits flag the same maps. Only for runs on the same training maps in
    the same folds (equal metrics/folds.json: per fold, per class counts), where an ingested
    row is the same map in both; None otherwise or when either has no audit list. ``chance``:
    the maps both would flag were the two lists drawn independently at their sizes."""
    if a.metrics.get("folds") is None or a.metrics.get("folds") != b.metrics.get("folds"):
        return None
    fa, fb = flagged(a), flagged(b)
    if not fa or not fb:
        return None
    both = sorted(set(fa) & set(fb))
    per_class: dict[str, list[int]] = {}
    for rows, i in ((fa, 0), (fb, 1)):
        for given, _ in rows.values():
            per_class.setdefault(given, [0, 0, 0])[i] += 1
    for r in both:
        per_class[fa[r][0]][2] += 1
    maps = int(a.metrics["folds"]["training_maps"])
    return {
        "runs": (a.name, b.name),
        "flagged": (len(fa), len(fb)),
        "both": len(both),
        "same_suggestion": sum(fa[r][1] == fb[r][1] for r in both),
        "chance": len(fa) * len(fb) / maps,
        "per_class": dict(sorted(per_class.items(), key=lambda kv: -kv[1][2])),
    }


def _agreement(runs: list[CrossfitRun]) -> list[str]:
    lines: list[str] = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            ag = audit_agreement(a, b)
            if ag is None:
                continue
            (na, nb), n = ag["flagged"], ag["both"]
            lines += [
                "",
                f"### Audit agreement: {a.name} and {b.name}",
                "",
                f"The same training maps in the same folds (equal `metrics/folds.json`), audited "
                f"by two independently trained sets of members: {na} and {nb} maps flagged, "
                f"**{n} by both** ({100 * n / na:.0f} % and {100 * n / nb:.0f} % of each list), "
                f"{ag['same_suggestion']} of them with the same suggested label; two independent "
                f"lists of these sizes would share about {ag['chance']:.1f}. The maps both flag "
                "are the likeliest real label errors; still the models' opinion.",
                "",
                f"| given class | flagged ({a.name}) | flagged ({b.name}) | both |",
                "|---|---|---|---|",
            ]
            lines += [f"| {c} | {x} | {y} | {z} |" for c, (x, y, z) in ag["per_class"].items()]
    return lines


def _insample_student(run: CrossfitRun) -> str:
    """How a student without out-of-fold targets was made (``student.teacher: insample``)."""
    sp, e = run.params["student"], run.params["ensemble"]
    start = (
        f"starting from the single model (`student.start: root`) for {e['finetune_epochs']} "
        f"epoch(s) from lr {e['finetune_lr']:g}"
        if sp.get("start") == "root"
        else "from random weights"
    )
    return (
        "The student learnt from the served ensemble's **in-sample** logits on the training "
        "maps (`student.teacher: insample`: its members trained on those maps, so these are "
        f"not out-of-fold), alpha {sp['alpha']:g} at temperature {sp['temperature']:g}, {start}."
    )


def _seed_start(run: CrossfitRun) -> str:
    """How the seed members began: the recipe from scratch, or the single model fine-tuned."""
    if run.start != "root":
        return "each the recipe on every training map"
    e = run.params["ensemble"]
    return (
        f"each **fine-tuned from the single model** (`ensemble.start: root`) for "
        f"{e['finetune_epochs']} epoch(s) from lr {e['finetune_lr']:g} at its own seed, on every "
        "training map (a warm restart: cheaper than the recipe, and its members differ less)"
    )


def crossfit_section(root: Path) -> list[str]:
    runs = load_crossfit_runs(root)
    if not runs:
        return []
    lines = [
        "",
        "## Cross-fitting: ensemble, distilled student, label-noise audit",
        "",
        "`pipelines/crossfit` (docs/CROSSFIT.md): K members on K folds of the training split, "
        "served as one ensemble; a student distilled from their out-of-fold probabilities; a "
        "model trained without the maps the audit flags. Every model is calibrated, "
        "thresholded and evaluated by the root's stages on the same validation and test maps "
        "as the single model; macro-F1 is prevalence-corrected; forward passes a map are "
        "members × TTA views.",
    ]
    for run in runs:
        tr = run.root_params["train"]
        # a seed ensemble served on its own (its fold members never trained: not_run.txt)
        folds_trained = not any(n.startswith("train_member@") for n in run.not_run)
        lines += [
            "",
            f"### {run.name}",
            "",
            (
                f"Ensemble of {run.members} members: the single model and one per seed of "
                f"`ensemble.seeds` {run.params['ensemble']['seeds']}, "
                + _seed_start(run)
                + (
                    f"; the {len(run.params['crossfit']['folds'])} cross-fitted "
                    "members give the out-of-fold probabilities"
                    if folds_trained
                    else "; no cross-fitted member was trained (so no out-of-fold "
                    + (
                        "probabilities, audit or cleaned model)"
                        if run.evaluate("student")
                        else "probabilities, student, audit or cleaned model)"
                    )
                )
                if run.seed_members
                else f"{run.members} cross-fitted members"
            )
            + (
                f", `crossfit.epochs` {run.params['crossfit']['epochs']} "
                f"(the single model: `train.epochs` {tr['epochs']})"
                if folds_trained
                else f", the single model `train.epochs` {tr['epochs']}"
            )
            + f", {run.root_params['shard']['input_px']} px, `train.seed` {tr['seed']}"
            + (" (a cross-fitted member's: + its fold)" if folds_trained else "")
            + f", commit {run.commit[:7]}. Command: "
            # a run continued later has one line per command, in the order they ran
            + ", then ".join(f"`{c}`" for c in run.command.splitlines()),
            "",
        ]
        if run.evaluate("student") and run.student_teacher == "insample":
            lines += [_insample_student(run), ""]
        if run.provenance:
            lines += [f"How it ran: {run.provenance}", ""]
        if run.not_run:
            lines += [
                f"Saved before the run's end (`real_crossfit.sh --save-only`): "
                f"{', '.join(f'`{n}`' for n in run.not_run)} had not run, so the models they "
                "make are not in the table yet.",
                "",
            ]
        lines += _side_by_side(run)
        lines += _choices(run)
        lines += _noise(run)
    return lines + _agreement(runs)
