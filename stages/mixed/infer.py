"""Stage `infer` of the mixed-type pipeline: the served logits (8 per map; the mean over the
first `infer.views` dihedral views, fp32) on validation and test, through the one forward pass
every tool serves (wafer.model.forward.predict_outputs), with the model's SHA-256
(wafer.data.files.Logits)."""

from pathlib import Path

import typer

from wafer.config.params import load_section
from wafer.config.sections import InferParams
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import sha256_file
from wafer.data.files import EVAL_SPLITS, Logits, load_shard
from wafer.mixed.labels import MIXED_LABELS
from wafer.model.checkpoint import load_model
from wafer.model.forward import predict_outputs, resolve_device
from wafer.model.runtime import make_runtime

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    model: Path = typer.Option(..., "--model"),
    shards: Path = typer.Option(..., "--shards"),
    out: Path = typer.Option(..., "--out"),
) -> None:
    p = load_section(params, InferParams)
    dev = resolve_device(p.device)
    try:
        net, ckpt = load_model(model, dev, MIXED_LABELS)
    except ValueError as exc:
        raise WaferInputError(model, str(exc)) from None
    run = make_runtime(net, dev, p.runtime)
    logits, y, rows = {}, {}, {}
    for split in EVAL_SPLITS:
        shard = load_shard(shards, split)
        if shard.size != ckpt.input_size:
            raise WaferInputError(
                shards, f"maps are {shard.size}px but the model was trained at {ckpt.input_size}px"
            )
        logits[split] = predict_outputs(run, shard.x, p.batch_size, views=p.views).logits
        y[split], rows[split] = shard.y, shard.rows
    Logits(p.views, p.runtime, sha256_file(model), logits, y, rows).save(out)
    print(
        f"infer: val {len(y['val'])}, test {len(y['test'])} maps ({p.views} TTA views, {p.runtime})"
    )


if __name__ == "__main__":
    app()
