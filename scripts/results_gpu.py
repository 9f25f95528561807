"""docs/RESULTS.md's section on runs made on a lent GPU (results/gpu/<run>/, written by
scripts/gpu_run.sh or scripts/gpu_lease.sh and joined here by ``python -m wafer.tools.returned``):
each in its own row with the device named, compared with the CPU headline recipe on
validation (the choice rule unchanged), its test figures listed, never used to choose. Kept
apart from report_results.py, like results_screen.py and results_crossfit.py. Renders nothing
while results/gpu/ holds no run."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import yaml


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _pc(e: dict) -> float:
    return e["prevalence_corrected"]["macro_f1"]


def published(figures: dict) -> str:
    """The seed system's published figures as the pages write them: macro-F1 / balanced
    accuracy / ECE, a dash for one it does not publish."""
    return " / ".join(
        f"{figures[k]:.4g}" if k in figures else "–"
        for k in ("macro_f1", "balanced_accuracy", "ece")
    )


def gpu_section(
    root: Path, cpu_val: list[float], cpu_name: str, seed: dict[str, dict] | None = None
) -> list[str]:
    """The runs under ``root`` with both splits evaluated; ``cpu_val``: the CPU headline
    recipe's validation figures (prevalence-corrected macro-F1 at the macro_f1 point, one per
    training seed), ``cpu_name`` how to call it; ``seed``: the seed system's published test
    figures per recipe family ("focal + CBAM", "CE"), set beside each run's own."""
    runs = sorted(
        d
        for d in (root.iterdir() if root.is_dir() else [])
        if {"val", "test"} <= set(_read(d / "evaluate.json"))
    )
    if not runs:
        return []
    cpu_mean = statistics.mean(cpu_val)
    out = [
        "",
        "## On a GPU",
        "",
        'Runs made without DVC on a lent GPU (`scripts/gpu_lease.sh`, README "GPU run without',
        "DVC\"): the same stages and code, the recipe's values, training bounded by its own time",
        "limit. Validation decides as everywhere on this page: each run's validation figure",
        f"(prevalence-corrected macro-F1 at the `macro_f1` point) against the {cpu_name}'s mean",
        f"over its {len(cpu_val)} training seeds, {cpu_mean:.3f}; one GPU run is one seed.",
        "",
        "| run | device | commit | recipe | epochs (best) | train maps/s | training time "
        "| validation | test, `macro_f1` point | test, `cost` point | ECE (test) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for d in runs:
        ev, tr, env = _read(d / "evaluate.json"), _read(d / "train.json"), _read(d / "env.json")
        timing, cal = _read(d / "timing" / "train.json"), _read(d / "calibrate.json")
        params = yaml.safe_load((d / "params.yaml").read_text())
        t = params["train"]
        recipe = (
            f"{t['loss']}{' + CBAM' if t['cbam'] else ''}, {params['shard']['input_px']} px, "
            f"{t['stem']} stem, batch {t['batch_size']}, {t['epochs']} epochs planned"
        )
        bound = " (time limit)" if tr.get("stopped_at_time_limit") else ""
        val = _pc(ev["val"]["macro_f1"])
        cells = [
            f"`{d.name}`",
            f"{env.get('device_name') or '?'} (torch {env.get('torch', '?')})",
            (d / "commit.txt").read_text().strip()[:7],
            recipe,
            f"{tr['epochs_run']} ({tr['best_epoch']}){bound}",
            f"{timing.get('train_maps_per_s', float('nan')):.0f}",
            f"{timing.get('train_seconds', float('nan')) / 60:.1f} min",
            f"{val:.3f}",
            f"{_pc(ev['test']['macro_f1']):.3f} ({ev['test']['macro_f1']['escapes']:.0f} escapes)",
            f"{_pc(ev['test']['cost']):.3f} ({ev['test']['cost']['escapes']:.0f} escapes)",
            f"{cal['test']['after']['ece']:.4f}" if "test" in cal else "?",
        ]
        out.append("| " + " | ".join(cells) + " |")
        better = val > cpu_mean
        verdicts.append(
            f"`{d.name}`: validation {val:.3f} against {cpu_mean:.3f}: "
            + (
                "validation prefers it over the CPU headline recipe (one seed against "
                f"{len(cpu_val)}; its test figures above were not looked at to say so)."
                if better
                else "the CPU headline recipe stays the headline."
            )
        )
        family = "focal + CBAM" if t["loss"] == "focal" and t["cbam"] else "CE"
        if seed and family in seed:
            e = ev["test"]["macro_f1"]
            ece = f"{cal['test']['after']['ece']:.4f}" if "test" in cal else "?"
            verdicts.append(
                f"`{d.name}` beside the seed system's {family} ({published(seed[family])}: "
                "macro-F1 / balanced accuracy / ECE, its protocol, the full labeled WM-811K): "
                "test at "
                f"the `macro_f1` point {e['macro_f1']:.3f} / {e['balanced_accuracy']:.3f} / "
                f"{ece} (macro-F1 not prevalence-corrected, as the seed's)."
            )
        first = timing.get("first_step_s")
        epochs = timing.get("epoch_s") or []
        if first is not None and len(epochs) > 1:
            verdicts.append(
                f"`{d.name}` timing: first training step {first:.1f} s (CUDA start-up, cuDNN "
                f"autotuning), first epoch {epochs[0]:.1f} s against a median "
                f"{statistics.median(epochs[1:]):.1f} s for the later ones (training and "
                "validation)."
            )
    out += [""] + [f"- {v}" for v in verdicts]
    return out
