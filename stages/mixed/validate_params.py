"""Stage `validate_params` of the mixed-type pipeline: every value of its params.yaml against
the rule table (wafer.config.mixed.MIXED_SECTIONS), then what can be known before any stage
runs (every `device` is one this machine has; `gradcam.layer` names a module of the network
`train` builds; `ingest.input` exists, unless it is the synthesize stage's output; a donor
named by `train.init` is there, has the SHA-256 `train.init_sha256` names and the network's
architecture). First
stage: a bad value stops `dvc repro` here, before DVC deletes any other stage's outputs. The
marker's content is constant."""

from pathlib import Path

import typer

from wafer.config.mixed import MIXED_SECTIONS, MixedIngestParams, MixedTrainParams
from wafer.config.params import load_params, section_values, validate_all
from wafer.config.rules import ParamError
from wafer.config.sections import GradcamParams, InferParams, ShardParams
from wafer.core.errors import one_line_errors
from wafer.core.io import write_text
from wafer.explain.cam import resolve_layer_name, target_layer
from wafer.mixed.labels import MIXED_LABELS
from wafer.model.forward import check_device, resolve_device
from wafer.model.net import ModelConfig, build_model
from wafer.model.runtime import check_runtime
from wafer.model.transfer import init_from_donor

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    synthetic: Path = typer.Option(..., "--synthetic", help="the synthesize stage's output"),
    out: Path = typer.Option(..., "--out"),
) -> None:
    values = load_params(params)
    validate_all(values, MIXED_SECTIONS)
    for section in (MixedTrainParams, InferParams, GradcamParams):
        check_device(section_values(values, section).device, f"{section.SECTION}.device")
    infer = section_values(values, InferParams)
    check_runtime(infer.runtime, resolve_device(infer.device))
    if infer.runtime == "int8":  # its served record lives in the 9-class calibration file
        raise ParamError("infer.runtime 'int8': served by the 9-class pipeline only")
    train, cam = section_values(values, MixedTrainParams), section_values(values, GradcamParams)
    net = build_model(
        ModelConfig(
            num_classes=len(MIXED_LABELS),
            stem=train.stem,
            cbam=train.cbam,
            cbam_reduction=train.cbam_reduction,
        )
    )
    size = section_values(values, ShardParams).input_px
    try:
        target_layer(net, resolve_layer_name(cam.layer, train.stem, size))
    except ValueError as exc:
        raise ParamError(f"gradcam.layer: {exc}") from None
    if train.init:
        try:
            init_from_donor(net, train.init, train.init_sha256, MIXED_LABELS)
        except ValueError as exc:
            raise ParamError(str(exc)) from None
    source = Path(section_values(values, MixedIngestParams).input)
    if source != synthetic and not source.is_file():
        raise ParamError(f"ingest.input: {source}: no such file")
    write_text(out, "ok\n")
    print(f"validate_params: {params} is valid")


if __name__ == "__main__":
    app()
