"""docs/RESULTS.md's section on never-seen patterns and similar wafers (the `index` stage),
rendered by scripts/report_results.py from the runs under results/novelty/: held-out classes
(novelty AUROC, detection and false flags per method, the validation proxy that chose the
method) and the full model's retrieval against the raw-pixel baseline, index size and query
time. Kept apart from report_results.py, like results_screen.py and results_crossfit.py, so
that each file stays readable."""

from __future__ import annotations

import json
from pathlib import Path

from wafer.config.rules import NOVELTY_METHODS


def novelty_section(root: Path) -> list[str]:
    """The `index` stage's figures of the runs under results/novelty/: held-out classes
    (novelty) and the full model (retrieval, index size, query time)."""
    runs = {
        d.name: (
            json.loads((d / "index.json").read_text()),
            json.loads(t.read_text()) if (t := d / "timing" / "index.json").is_file() else {},
            (d / "command.txt").read_text().strip(),
            (d / "commit.txt").read_text().strip(),
        )
        for d in sorted(root.glob("*"))
        if (d / "index.json").is_file()
    }
    if not runs:
        return []
    out = [
        "",
        "## Never-seen patterns and similar wafers (`index` stage)",
        "",
        "Penultimate-layer features of the served model; novelty scores: `msp` (1 − the largest",
        "calibrated probability, the baseline), `energy` (−T·logsumexp(logits/T)), `knn`",
        "(distance to the k-th nearest training map, L2-normalised features) and `mahalanobis`",
        "(nearest class mean, shared covariance). Every method's threshold flags",
        "`index.false_flag_rate` of the known validation maps; the served method is the one with",
        "the best *leave-one-class-out* AUROC on validation (each defect class in turn made",
        "unknown to the scorer). Neither choice sees a held-out class or a test map.",
        "",
        "**Held-out classes**: the model retrained with every map of one class moved to test",
        "(`split.holdout`), then scored: AUROC of that class's test maps against the known test",
        "maps, and the share of them flagged (detection) at the validation threshold, beside the",
        "share of known test maps flagged (false flags; the target is the validation rate).",
        "",
        "| held-out class | method | AUROC | detection at the threshold | false flags (known) "
        "| validation leave-one-class-out AUROC |",
        "|---|---|---|---|---|---|",
    ]
    for name, (m, _, _, _) in runs.items():
        t = m["novelty"]["test"]
        if "holdout" not in t:
            continue
        chosen = m["novelty"]["method"]
        proxy = m["novelty"]["validation"]["proxy_auroc"]
        for meth in NOVELTY_METHODS:
            mark = " (chosen)" if meth == chosen else ""
            out.append(
                f"| {', '.join(t['holdout'])} ({t['unknown_maps']} maps; {name}) | "
                f"{meth}{mark} | {t['auroc'][meth]:.3f} | {t['detection_rate'][meth]:.3f} | "
                f"{t['known_false_flag_rate'][meth]:.3f} | {proxy[meth]:.3f} |"
            )
    out += [
        "",
        "**Similar wafers**: each known-class test map queried against the training maps;",
        "precision@k and mean average precision of same-class retrieval, per class, against",
        "the raw-pixel baseline (fail dies block-max resized, cosine).",
        "",
    ]
    for name, (m, timing, _, _) in runs.items():
        r = m["retrieval"]
        base = next(k for k in r if k.startswith("pixels_"))
        emb, pix = r["embedding"], r[base]
        out += [
            f"<details><summary>{name}: mAP {emb['macro']['map']:.3f} (features) vs "
            f"{pix['macro']['map']:.3f} ({base.replace('_', ' ')}); {r['queries']} queries, "
            f"{r['index_maps']} indexed maps</summary>",
            "",
            "| class | queries | P@5 features / pixels | P@10 features / pixels "
            "| mAP features / pixels |",
            "|---|---|---|---|---|",
        ]
        for cls, e in emb["per_class"].items():
            b = pix["per_class"][cls]
            out.append(
                f"| {cls} | {e['queries']} | {e['p@5']:.3f} / {b['p@5']:.3f} | "
                f"{e['p@10']:.3f} / {b['p@10']:.3f} | {e['map']:.3f} / {b['map']:.3f} |"
            )
        out.append(
            f"| **macro** | | {emb['macro']['p@5']:.3f} / {pix['macro']['p@5']:.3f} | "
            f"{emb['macro']['p@10']:.3f} / {pix['macro']['p@10']:.3f} | "
            f"{emb['macro']['map']:.3f} / {pix['macro']['map']:.3f} |"
        )
        ix = m["index"]
        extra = [
            f"Index: {ix['maps']} maps × {ix['dim']} features, "
            f"{ix['bytes'] / 2**20:.1f} MiB ({ix['bytes_per_map'] / 1024:.2f} KiB a map: "
            f"{ix['bytes_at_172950_maps'] / 2**30:.2f} GiB for WM-811K's 172,950 labeled maps, "
            f"{ix['bytes_at_811457_maps'] / 2**30:.2f} GiB for all 811,457)."
        ]
        if timing:
            extra.append(
                f"Exact k-NN query (scikit-learn brute force, k = {timing['k']}, "
                f"{timing['queries']} queries): {timing['ms_per_map']:.2f} ms a map here, "
                f"~{timing['ms_per_map_at_811457_maps']:.0f} ms a map extrapolated linearly to "
                "811,457 indexed maps."
            )
        out += ["", " ".join(extra), "", "</details>", ""]
    out.append(
        "Commands (each run's folder under `results/novelty/` has its commit, and its "
        "`provenance.txt` how the run was actually made; query times are this 2-core AMD EPYC's):"
    )
    out.append("")
    for name, (_, _, command, commit) in runs.items():
        out.append(f"- {name} ({commit[:7]}): `{command}`")
    return out
