"""Stage `gradcam` of the mixed-type pipeline: one Grad-CAM per label (wafer.mixed.cam).

On test maps that carry several patterns, label k's CAM is scored against the synthetic
generator's masks: the share of its mass on k's own dies against the share on the other
patterns' dies (and their chance levels), per label; `gradcam.max_maps` maps per label. Real
maps have no masks: only the pictures are made. Pictures: for `gradcam.per_class` test maps per
label with several patterns, the map and one CAM per *predicted* label (the served prediction,
data/predictions.csv), in reports/gradcam/png/. Writes metrics/gradcam.json.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import typer

from wafer.config.params import load_section
from wafer.config.sections import GradcamParams
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import atomic_path, write_json
from wafer.data.files import load_shard
from wafer.explain.cam import resolve_layer_name, upsample_to_grid
from wafer.explain.report import CamSpec, batched_cams
from wafer.mixed.cam import own_vs_other, render_label_cams, summarise
from wafer.mixed.data import MixedSet
from wafer.mixed.labels import MIXED_LABELS, labels_of
from wafer.model.checkpoint import load_model
from wafer.model.forward import resolve_device

app = typer.Typer(add_completion=False)


def _predicted(path: Path) -> dict[int, str]:
    """Ingested row -> served predicted pattern code, for the test maps."""
    with open(path, newline="") as fh:
        return {
            int(r["row"]): r["predicted_code"] for r in csv.DictReader(fh) if r["split"] == "test"
        }


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    model: Path = typer.Option(..., "--model"),
    shards: Path = typer.Option(..., "--shards"),
    ingested: Path = typer.Option(..., "--ingested"),
    predictions: Path = typer.Option(..., "--predictions"),
    out_dir: Path = typer.Option(..., "--out-dir"),
    metrics: Path = typer.Option(..., "--metrics"),
) -> None:
    p = load_section(params, GradcamParams)
    dev = resolve_device(p.device)
    try:
        net, ckpt = load_model(model, dev, MIXED_LABELS)
    except ValueError as exc:
        raise WaferInputError(model, str(exc)) from None
    layer = resolve_layer_name(p.layer, ckpt.config.stem, ckpt.input_size)
    spec = CamSpec(layer, p.method, p.batch_size, dev)
    test, data = load_shard(shards, "test"), MixedSet.load(ingested)
    predicted = _predicted(predictions)
    rng = np.random.default_rng(p.seed)
    several = test.y.sum(axis=1) >= 2
    report: dict = {"layer": layer, "method": p.method, "masks": data.has_masks, "per_label": {}}
    png_dir = out_dir / "png"
    png_dir.mkdir(parents=True, exist_ok=True)
    for old in png_dir.glob("*.png"):
        old.unlink()
    for k, name in enumerate(MIXED_LABELS):
        pos = np.flatnonzero(several & (test.y[:, k] == 1))
        pos = np.sort(rng.permutation(pos)[: p.max_maps])
        if data.has_masks and len(pos):
            cams = batched_cams(net, spec, test.x, pos, np.full(len(pos), k))
            rows = [
                own_vs_other(c, data.maps[test.rows[i]], data.masks[test.rows[i]], k)
                for c, i in zip(cams, pos, strict=True)
            ]
            report["per_label"][name] = summarise(rows)
        for i in pos[: p.per_class]:
            row = int(test.rows[i])
            shown = [MIXED_LABELS[j] for j in np.flatnonzero(labels_of(predicted[row]))]
            if not shown:
                continue
            ks = np.array([MIXED_LABELS.index(s) for s in shown])
            cams = batched_cams(net, spec, test.x, np.full(len(ks), i), ks)
            m = data.maps[row]
            grids = {s: upsample_to_grid(c, m.shape) for s, c in zip(shown, cams, strict=True)}
            title = f"row {row}: true {data.codes[row]}, predicted {predicted[row]}"
            with atomic_path(png_dir / f"{name}_{row}.png") as tmp:
                tmp.write_bytes(render_label_cams(m, grids, title))
    scored = [v for v in report["per_label"].values() if v.get("maps")]
    if scored:
        report["mean_own_beats_other"] = float(np.mean([v["own_beats_other"] for v in scored]))
    write_json(metrics, report)
    print(
        f"gradcam: layer {layer}, {len(list(png_dir.glob('*.png')))} pictures"
        + (
            f", own pattern lifted most on {report['mean_own_beats_other']:.2f} of maps"
            if scored
            else ", no masks to score against"
        )
    )


if __name__ == "__main__":
    app()
