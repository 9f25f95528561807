"""``wafer``: command-line tools on the trained pipeline.

    wafer predict maps/ wafers.npz --out preds.csv             # CSV (or .json) of predictions
    wafer predict stack.npy --out preds.json --cam-dir cams/   # + a Grad-CAM PNG per map
    wafer convert LSWMD.pkl --trust-pickle -o LSWMD.npz        # trusted pickle -> safe .npz

`predict` serves exactly the pipeline that the `evaluate` stage reported on
(:class:`wafer.serving.predictor.Predictor`: block-max resize, TTA logits, temperature, per-class
thresholds, operating point), loaded from the pipeline's outputs: the paths given, else
dvc.yaml's ``paths`` in the current directory (the checkout's), or in ``--pipeline``'s folder
(``pipelines/mixed``: the mixed-type model, :class:`wafer.mixed.predictor.MixedPredictor`);
Grad-CAM method and layer from params.yaml's ``gradcam`` section unless given. The run itself
is :func:`wafer.apps.predicting.run_predict`; the rows it writes, :mod:`wafer.apps.rows`.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from wafer.apps.options import cam_settings, check_output_dir, check_output_file
from wafer.apps.predicting import mixed_predictor, predictor_9class, run_predict, task_of
from wafer.core.errors import UsageError, WaferInputError, one_line_errors, write_failure
from wafer.data.maprules import MAX_SIDE

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="WM-811K wafer-map defect classifier: serve the trained DVC pipeline.",
)


@app.callback()
def main() -> None:
    """WM-811K wafer-map defect classifier: serve the trained DVC pipeline
    (its model, calibration and thresholds: dvc.yaml's artifacts)."""


@app.command()
@one_line_errors
def predict(
    inputs: list[Path] = typer.Argument(
        ...,
        metavar="INPUT",
        help=".npy (2-D map or 3-D stack), .npz (2-D/3-D members, or the ragged maps that "
        "`wafer convert` writes), .png (8-bit grey: 0 outside, 128 pass, 255 fail), a folder of "
        "these, or an LSWMD-format pickle with --trust-pickle",
        show_default=False,
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="predictions file: .csv or .json", show_default=False
    ),
    pipeline: Path = typer.Option(
        Path("."),
        "--pipeline",
        help="the pipeline whose served files are the defaults: its folder (pipelines/mixed "
        "for the mixed-type model); a mixed-type model writes the labels present, the pattern "
        "code and p_<label> per map",
    ),
    model: Path | None = typer.Option(
        None, help="checkpoint (train stage) [default: dvc.yaml's paths.model]", show_default=False
    ),
    calibration: Path | None = typer.Option(
        None,
        help="temperature + TTA views (calibrate stage) [default: dvc.yaml's paths.calibration]",
        show_default=False,
    ),
    thresholds: Path | None = typer.Option(
        None,
        help="operating point tau + per-class thresholds (thresholds stage) [default: "
        "dvc.yaml's paths.thresholds]",
        show_default=False,
    ),
    operating_point: str | None = typer.Option(
        None,
        "--operating-point",
        help="serve this fitted point instead of the file's: cost, macro_f1 or escape_budget "
        "(the screen with a guaranteed escape rate; refused when validation could not give the "
        "guarantee) [default: thresholds.json's objective]",
        show_default=False,
    ),
    cam_dir: Path | None = typer.Option(
        None, help="write a Grad-CAM PNG (map | CAM | overlay) per map into this folder"
    ),
    cam_method: str | None = typer.Option(
        None, help="'gradcam++' or 'gradcam' [default: params.yaml's gradcam.method]"
    ),
    cam_layer: str | None = typer.Option(
        None,
        help="CAM target module (dotted name) or 'auto' (deepest stage with >= 7x7 cells) "
        "[default: params.yaml's gradcam.layer]",
    ),
    batch_size: int = typer.Option(
        256, min=1, help="maps per forward pass (x the served TTA views)"
    ),
    device: str = typer.Option("auto", help="'auto' (cuda, then mps, else cpu), 'cpu', 'cuda'"),
    trust_pickle: bool = typer.Option(
        False,
        "--trust-pickle",
        help="read pickles (.pkl, .pkl.xz, ...), which runs any code they hold: only for files "
        "from a source you trust. Without it a pickle named as INPUT is an error and one in a "
        "folder is skipped; `wafer convert` makes a safe .npz of a trusted pickle once",
    ),
    max_side: int = typer.Option(
        MAX_SIDE,
        "--max-side",
        min=1,
        help="refuse maps larger than this many dies a side, checked from the file header "
        "before decoding (real WM-811K maps are at most 212)",
    ),
    fail_fast: bool = typer.Option(
        False,
        "--fail-fast/--no-fail-fast",
        help="stop at the first bad input with exit status 2 (default: report each bad input "
        "on stderr, list it in the output with an error, go on with the rest)",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="tqdm progress bar"),
    index: Path | None = typer.Option(
        None,
        help="embedding index of the training maps (index stage) [default: dvc.yaml's "
        "paths.index, when present]",
        show_default=False,
    ),
    novelty: Path | None = typer.Option(
        None,
        help="novelty method + threshold (index stage) [default: dvc.yaml's paths.novelty]",
        show_default=False,
    ),
    neighbours: int = typer.Option(
        0,
        "--neighbours",
        "--neighbors",
        min=0,
        help="add the K nearest training maps of each map (ingested row id, label, distance); "
        "at most 100",
    ),
) -> None:
    """Predict the defect class of every wafer map in INPUT... with the evaluated pipeline.

    Columns: source, predicted, confidence (calibrated probability of the predicted class),
    defect (1 if P(defect) = 1 - p_none >= tau), tau, top3, p_<class> (calibrated),
    prediction_set (the classes the map may be, most probable first, ';'-separated: the true
    class is in it with the coverage set on validation, thresholds.set_alpha),
    novelty_score and novel (1: unlike every known pattern at the threshold set on validation;
    blank without the index), neighbours (with --neighbours K: ingested row, label and distance
    of each, nearest first, e.g. 1234:Center:0.12), error (not predicted), warning (predicted,
    but it does not look like a wafer map).
    A mixed-type model (``--pipeline pipelines/mixed``, or its --model) writes instead:
    source, pattern_code (the labels present, e.g. C-EL-S; Normal for none), labels
    (';'-separated), operating_point, p_<label> (calibrated, 8 labels), error, warning.
    The exit status is 2 when no map at all could be predicted (the output file is then not
    written).
    """
    from wafer.explain.cam import METHODS
    from wafer.model.forward import check_device
    from wafer.serving.predictor import MAX_NEIGHBOURS

    # Every option is checked before anything is loaded or computed.
    if neighbours > MAX_NEIGHBOURS:
        raise UsageError(
            f"--neighbours {neighbours}: at most {MAX_NEIGHBOURS} nearest training maps per map"
        )
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise typer.BadParameter(f"--out must end in .csv or .json, not {out.name!r}")
    check_output_file(out, "--out")
    if cam_dir is not None:
        check_output_dir(cam_dir, "--cam-dir")
    cam_method, cam_layer = cam_settings(
        cam_method, cam_layer, needed=cam_dir is not None, repo=pipeline
    )
    if cam_method is not None and cam_method not in METHODS:
        raise typer.BadParameter(f"--cam-method must be one of {METHODS}")
    device = check_device(device)
    mixed = task_of(model, pipeline) == "mixed"
    if mixed:
        predictor = mixed_predictor(
            pipeline,
            model,
            calibration,
            thresholds,
            operating_point,
            device,
            unsupported={
                "--cam-dir": cam_dir,
                "--neighbours": neighbours,
                "--index": index,
                "--novelty": novelty,
            },
        )
    else:
        predictor = predictor_9class(
            pipeline,
            model,
            calibration,
            thresholds,
            index,
            novelty,
            operating_point,
            device,
            cam_dir,
            cam_layer,
            cam_method,
            neighbours,
        )
    run_predict(
        predictor,
        inputs,
        out,
        suffix,
        cam_dir,
        batch_size,
        trust_pickle,
        max_side,
        fail_fast,
        progress,
        neighbours,
        mixed,
    )


@app.command()
@one_line_errors
def convert(
    input: Path = typer.Argument(
        ..., help="a TRUSTED LSWMD-format pickle (.pkl, .pkl.xz/.gz/.bz2/.zip)", show_default=False
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="the ragged-maps .npz to write", show_default=False
    ),
    trust_pickle: bool = typer.Option(
        False,
        "--trust-pickle",
        help="required: confirms that INPUT comes from a source you trust, since reading a "
        "pickle runs any code it holds",
    ),
) -> None:
    """Convert a trusted LSWMD-format pickle, once, into a ragged-maps .npz that runs no code
    when read.

    THIS UNPICKLES INPUT, which runs any code the pickle holds: give it only a file from a
    source you trust (Kaggle's LSWMD.pkl, the project's own synthetic data), and say so with
    --trust-pickle (as for `wafer predict`). The .npz keeps every row whose map is valid,
    labeled or not (one uint8 buffer + shapes + the labels and metadata, the original row
    numbers in source_row); rows with invalid maps are counted and left out. `wafer predict`
    reads it without --trust-pickle, and `ingest.input` accepts it.
    """
    from wafer.data.ingest import convert_pickle
    from wafer.inputs.read import input_kind

    if out.suffix.lower() != ".npz":
        raise typer.BadParameter(f"--out must end in .npz, not {out.name!r}")
    check_output_file(out, "--out")
    if input.is_dir():
        raise WaferInputError(input, "is a folder: convert reads one LSWMD pickle file")
    if not input.exists():
        raise WaferInputError(input, "no such file")
    kind = input_kind(input)
    if kind is not None and kind != "pickle":
        what = {"png": "a PNG image", "npy": "an .npy array", "npz": "an .npz file"}[kind]
        raise WaferInputError(
            input, f"is {what}, which `wafer predict` reads as it is: convert reads pickles only"
        )
    if not trust_pickle:
        raise UsageError(
            f"{input}: converting reads a pickle, which runs any code it holds; give "
            "--trust-pickle if it comes from a source you trust"
        )
    t0 = time.perf_counter()
    try:
        report = convert_pickle(input, out)
    except OSError as exc:
        raise write_failure(out, exc) from None
    for reason, n in report["dropped"].items():
        if n:
            first = report["first_dropped"][reason]
            print(f"dropped {n} row(s) of {input} as {reason} (first: row {first})")
    print(
        f"convert: {report['rows_kept']} of {report['rows_read']} rows "
        f"({report['labeled']} labeled) in {time.perf_counter() - t0:.1f} s -> {out}"
    )


if __name__ == "__main__":
    app()
