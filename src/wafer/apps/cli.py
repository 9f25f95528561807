"""``wafer``: command-line tools on the trained pipeline.

    wafer predict maps/ wafers.npz --out preds.csv             # CSV (or .json) of predictions
    wafer predict stack.npy --out preds.json --cam-dir cams/   # + a Grad-CAM PNG per map
    wafer convert LSWMD.pkl --trust-pickle -o LSWMD.npz        # trusted pickle -> safe .npz

`predict` serves exactly the pipeline that the `evaluate` stage reported on
(:class:`wafer.serving.predictor.Predictor`: block-max resize, TTA logits, temperature, per-class
thresholds, operating point), loaded from the pipeline's outputs: the paths given, else
dvc.yaml's ``paths`` in the current directory (the checkout's); Grad-CAM method and layer from
params.yaml's ``gradcam`` section unless given.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import typer
from tqdm import tqdm

from wafer.apps.options import cam_settings, check_output_dir, check_output_file, served_files
from wafer.config.rules import OBJECTIVES
from wafer.core.classes import CLASS_NAMES, MIXED_LABELS
from wafer.core.errors import UsageError, WaferInputError, one_line_errors, write_failure
from wafer.core.io import atomic_path, csv_writer, json_text, remove_stale_temps
from wafer.data.maprules import MAX_SIDE

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="WM-811K wafer-map defect classifier: serve the trained DVC pipeline.",
)

CSV_COLUMNS = [
    "source",
    "predicted",
    "confidence",
    "defect",
    "tau",
    "operating_point",
    "top3",
    *[f"p_{c}" for c in CLASS_NAMES],
    "prediction_set",
    "novelty_score",
    "novel",
    "neighbours",
    "error",
    "warning",
]


def safe_name(source: str, index: int) -> str:
    """A file name for the CAM PNG of item ``index``: ``00012_file.pkl_row_12.png``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source)
    return f"{index:05d}_{stem.strip('_')[:80]}.png"


def format_top3(top3: list[tuple[str, float]]) -> str:
    """``[('Center', 0.9), ...]`` -> ``'Center:0.900000;...'`` (the CSV cell)."""
    return ";".join(f"{c}:{p:.6f}" for c, p in top3)


@app.callback()
def main() -> None:
    """WM-811K wafer-map defect classifier: serve the trained DVC pipeline
    (its model, calibration and thresholds: dvc.yaml's artifacts)."""


# the mixed-type model's rows (wafer.mixed.predictor.MixedPredictor)
MIXED_CSV_COLUMNS = [
    "source",
    "pattern_code",
    "labels",
    "operating_point",
    *[f"p_{c}" for c in MIXED_LABELS],
    "error",
    "warning",
]


def _mixed_csv_row(r: dict) -> list[str]:
    if r.get("error"):
        return [r["source"], *[""] * (len(MIXED_CSV_COLUMNS) - 3), r["error"], ""]
    return [
        r["source"],
        r["pattern_code"],
        ";".join(r["labels"]),
        r["operating_point"],
        *[f"{r['probabilities'][c]:.6f}" for c in MIXED_LABELS],
        "",
        r.get("warning") or "",
    ]


def _csv_row(r: dict) -> list[str]:
    if r.get("error"):
        return [r["source"], *[""] * (len(CSV_COLUMNS) - 3), r["error"], ""]
    return [
        r["source"],
        r["predicted"],
        f"{r['confidence']:.6f}",
        int(r["defect"]),
        f"{r['tau']:.6f}",
        r["operating_point"],
        format_top3(r["top3"]),
        *[f"{r['probabilities'][c]:.6f}" for c in CLASS_NAMES],
        ";".join(r.get("prediction_set", [])),
        f"{r['novelty_score']:.6g}" if "novelty_score" in r else "",
        int(r["novel"]) if "novel" in r else "",
        " ".join(f"{n['row']}:{n['label']}:{n['distance']:.4f}" for n in r.get("neighbours", [])),
        "",
        r.get("warning") or "",
    ]


def _json_row(r: dict) -> dict:
    if r.get("error"):
        return {"source": r["source"], "error": r["error"]}
    r = dict(r)
    if "top3" in r:
        r["top3"] = [{"class": c, "p": p} for c, p in r["top3"]]
    r["error"] = None
    r.setdefault("warning", None)
    return r


class RowWriter:
    """Prediction rows written one at a time to an open text file: CSV (header, one line per
    row) or a JSON array formatted as :func:`wafer.core.io.write_json` formats it."""

    def __init__(self, fh, suffix: str, mixed: bool = False):
        self.fh, self.json, self.n = fh, suffix == ".json", 0
        self.row = _mixed_csv_row if mixed else _csv_row
        if self.json:
            fh.write("[")
        else:
            self.csv = csv_writer(fh)
            self.csv.writerow(MIXED_CSV_COLUMNS if mixed else CSV_COLUMNS)

    def write(self, row: dict) -> None:
        if self.json:
            text = json_text(_json_row(row))
            self.fh.write(("," if self.n else "") + "\n  " + text.replace("\n", "\n  "))
        else:
            self.csv.writerow(self.row(row))
        self.n += 1

    def close(self) -> None:
        if self.json:
            self.fh.write("\n]\n" if self.n else "]\n")


class _NothingPredicted(Exception):
    pass


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
        help="temperature + TTA flag (calibrate stage) [default: dvc.yaml's paths.calibration]",
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
    batch_size: int = typer.Option(256, min=1, help="maps per forward pass (x8 views with TTA)"),
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
    cam_method, cam_layer = cam_settings(cam_method, cam_layer, needed=cam_dir is not None)
    if cam_method is not None and cam_method not in METHODS:
        raise typer.BadParameter(f"--cam-method must be one of {METHODS}")
    device = check_device(device)
    mixed = _task(model, pipeline) == "mixed"
    if mixed:
        predictor = _mixed_predictor(
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
        predictor = _predictor(
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


def _task(model: Path | None, pipeline: Path) -> str:
    """Which task the served model is for (wafer.model.checkpoint.TASKS), read from its class
    names; a file that cannot be read is left to the predictor's own one-line error."""
    from wafer.model.checkpoint import Checkpoint

    try:
        path = model if model is not None else served_files({"model": None}, pipeline)[0]["model"]
        return Checkpoint.load(path, class_names=None).task
    except (UsageError, ValueError, OSError):
        return "wm811k"


def _mixed_predictor(
    pipeline, model, calibration, thresholds, operating_point, device, unsupported
):
    from wafer.mixed.predictor import MixedPredictor

    for option, value in unsupported.items():
        if value:
            raise UsageError(f"{option}: not available for a mixed-type model")
    files, _ = served_files(
        {"model": model, "calibration": calibration, "thresholds": thresholds}, pipeline
    )
    return MixedPredictor.load(**files, device=device, objective=operating_point)


def _predictor(
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
):
    from wafer.serving.predictor import Predictor

    files, why = served_files(
        {
            "model": model,
            "calibration": calibration,
            "thresholds": thresholds,
            "index": index,
            "novelty": novelty,
        },
        pipeline,
    )
    if why:
        if neighbours:
            raise typer.BadParameter(f"--neighbours needs the index: {why}")
        print(f"warning: {why}", file=sys.stderr)
    if operating_point is not None and operating_point not in OBJECTIVES:
        raise UsageError(
            f"--operating-point {operating_point!r}: not one of {', '.join(OBJECTIVES)}"
        )
    predictor = Predictor.load(
        **files,
        device=device,
        cam_layer=cam_layer,
        cam_method=cam_method,
        objective=operating_point,
    )
    if cam_dir is not None:
        from wafer.explain.cam import resolve_layer_name, target_layer

        ckpt = predictor.checkpoint
        try:
            target_layer(
                predictor.model, resolve_layer_name(cam_layer, ckpt.config.stem, ckpt.input_size)
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return predictor


def run_predict(
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
) -> None:
    """Read, predict and write every map of ``inputs`` with ``predictor`` (either task's)."""
    from wafer.explain.report import served_cam_png
    from wafer.inputs.read import read_maps
    from wafer.serving.stream import predict_stream

    t0 = time.perf_counter()
    n = {"error": 0, "warning": 0, "skipped": 0, "good": 0, "cam": 0}

    def skipped(path: Path, reason: str) -> None:
        n["skipped"] += 1
        print(f"skipped: {path}: {reason}", file=sys.stderr)

    def reported(items):
        """The items as read, each error and warning reported on stderr when it is read (the
        first error stops the run with --fail-fast)."""
        for item in items:
            if item.error is not None:
                n["error"] += 1
                print(f"error: {item.error}", file=sys.stderr)
                if fail_fast:
                    raise SystemExit(2)
            elif item.warning:
                n["warning"] += 1
                print(f"warning: {item.source}: {item.warning}", file=sys.stderr)
            yield item

    # Streamed: the inputs are read lazily (read_maps), predicted a chunk at a time
    # (predict_stream) and written row by row into a temporary file that replaces --out only at
    # the end, so memory stays bounded however many maps there are.
    sources = [
        read_maps(p, trust_pickle=trust_pickle, max_side=max_side, on_skip=skipped) for p in inputs
    ]
    items = reported(it for src in sources for it in src)
    bar = tqdm(
        total=sum(len(s) for s in sources),
        desc="predict",
        unit="map",
        disable=not progress,
        file=sys.stderr,
    )
    for stale in remove_stale_temps(out):  # left by a run that was killed
        print(f"removed {stale}, left by an interrupted run", file=sys.stderr)
    try:
        with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
            writer = RowWriter(fh, suffix, mixed)
            rows = predict_stream(predictor, items, batch_size, neighbours)
            for k, (item, row) in enumerate(rows):
                writer.write(row)
                bar.update(1)
                if item.error is not None:
                    continue
                n["good"] += 1
                if cam_dir is not None:
                    target = cam_dir / safe_name(item.source, k)
                    try:
                        with atomic_path(target) as png:
                            png.write_bytes(served_cam_png(predictor, item.map, row))
                    except OSError as exc:
                        raise write_failure(target, exc) from None
                    n["cam"] += 1
            writer.close()
            if n["good"] == 0:  # nothing predicted: the temporary file is discarded
                raise _NothingPredicted
    except _NothingPredicted:
        bar.close()
        print(
            f"error: no map was predicted ({n['error']} error(s), {n['skipped']} skipped "
            f"file(s)); {out} not written",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    except OSError as exc:
        raise write_failure(out, exc) from None
    bar.close()
    seconds = time.perf_counter() - t0
    rate = n["good"] / seconds if seconds > 0 else float("inf")
    cams = f", {n['cam']} Grad-CAM PNGs in {cam_dir}" if n["cam"] else ""
    skips = f", {n['skipped']} skipped file(s)" if n["skipped"] else ""
    print(
        f"predict: {n['good']} maps in {seconds:.2f} s ({rate:.1f} maps/s, reading included) "
        f"on {predictor.device}, {n['error']} error(s), {n['warning']} warning(s){skips} -> "
        f"{out}{cams}"
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
