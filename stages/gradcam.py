"""Stage `gradcam`: class activation maps of the trained model on the test set.

Writes reports/gradcam/index.html (self-contained, PNGs embedded as base64), the same PNGs as
files in reports/gradcam/png/ (for `dvc plots` image plots) and metrics/gradcam.json: the
localisation score of the trained model against an untrained one of the same architecture.
The example selection rule and the localisation measure are documented in wafer.explain.report.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import typer

from wafer.config.params import load_section
from wafer.config.sections import GradcamParams
from wafer.core.errors import UsageError, WaferInputError, one_line_errors
from wafer.core.io import atomic_path, write_json, write_text, write_timing
from wafer.data.files import Ingested, load_shard
from wafer.explain.cam import resolve_layer_name, target_layer
from wafer.explain.report import (
    CamSpec,
    build_html,
    fmt,
    localisation_positions,
    localisation_report,
    read_predictions,
    render_examples,
)
from wafer.model.checkpoint import load_model
from wafer.model.forward import resolve_device
from wafer.model.net import build_model

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section gradcam)"),
    model: Path = typer.Option(..., help="checkpoint of the train stage"),
    shards: Path = typer.Option(..., help="dir with test_x.npy, test_y.npy, test_rows.npy"),
    ingested: Path = typer.Option(..., help="die-resolution maps (+ masks)"),
    predictions: Path = typer.Option(..., help="evaluate stage's per-map predictions (test order)"),
    out_dir: Path = typer.Option(..., help="index.html and png/*.png"),
    metrics: Path = typer.Option(...),
) -> None:
    p = load_section(params, GradcamParams)
    t0 = time.perf_counter()
    dev = resolve_device(p.device)
    for name in ("test_x.npy", "test_y.npy", "test_rows.npy"):
        if not (shards / name).is_file():
            raise WaferInputError(shards / name, "no such file")
    test = load_shard(shards, "test")
    if not len(test.x) == len(test.y) == len(test.rows):
        raise WaferInputError(shards, "test_x, test_y and test_rows differ in length")
    ing = Ingested.load(ingested)
    if len(test.rows) and test.rows.max() >= len(ing.labels):
        raise WaferInputError(ingested, f"has {len(ing.labels)} rows, test_rows needs more")
    pred = read_predictions(predictions, test.rows, test.y)
    trained, ckpt = load_model(model, device=dev)
    layer = resolve_layer_name(p.layer, ckpt.config.stem, ckpt.input_size)
    if ckpt.input_size != test.size:
        print(f"warning: model trained at {ckpt.input_size} px, shards are {test.size}")
    try:
        target_layer(trained, layer)
    except ValueError as exc:
        raise UsageError(f"gradcam.layer: {exc}") from None
    spec = CamSpec(layer=layer, method=p.method, batch_size=p.batch_size, device=dev)

    positions, counts = localisation_positions(test.y, p.max_maps, p.seed)
    torch.manual_seed(p.seed)  # the untrained model's init
    untrained = build_model(ckpt.config).to(dev).eval()
    nets = {"trained": trained, "untrained": untrained}
    result = localisation_report(nets, spec, ing, test, positions)
    if result["cam_size"] and np.prod(result["cam_size"]) == 1:
        print(f"warning: layer {layer} gives a 1x1 CAM at {test.size} px: it cannot localise")

    examples = render_examples(trained, spec, ing, test, pred, p.per_class)
    png_dir = out_dir / "png"
    png_dir.mkdir(parents=True, exist_ok=True)
    for stale in png_dir.glob("*.png"):
        stale.unlink()
    for ex in examples:
        with atomic_path(png_dir / ex.filename) as tmp:
            tmp.write_bytes(ex.png)
    page = build_html(result, examples, model, len(test.y), counts, p.max_maps)
    write_text(out_dir / "index.html", page)
    seconds = time.perf_counter() - t0
    write_json(metrics, result)
    write_timing("gradcam", {"seconds": seconds, "maps_scored": len(positions)})
    tr, un = result["trained"], result["untrained"]
    print(
        f"gradcam: {len(examples)} examples, {len(positions)} maps scored on "
        f"{result['reference']} (energy share trained {fmt(tr['mean_energy_share'])}, untrained "
        f"{fmt(un['mean_energy_share'])}, chance {fmt(tr['mean_chance'])}) in {seconds:.1f} s "
        f"on {dev} -> {out_dir / 'index.html'}"
    )


if __name__ == "__main__":
    app()
