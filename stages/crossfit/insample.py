"""Stage `insample` of the cross-fitting pipeline: the served ensemble's own logits on every
training map (wafer.data.crossfit.InsampleFile), through the root's served forward pass
(`infer.runtime`, int8 calibrated as `infer` calibrates it) with `student.insample_views` TTA
views. They are a distillation teacher (`student.teacher: insample`), the only one when the
ensemble's members are seeds (no fold was held out): in-sample, its members trained on these
maps, so they are more confident than out-of-fold logits and no evidence for the label-noise
audit, which reads `oof`. metrics/insample.json has their argmax accuracy and macro-F1 against
the given labels: the gap to metrics/oof.json's is how much the members fit their own maps."""

import time
from pathlib import Path

import typer

from wafer.config.crossfit import StudentParams
from wafer.config.params import load_section
from wafer.config.sections import InferParams
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import sha256_file, write_json, write_timing
from wafer.data.crossfit import InsampleFile
from wafer.data.files import load_shard
from wafer.model.checkpoint import load_model
from wafer.model.forward import predict_outputs, resolve_device
from wafer.model.runtime import calibration_maps, make_runtime
from wafer.report.metrics import macro_f1

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="the root params.yaml (section infer)"),
    crossfit_params: Path = typer.Option(..., "--crossfit-params", help="section student"),
    model: Path = typer.Option(..., "--model", help="the served ensemble's file"),
    shards: Path = typer.Option(..., "--shards", help="the root pipeline's shards"),
    out: Path = typer.Option(..., "--out"),
    metrics: Path = typer.Option(..., "--metrics"),
) -> None:
    p = load_section(params, InferParams)
    views = load_section(crossfit_params, StudentParams).insample_views
    dev = resolve_device(p.device)
    net, ckpt = load_model(model, dev)
    train = load_shard(shards, "train")
    if train.size != ckpt.input_size:
        raise WaferInputError(
            shards, f"maps are {train.size}px but the model was trained at {ckpt.input_size}px"
        )
    maps = calibration_maps(train.x, p.int8_calibration_maps) if p.runtime == "int8" else None
    run = make_runtime(net, dev, p.runtime, maps=maps)
    t0 = time.perf_counter()
    logits = predict_outputs(run, train.x, p.batch_size, views=views, progress=True).logits
    seconds = time.perf_counter() - t0
    InsampleFile(logits, train.y, train.rows, views, p.runtime, sha256_file(model)).save(out)
    pred = logits.argmax(1)
    summary = {
        "maps": int(len(pred)),
        "views": views,
        "runtime": p.runtime,
        "accuracy": round(float((pred == train.y).mean()), 6),
        "macro_f1": round(macro_f1(train.y, pred), 6),
    }
    write_json(metrics, summary)
    write_timing("insample", {"seconds": seconds, "maps_per_s": len(pred) / seconds})
    print(f"insample: {len(pred)} training maps, in-sample macro-F1 {summary['macro_f1']:.4f}")


if __name__ == "__main__":
    app()
