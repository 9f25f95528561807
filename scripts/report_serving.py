"""Render the serving benchmarks' tables into docs/SERVING.md (between its table markers), so
that every figure there is one a benchmark wrote: docs/benchmarks/serving.json
(benchmarks/serving.py), docs/benchmarks/ann_index.json (benchmarks/ann_index.py) and
docs/benchmarks/full_size.json (benchmarks/full_size.py) and
docs/benchmarks/serving_default.json (benchmarks/serving.py --predict-only) and
docs/benchmarks/serving_views_<N>px.json (benchmarks/serving.py --quality-only: TTA views and
int8 on a model at another input size).

    python scripts/report_serving.py            # rewrite the tables
    python scripts/report_serving.py --check    # exit 1 when the doc is not what it would write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs/SERVING.md"
SERVING = ROOT / "docs/benchmarks/serving.json"
ANN = ROOT / "docs/benchmarks/ann_index.json"
FULL = ROOT / "docs/benchmarks/full_size.json"
TEST = ROOT / "docs/benchmarks/serving_test.json"
DEFAULT = ROOT / "docs/benchmarks/serving_default.json"  # serving.py --predict-only
VIEWS_BY_SIZE = "docs/benchmarks/serving_views_*px.json"  # serving.py --quality-only
START, END = "<!-- tables:start (scripts/report_serving.py) -->", "<!-- tables:end -->"
WM811K_ALL = 811_457


def table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(str(c) for c in r) + " |" for r in rows),
    ]


def hours(maps_per_s: float) -> str:
    return f"{WM811K_ALL / maps_per_s / 3600:.1f} h"


def serving_tables(s: dict) -> list[str]:
    out = [
        f"Processor: **{s['processor']}** ({s['cpu_capability']}, {s['threads']} threads, "
        f"torch {s['torch']}). Model: {s['model']['input_size']} px, {s['model']['stem']} stem"
        f"{', CBAM' if s['model']['cbam'] else ''}; {s['model']['val_maps']} validation maps. "
        f"Command: `{s['command']}`.",
        "",
        "**Runtimes, model only** (maps already resized; start-up = export or compilation, "
        "paid once per process):",
        "",
    ]
    rows = []
    views = next(iter(s["runtimes_on_validation"].values()))["views"]
    for name, r in s["model_only"].items():
        if "skipped" in r:
            rows.append([name, r["skipped"], "", "", "", "", "", "", ""])
            continue
        q = s["runtimes_on_validation"][name]
        rows.append(
            [
                name,
                r["startup_s"],
                r["maps_per_s_1_views"],
                r.get("maps_per_s_8_views", "not run"),
                r["ratio_vs_eager_1_view"],
                f"{q['delta_macro_f1_pc_vs_eager']:+.5f} ({q['maps']} maps)",
                f"{q['delta_macro_f1_pc_vs_eager_8_views']:+.5f}"
                if "delta_macro_f1_pc_vs_eager_8_views" in q
                else "not measured",
                f"{q['labels_changed']:.4f}",
                f"{q['max_abs_logit_change']:.2g}",
            ]
        )
    out += table(
        [
            "runtime",
            "start-up s",
            "maps/s, 1 view",
            "maps/s, 8 views",
            "× eager (1 view)",
            f"Δ val macro-F1 (pc) vs eager, {views} view(s)",
            "Δ vs eager, 8 views",
            "labels changed",
            "max abs Δ logit",
        ],
        rows,
    )
    by_views = {n: q["by_views"] for n, q in s["runtimes_on_validation"].items() if "by_views" in q}
    if by_views:
        counts = list(next(iter(by_views.values())))
        out += [
            "",
            "**Runtime × TTA views on validation** (prevalence-corrected macro-F1 at the "
            "`macro_f1` point, temperature and thresholds fit on validation; Δ against eager fp32 "
            "8 views, the reference a serving default must stay within 0.002 of; model-only "
            "maps/s from the table above where measured):",
            "",
        ]
        rows = []
        for name, bv in by_views.items():
            for v in counts:
                q = bv[v]
                speed = s["model_only"][name].get(f"maps_per_s_{v}_views")
                rows.append(
                    [
                        name,
                        v,
                        f"{q['macro_f1_pc_at_macro_f1_point']:.5f} ({q['maps']} maps)",
                        f"{q['delta_macro_f1_pc_vs_eager_8_views']:+.5f}",
                        f"{q['labels_changed']:.4f}",
                        speed if speed is not None else "not measured",
                        hours(speed) if speed else "",
                    ]
                )
        out += table(
            [
                "runtime",
                "views",
                "val macro-F1 (pc)",
                "Δ vs eager, 8 views",
                "labels changed vs eager, same views",
                "maps/s",
                "811,457 maps",
            ],
            rows,
        )
    out += [
        "",
        "**TTA views on validation** (eager fp32; macro-F1 at the `macro_f1` point, "
        "prevalence-corrected, temperature and thresholds fit on validation; argmax without "
        "any fit):",
        "",
    ]
    rows = [
        [
            v,
            r["macro_f1_pc_at_macro_f1_point"],
            r["macro_f1_argmax"],
            r["model_only_maps_per_s"],
            hours(r["model_only_maps_per_s"]),
        ]
        for v, r in s["views_on_validation"].items()
    ]
    out += table(
        ["views", "val macro-F1 (pc)", "val macro-F1 (argmax)", "maps/s", "811,457 maps"], rows
    )
    out += predict_tables(s["predict"], "**`wafer predict` against model only**")
    return out


def predict_tables(p: dict, title: str) -> list[str]:
    """`wafer predict` as a process against the model alone at one setting, and its profile."""
    out = [
        "",
        f"{title} ({p['maps']} validation maps in their original sizes, {p['views']} view(s), "
        f"{p['runtime']}):",
        "",
    ]
    out += table(
        ["", "maps/s", "× model only"],
        [
            ["model only", p["model_only_maps_per_s"], 1.0],
            ["`wafer predict`, whole process", p["maps_per_s"], p["ratio_vs_model_only"]],
            [
                f"`wafer predict` after its start-up ({p['startup_s (8 maps)']} s)",
                p["maps_per_s_after_startup"],
                p["ratio_vs_model_only_after_startup"],
            ],
        ],
    )
    out += [
        "",
        "Where a `wafer predict` run spends its time (cumulative, profiled in-process):",
        "",
    ]
    out += table(
        ["function", "calls", "s", "share"],
        [[f"`{r['function']}`", r["calls"], r["seconds"], r["share"]] for r in p["profile"]],
    )
    return out


def test_tables(t: dict) -> list[str]:
    """Each runtime on validation and test (benchmarks/serving_test.py): reported, not chosen."""
    ref, views = t["reference"], next(iter(t["runtimes"].values()))["views"]
    rv = ref["views"]
    out = [
        "",
        f"**Runtimes on validation and test** ({views} view(s); temperature and the `macro_f1` "
        f"point fit on each runtime's own validation logits, applied to its test logits; "
        f"prevalence-corrected macro-F1; {t['val_maps']:,} validation and {t['test_maps']:,} test "
        f"maps; eager fp32 at {rv} views: validation {ref['val_macro_f1_pc']:.5f}, test "
        f"{ref['test_macro_f1_pc']:.5f}; {ran_on(t)}). Choices are made on the validation "
        "columns only:",
        "",
    ]
    rows = [
        [
            name,
            f"{r['val_macro_f1_pc']:.5f}",
            f"{r['test_macro_f1_pc']:.5f}",
            f"{r['delta_val_vs_eager']:+.5f}",
            f"{r['delta_test_vs_eager']:+.5f}",
            f"{r[f'delta_val_vs_eager_{rv}_views']:+.5f}",
            f"{r[f'delta_test_vs_eager_{rv}_views']:+.5f}",
            f"{r['test_labels_changed_vs_eager']:.4f}",
        ]
        for name, r in t["runtimes"].items()
    ]
    out += table(
        [
            "runtime",
            "val",
            "test",
            f"Δ val vs eager, {views} view(s)",
            f"Δ test vs eager, {views} view(s)",
            f"Δ val vs eager, {rv} views",
            f"Δ test vs eager, {rv} views",
            "test labels changed vs eager",
        ],
        rows,
    )
    return out


def ran_on(r: dict) -> str:
    """Where and how a benchmark result was measured, as the tables' headings say it."""
    return (
        f"processor **{r['processor']}**, {r['cpu_capability']}, {r['threads']} threads;"
        f" command: `{r['command']}`"
    )


def ann_tables(a: dict) -> list[str]:
    k = a["k"]
    out = [
        "",
        f"**Nearest neighbours** (k = {k}; {ran_on(a)}):",
        "",
    ]
    rows = []
    for label, key in (
        ("real index, validation queries", "real_index_val_queries"),
        ("synthetic features, full size", "synthetic_full_size"),
    ):
        r = a[key]
        size = f"{r['maps']:,} × {r['dim']}"
        rows.append([label, size, "exact (served)", "", r["exact"]["ms_per_query"], 1.0, ""])
        for lib in ("faiss", "usearch"):
            if lib not in r:
                continue
            g = r[lib]
            for ef, e in g["by_ef_search"].items():
                rows.append(
                    [
                        label,
                        size,
                        f"{lib} HNSW M={g['M']}, efSearch={ef}",
                        g["build_s"],
                        e["ms_per_query"],
                        e[f"recall_at_{k}"],
                        f"{g['bytes'] / 2**20:.0f} MiB",
                    ]
                )
    out += table(
        ["index", "maps × dim", "search", "build s", "ms/query", f"recall@{k}", "size"], rows
    )
    return out


def full_size_tables(f: dict) -> list[str]:
    unlabeled = f["unlabeled"]
    out = [
        "",
        f"**Full-size run** ({f['maps']:,} synthetic maps in the LSWMD.pkl layout, {unlabeled:,}"
        f" unlabeled; shards at {f['input_px']} px; {ran_on(f)}):",
        "",
    ]
    rows = [
        [f"`{s['stage']}`", f"{s['seconds']:,.0f}", f"{s['peak_rss_mib']:,.0f}"]
        for s in f["stages"]
    ]
    p = f["predict"]
    served = f", {p['views']} views, {p['runtime']}" if "runtime" in p else ""
    rows.append(
        [
            f"`wafer predict` ({p['maps']:,} maps, {p['model_input_px']}-px model of"
            f" `{p['pipeline']}`{served}; {p['maps_per_s']:,.1f} maps/s)",
            f"{p['seconds']:,.0f}",
            f"{p['peak_rss_mib']:,.0f}",
        ]
    )
    out += table(["stage", "wall s", "peak memory MiB"], rows)
    sizes = ", ".join(f"{k} {v:,.0f} MiB" for k, v in f["file_mib"].items())
    out += ["", f"Files: {sizes}."]
    if p["maps"] < f["maps"]:  # the whole file at the measured rate, said to be extrapolated
        out += [
            "",
            f"At {p['maps_per_s']:,.1f} maps/s, all {f['maps']:,} maps would take "
            f"{f['maps'] / p['maps_per_s'] / 60:,.0f} min (extrapolated from the "
            f"{p['maps']:,} maps measured, start-up included).",
        ]
    if f["predict_command"] != f["command"]:
        out += ["", f"The `wafer predict` row was measured by `{f['predict_command']}`."]
    return out


def views_by_size_tables(results: list[dict]) -> list[str]:
    """TTA views and int8 on validation for models at other input sizes (--quality-only)."""
    out = [
        "",
        "**TTA views and int8 by input size** (`benchmarks/serving.py --quality-only`; one "
        "trained model per size; validation only: prevalence-corrected macro-F1 at the "
        "`macro_f1` point, temperature and thresholds fit on validation, and at the argmax; "
        "each view count's gain over one view, training's own measure, at the `macro_f1` point "
        "by a paired bootstrap with its 95 % interval; int8 against eager fp32 at the same "
        "count):",
        "",
    ]
    rows = []
    for r in sorted(results, key=lambda r: r["model"]["input_size"]):
        m, served = r["model"], r["served"]
        int8 = (r["runtimes_on_validation"].get("int8") or {}).get("by_views", {})
        for v, q in r["views_on_validation"].items():
            g = q["gain_vs_1_view"]["macro_f1_point"]
            i = int8.get(v)
            mark = " (served)" if int(v) == served["views"] else ""
            rows.append(
                [
                    m["input_size"],
                    f"`{m['sha256'][:12]}`, served {served['runtime']} at {served['views']} views",
                    f"{v}{mark}",
                    f"{q['macro_f1_pc_at_macro_f1_point']:.4f}",
                    f"{q['macro_f1_pc_argmax']:.4f}",
                    f"{g['gain']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]",
                    f"{i['macro_f1_pc_at_macro_f1_point']:.4f}" if i else "not measured",
                    f"{i['delta_macro_f1_pc_vs_eager']:+.4f}" if i else "",
                ]
            )
    out += table(
        [
            "px",
            "model",
            "views",
            "eager val macro-F1 (pc)",
            "argmax (pc)",
            "gain vs 1 view [95 %]",
            "int8 val macro-F1 (pc)",
            "int8 Δ vs eager",
        ],
        rows,
    )
    out += [""] + [
        f"- {r['model']['input_size']} px ({r['model']['val_maps']:,} validation maps): {ran_on(r)}"
        for r in sorted(results, key=lambda r: r["model"]["input_size"])
    ]
    return out


def render() -> str:
    lines = serving_tables(json.loads(SERVING.read_text()))
    if DEFAULT.is_file():
        d = json.loads(DEFAULT.read_text())
        lines += predict_tables(
            d["predict"],
            f"**At the headline recipe's served setting** (processor **{d['processor']}**, "
            f"{d['cpu_capability']}, {d['threads']} threads; command: `{d['command']}`): "
            "`wafer predict` against model only",
        )
    sizes = [json.loads(f.read_text()) for f in sorted(ROOT.glob(VIEWS_BY_SIZE))]
    if sizes:
        lines += views_by_size_tables(sizes)
    if TEST.is_file():
        lines += test_tables(json.loads(TEST.read_text()))
    else:
        lines += ["", "**Runtimes on test**: not measured yet (`benchmarks/serving_test.py`)."]
    if ANN.is_file():
        lines += ann_tables(json.loads(ANN.read_text()))
    else:
        lines += ["", "**Nearest neighbours**: not measured yet (`benchmarks/ann_index.py`)."]
    if FULL.is_file():
        lines += full_size_tables(json.loads(FULL.read_text()))
    else:
        lines += ["", "**Full-size run**: not measured yet (`benchmarks/full_size.py`)."]
    doc = DOC.read_text()
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + "\n" + "\n".join(lines) + "\n" + END + tail


def main() -> int:
    new = render()
    if "--check" in sys.argv:
        if new != DOC.read_text():
            print(f"{DOC} is not what scripts/report_serving.py writes: run it")
            return 1
        return 0
    DOC.write_text(new)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
