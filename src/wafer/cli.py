"""``wafer``: command-line tools on the trained pipeline.

    wafer predict maps/ wafers.npz --out preds.csv             # CSV (or .json) of predictions
    wafer predict stack.npy --out preds.json --cam-dir cams/   # + a Grad-CAM PNG per map
    wafer convert LSWMD.pkl --out LSWMD.npz                    # trusted pickle -> safe .npz

`predict` serves exactly the pipeline that the `evaluate` stage reported on
(:class:`wafer.predict.Predictor`: block-max resize, TTA logits, temperature, per-class
thresholds, operating point), loaded from the pipeline's outputs by explicit paths.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

import typer
from tqdm import tqdm

from wafer.classes import CLASS_NAMES
from wafer.cli_util import check_device, check_output_dir, check_output_file, one_line_errors
from wafer.io import atomic_path, write_failure, write_json, write_text
from wafer.readers import MAX_SIDE

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
    "error",
    "warning",
]


@app.callback()
def main() -> None:
    """WM-811K wafer-map defect classifier: serve the trained DVC pipeline
    (models/model.pt + models/calibration.json + models/thresholds.json)."""


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        if r.get("error"):
            w.writerow([r["source"], *[""] * (len(CSV_COLUMNS) - 3), r["error"], ""])
            continue
        from wafer.predict import format_top3

        w.writerow(
            [
                r["source"],
                r["predicted"],
                f"{r['confidence']:.6f}",
                int(r["defect"]),
                f"{r['tau']:.6f}",
                r["operating_point"],
                format_top3(r["top3"]),
                *[f"{r['probabilities'][c]:.6f}" for c in CLASS_NAMES],
                "",
                r.get("warning") or "",
            ]
        )
    return buf.getvalue()


def _json_rows(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        if r.get("error"):
            out.append({"source": r["source"], "error": r["error"]})
            continue
        r = dict(r)
        r["top3"] = [{"class": c, "p": p} for c, p in r["top3"]]
        r["error"] = None
        r.setdefault("warning", None)
        out.append(r)
    return out


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
    model: Path = typer.Option(Path("models/model.pt"), help="checkpoint (train stage)"),
    calibration: Path = typer.Option(
        Path("models/calibration.json"), help="temperature + TTA flag (calibrate stage)"
    ),
    thresholds: Path = typer.Option(
        Path("models/thresholds.json"), help="operating point tau + per-class thresholds"
    ),
    cam_dir: Path | None = typer.Option(
        None, help="write a Grad-CAM PNG (map | CAM | overlay) per map into this folder"
    ),
    cam_method: str = typer.Option("gradcam++", help="'gradcam++' or 'gradcam'"),
    cam_layer: str = typer.Option(
        "auto", help="CAM target module (dotted name) or 'auto' (deepest stage with >= 7x7 cells)"
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
) -> None:
    """Predict the defect class of every wafer map in INPUT... with the evaluated pipeline.

    Columns: source, predicted, confidence (calibrated probability of the predicted class),
    defect (1 if P(defect) = 1 - p_none >= tau), tau, top3, p_<class> (calibrated), error
    (not predicted), warning (predicted, but it does not look like a wafer map). The exit
    status is 2 when no map at all could be predicted (the output file is then not written).
    """
    from wafer.cam import METHODS
    from wafer.predict import Predictor, read_maps, safe_name

    # Every option is checked before anything is loaded or computed.
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise typer.BadParameter(f"--out must end in .csv or .json, not {out.name!r}")
    check_output_file(out, "--out")
    if cam_dir is not None:
        check_output_dir(cam_dir, "--cam-dir")
    if cam_method not in METHODS:
        raise typer.BadParameter(f"--cam-method must be one of {METHODS}")
    device = check_device(device)
    predictor = Predictor.load(model, calibration, thresholds, device, cam_layer, cam_method)
    if cam_dir is not None:
        from wafer.cam import resolve_layer_name, target_layer

        p = predictor.payload
        try:
            target_layer(
                predictor.model, resolve_layer_name(cam_layer, p["model_config"], p["input_size"])
            )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    t0 = time.perf_counter()
    items = []
    n_err = n_warn = n_skip = 0

    def skipped(path: Path, reason: str) -> None:
        nonlocal n_skip
        n_skip += 1
        print(f"skipped: {path}: {reason}", file=sys.stderr)

    for path in inputs:
        for item in read_maps(path, trust_pickle=trust_pickle, max_side=max_side, on_skip=skipped):
            if item.error is not None:
                n_err += 1
                print(f"error: {item.error}", file=sys.stderr)
                if fail_fast:
                    raise SystemExit(2)
            elif item.warning:
                n_warn += 1
                print(f"warning: {item.source}: {item.warning}", file=sys.stderr)
            items.append(item)

    good = [i for i, it in enumerate(items) if it.error is None]
    if not good:
        print(
            f"error: no map was predicted ({n_err} error(s), {n_skip} skipped file(s)); "
            f"{out} not written",
            file=sys.stderr,
        )
        raise SystemExit(2)
    rows: list[dict] = [
        {"source": it.source, "error": str(it.error)} if it.error is not None else {}
        for it in items
    ]
    bar = tqdm(total=len(good), desc="predict", unit="map", disable=not progress, file=sys.stderr)
    for k in range(0, len(good), batch_size):
        chunk = good[k : k + batch_size]
        preds = predictor.predict(
            [items[i].map for i in chunk], [items[i].source for i in chunk], batch_size
        )
        for i, r in zip(chunk, preds, strict=True):
            r["warning"] = items[i].warning
            rows[i] = r
        bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - t0

    n_cam = 0
    if cam_dir is not None:
        for i in tqdm(good, desc="grad-cam", unit="map", disable=not progress, file=sys.stderr):
            png = predictor.cam_png(items[i].map, rows[i])
            target = cam_dir / safe_name(items[i].source, i)
            try:
                with atomic_path(target) as tmp:
                    tmp.write_bytes(png)
            except OSError as exc:
                raise write_failure(target, exc) from None
            n_cam += 1

    try:
        if suffix == ".csv":
            write_text(out, _csv_text(rows))
        else:
            write_json(out, _json_rows(rows))
    except OSError as exc:
        raise write_failure(out, exc) from None
    rate = len(good) / seconds if seconds > 0 else float("inf")
    cams = f", {n_cam} Grad-CAM PNGs in {cam_dir}" if n_cam else ""
    skips = f", {n_skip} skipped file(s)" if n_skip else ""
    print(
        f"predict: {len(good)} maps in {seconds:.2f} s ({rate:.1f} maps/s, reading included) "
        f"on {predictor.device}, {n_err} error(s), {n_warn} warning(s){skips} -> {out}{cams}"
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
) -> None:
    """Convert a trusted LSWMD-format pickle, once, into a ragged-maps .npz that runs no code
    when read.

    THIS UNPICKLES INPUT, which runs any code the pickle holds: give it only a file from a
    source you trust (Kaggle's LSWMD.pkl, the project's own synthetic data). The .npz keeps
    every row whose map is valid, labeled or not (one uint8 buffer + shapes + the labels and
    metadata, the original row numbers in source_row); rows with invalid maps are counted and
    left out. `wafer predict` reads it without --trust-pickle, and `ingest.input` accepts it.
    """
    from wafer.ingest import convert_pickle

    if out.suffix.lower() != ".npz":
        raise typer.BadParameter(f"--out must end in .npz, not {out.name!r}")
    check_output_file(out, "--out")
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
