"""docs/RESULTS.md's screen section (issue 23), rendered by scripts/report_results.py: for every
current run that has the escape-budget point (its `evaluate.json` names `escape_budget`), the
three operating points side by side on validation (where they were fit) and test (reported),
the budget point's certified bound against its realised escape rate, the escape rate per defect
class, the prediction sets' coverage, and the cost-point stability study when it ran
(`results/<run>/cost_stability.json`, scripts/cost_stability.py).

Kept apart from report_results.py, which renders the rest of the page, so that each file stays
readable; it reads a run through report_results' ``Run`` (duck-typed: ``name``, ``m``,
``params``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

POINTS = ("escape_budget", "cost", "macro_f1")
SET_TOLERANCE = 0.015  # the acceptance: test coverage within 1.5 points of the target


def screen_runs(runs: dict) -> list:
    """The current runs whose evaluate stage reports the escape-budget point."""
    return [
        r for r in runs.values() if "val" in r.m["evaluate"] and "escape_budget" in r.m["evaluate"]
    ]


def _pct(v: float | None, digits: int = 2) -> str:
    return (
        "n/a"
        if v is None or (isinstance(v, float) and math.isnan(v))
        else f"{100 * v:.{digits}f} %"
    )


def _point_row(r, split: str, point: str) -> str:
    e = r.m["evaluate"][split].get(point)
    seed = r.params["train"]["seed"]
    if e is None:  # the budget point refused on validation: nothing is served or reported
        why = r.m["evaluate"]["escape_budget"].get("why", "")
        return f"| {r.name} | {seed} | {split} | `{point}` | refused: {why} ||||||"
    s = e["screen"]
    bound, within = "", ""
    if "bound" in s:  # the budget point: certified on validation, checked on both splits
        bound = _pct(s["bound"])
        within = "yes" if s["escape_rate"] <= s["bound"] else "**no**"
    return (
        f"| {r.name} | {seed} | {split} | `{point}` | {e['operating_point']['tau']:.3f} | "
        f"{bound} | {_pct(s['escape_rate'])} | {within} | {_pct(s['false_alarm_rate'])} | "
        f"{e['escapes']:.0f} / {e['false_alarms']:.0f} | "
        f"{e['prevalence_corrected']['macro_f1']:.3f} |"
    )


def _per_class(rs: list) -> list[str]:
    classes = list(next(iter(rs)).m["evaluate"]["test"]["cost"]["screen"]["per_class"])
    lines = [
        "",
        "Escape rate per defect class on test (escapes / maps) at every operating point; a",
        "class-conditional guarantee (each class's own rate bounded) is what",
        "`thresholds.json` → `budget.class_conditional` says validation allows:",
        "",
        "| run | point | " + " | ".join(classes) + " |",
        "|---|---|" + "---|" * len(classes),
    ]
    for r in rs:
        for point in POINTS:
            e = r.m["evaluate"]["test"].get(point)
            if e is None:
                continue
            cells = [
                f"{v['escapes']} / {v['maps']}" if v["maps"] else "no maps"
                for v in e["screen"]["per_class"].values()
            ]
            lines.append(f"| {r.name} | `{point}` | " + " | ".join(cells) + " |")
    lines.append("")
    for r in rs:
        cc = r.m["thresholds"].get("budget", {}).get("class_conditional")
        if cc is not None:
            text = f"attainable (tau {cc['tau']:.3f})" if cc["attainable"] else cc["why"]
            lines.append(f"- {r.name}: class-conditional at the same budget: {text}.")
    return lines


def _sets(rs: list) -> list[str]:
    lines = [
        "",
        "Prediction sets (split-conformal, fit on validation; the score chosen there) on test:",
        "",
        "| run | score | target coverage | coverage | within 1.5 points | lowest class "
        "coverage | mean size | singletons |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rs:
        s = r.m["evaluate"]["test"].get("prediction_sets")
        if s is None:
            continue
        worst = min(
            ((c, v["coverage"]) for c, v in s["per_class"].items() if v["maps"]),
            key=lambda cv: cv[1],
        )
        ok = abs(s["coverage"] - s["target_coverage"]) <= SET_TOLERANCE
        lines.append(
            f"| {r.name} | {s['method']} | {s['target_coverage']:.2f} | {s['coverage']:.4f} | "
            f"{'yes' if ok else '**no**'} | {worst[0]} {worst[1]:.3f} | {s['mean_size']:.2f} | "
            f"{s['singleton_share']:.3f} |"
        )
    return lines


def _stability(rs: list, root: Path) -> list[str]:
    found = {
        r.name: json.loads((root / r.name / "cost_stability.json").read_text())
        for r in rs
        if (root / r.name / "cost_stability.json").is_file()
    }
    if not found:
        return []
    first = next(iter(found.values()))
    lines = [
        "",
        "Can the `cost` point's tau be chosen less noisily? `scripts/cost_stability.py` cuts",
        f"each run's validation split in random halves ({first['repeats']} times), fits tau on",
        "one half by each rule and measures the other (validation only; its docstring fixes the",
        "rule for keeping a variant: held-out escape-rate SD at least 20 % lower, mean cost at",
        "most 1 % higher):",
        "",
        "| run | rule | tau (mean ± sd) | held-out escape rate | held-out false-alarm rate "
        "| held-out cost | kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, out in found.items():
        for rule, v in out["rules"].items():
            kept = "" if rule == "argmin" else ("yes" if v["kept"] else "no")
            lines.append(
                f"| {name} | {rule} | {v['tau_mean']:.3f} ± {v['tau_sd']:.3f} | "
                f"{_pct(v['escape_rate_mean'])} ± {_pct(v['escape_rate_sd'])} | "
                f"{_pct(v['false_alarm_rate_mean'])} ± {_pct(v['false_alarm_rate_sd'])} | "
                f"{v['cost_mean']:.4f} ± {v['cost_sd']:.4f} | {kept} |"
            )
    return lines


def screen_section(runs: dict, root: Path) -> list[str]:
    rs = screen_runs(runs)
    if not rs:
        return []
    b = rs[0].m["evaluate"]["escape_budget"]
    lines = [
        "",
        "## The screen: a guaranteed escape rate, the other points beside it",
        "",
        "The `escape_budget` point (wafer.serving.screen): the largest tau whose "
        f"{b['confidence']:.0%} Clopper-Pearson bound on the escape rate, under the target "
        f"prior's defect mix, is at most {_pct(b['alpha'])}, fit on validation. The bound is "
        "certified there; the test escape rate is what the next lot's would look like. `cost` "
        "and `macro_f1` are fit on the same validation maps. Rates are under the target prior "
        "(escape rate over true defects, false-alarm rate over true `none`); escapes and false "
        "alarms are counts of maps; macro-F1 is the prevalence-corrected one.",
        "",
        "| run | train seed | split | point | tau | bound | escape rate | within bound "
        "| false-alarm rate | escapes / false alarms | macro-F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rs:
        for split in ("val", "test"):
            lines += [_point_row(r, split, p) for p in POINTS]
    served = [r for r in rs if r.m["evaluate"]["test"].get("escape_budget")]
    if len(served) >= 2:
        esc = {
            p: [r.m["evaluate"]["test"][p]["screen"]["escape_rate"] for r in served]
            for p in ("escape_budget", "cost")
        }
        held = sum(
            r.m["evaluate"]["test"]["escape_budget"]["screen"]["escape_rate"]
            <= r.m["evaluate"]["test"]["escape_budget"]["screen"]["bound"]
            for r in served
        )
        sd = {p: _pct(float(np.std(v, ddof=1))) for p, v in esc.items()}
        lines += [
            "",
            f"Over {len(served)} runs, the budget point's test escape rate stayed within its bound "
            f"in {held}; it ranged {_pct(min(esc['escape_budget']))} to "
            f"{_pct(max(esc['escape_budget']))} (sd {sd['escape_budget']}), "
            f"the `cost` point's {_pct(min(esc['cost']))} to {_pct(max(esc['cost']))} "
            f"(sd {sd['cost']}).",
        ]
    lines += _per_class(rs)
    lines += _sets(rs)
    lines += _stability(rs, root)
    return lines
