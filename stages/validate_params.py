"""Stage `validate_params`: check every value of params.yaml against the rule table
(wafer.config.sections), then what can be known of the values before any stage runs.

It is the pipeline's first stage (`synthesize` and `ingest` depend on its marker file), so a bad
value (`dvc exp run -S train.loss=foo`) stops `dvc repro` / `dvc exp run` here, with one line
naming the parameter, before DVC deletes any other stage's outputs. Beyond the table (values
that are well formed but cannot work here), with one line each:

* every `device` is one this machine has (`train.device=cuda` on a CPU machine);
* `infer.runtime` can run here (its packages installed; `onnx` on the CPU), and so can
  `index.search`;
* `gradcam.layer` names a module of the network the `train` section builds;
* `ingest.input` is a readable file, and a pickle only with `ingest.trust_pickle` (unless it
  is the synthesize stage's output, which does not exist before that stage runs).

The marker's content is the constant text "ok": a valid change of params does not change it,
so nothing downstream reruns because of this stage.
"""

from pathlib import Path

import typer

from wafer.config.params import load_params, section_values, validate_all
from wafer.config.rules import ParamError
from wafer.config.sections import (
    GradcamParams,
    IndexParams,
    InferParams,
    IngestParams,
    ShardParams,
    TrainParams,
)
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import write_text
from wafer.data.ingest import check_input
from wafer.explain.cam import resolve_layer_name, target_layer
from wafer.model.forward import check_device, resolve_device
from wafer.model.net import ModelConfig, build_model
from wafer.model.runtime import check_runtime
from wafer.serving.ann import check_search

app = typer.Typer(add_completion=False)


def preflight(params: dict, synthetic: Path) -> None:
    """What the table cannot see (module docstring); one line naming the param."""
    for section in (TrainParams, InferParams, IndexParams, GradcamParams):
        check_device(section_values(params, section).device, f"{section.SECTION}.device")
    infer = section_values(params, InferParams)
    check_runtime(infer.runtime, resolve_device(infer.device))
    check_search(section_values(params, IndexParams).search)
    train, cam = section_values(params, TrainParams), section_values(params, GradcamParams)
    net = build_model(
        ModelConfig(stem=train.stem, cbam=train.cbam, cbam_reduction=train.cbam_reduction)
    )
    size = section_values(params, ShardParams).input_px
    try:
        target_layer(net, resolve_layer_name(cam.layer, train.stem, size))
    except ValueError as exc:
        raise ParamError(f"gradcam.layer: {exc}") from None
    ingest = section_values(params, IngestParams)
    if Path(ingest.input) != synthetic:
        try:
            check_input(ingest.input, ingest.trust_pickle)
        except WaferInputError as exc:  # "<file>: <reason>"
            raise ParamError(f"ingest.input: {exc}") from None


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="the params file"),
    synthetic: Path = typer.Option(
        ..., "--synthetic", help="the synthesize stage's output (made later, not checked)"
    ),
    out: Path = typer.Option(..., "--out", help="marker written when valid"),
) -> None:
    values = load_params(params)
    validate_all(values)
    preflight(values, synthetic)
    write_text(out, "ok\n")
    print(f"validate_params: {params} is valid")


if __name__ == "__main__":
    app()
