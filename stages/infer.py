"""Stage `infer`: the served model's logits on validation and test (wafer.data.files.Logits).

Each map's logits are the mean over its first `infer.views` dihedral views (1 = the map as
given; wafer.model.augment.TTA_ORDER) (mean of logits, not of
probabilities: it keeps one set of logits that temperature scaling then rescales, and it is
the geometric mean of the views' probabilities). Calibration and thresholds are fit on exactly
these validation logits, and the same combination is applied by `wafer predict`. Logits are
computed in fp32 on every device (wafer.model.forward.predict_outputs), as `wafer predict` computes
them. The file records the model's SHA-256, which calibrate and thresholds copy into the served
files
so that `wafer predict` can refuse a set that does not belong together. With `infer.runtime:
int8` the graph's activation ranges are calibrated here on `infer.int8_calibration_maps` training
maps, and the file records them with the quantised graph's SHA-256 (wafer.model.runtime.Int8).
"""

from pathlib import Path

import typer

from wafer.config.params import load_section
from wafer.config.sections import InferParams
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import sha256_file
from wafer.data.files import EVAL_SPLITS, Logits, load_shard
from wafer.model.checkpoint import load_model
from wafer.model.forward import predict_outputs, resolve_device
from wafer.model.runtime import calibration_maps, make_runtime

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section infer)"),
    model: Path = typer.Option(..., "--model"),
    shards: Path = typer.Option(..., "--shards"),
    out: Path = typer.Option(..., "--out"),
) -> None:
    p = load_section(params, InferParams)
    dev = resolve_device(p.device)
    net, ckpt = load_model(model, dev)

    def checked(split: str):
        shard = load_shard(shards, split)
        if shard.size != ckpt.input_size:
            raise WaferInputError(
                shards, f"maps are {shard.size}px but the model was trained at {ckpt.input_size}px"
            )
        return shard

    # int8: activation ranges calibrated on training maps (never validation or test)
    int8 = p.runtime == "int8"
    maps = calibration_maps(checked("train").x, p.int8_calibration_maps) if int8 else None
    run = make_runtime(net, dev, p.runtime, maps=maps)
    logits, y, rows = {}, {}, {}
    for split in EVAL_SPLITS:
        shard = checked(split)
        served = predict_outputs(run, shard.x, p.batch_size, views=p.views, progress=True)
        logits[split] = served.logits
        y[split], rows[split] = shard.y, shard.rows
    Logits(p.views, p.runtime, sha256_file(model), logits, y, rows, run.quantization).save(out)
    print(
        f"infer: val {len(y['val'])}, test {len(y['test'])} maps ({p.views} TTA views, {p.runtime})"
    )


if __name__ == "__main__":
    app()
