"""What `wafer predict` runs once its options are checked: the served predictor of the task the
model is for (:func:`task_of`: the 9-class :class:`wafer.serving.predictor.Predictor` or the
mixed-type :class:`wafer.mixed.predictor.MixedPredictor`, each from the given files or the
pipeline's own), and :func:`run_predict`, which reads the inputs lazily, predicts them a chunk at
a time and writes the rows into a temporary file that replaces the output only at the end."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import typer
from tqdm import tqdm

from wafer.apps.options import served_files
from wafer.apps.rows import RowWriter
from wafer.config.rules import OBJECTIVES
from wafer.core.errors import UsageError, write_failure
from wafer.core.io import atomic_path, remove_stale_temps


def safe_name(source: str, index: int) -> str:
    """A file name for the CAM PNG of item ``index``: ``00012_file.pkl_row_12.png``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source)
    return f"{index:05d}_{stem.strip('_')[:80]}.png"


class _NothingPredicted(Exception):
    pass


def task_of(model: Path | None, pipeline: Path) -> str:
    """Which task the served model is for (wafer.model.checkpoint.TASKS), read from its class
    names; a file that cannot be read is left to the predictor's own one-line error."""
    from wafer.model.checkpoint import Checkpoint

    try:
        path = model if model is not None else served_files({"model": None}, pipeline)[0]["model"]
        return Checkpoint.load(path, class_names=None, mmap=True).task  # weights not read
    except (UsageError, ValueError, OSError):
        return "wm811k"


def mixed_predictor(pipeline, model, calibration, thresholds, operating_point, device, unsupported):
    from wafer.mixed.predictor import MixedPredictor

    for option, value in unsupported.items():
        if value:
            raise UsageError(f"{option}: not available for a mixed-type model")
    files, _ = served_files(
        {"model": model, "calibration": calibration, "thresholds": thresholds}, pipeline
    )
    return MixedPredictor.load(**files, device=device, objective=operating_point)


def predictor_9class(
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
        f"on {predictor.device} ({predictor.runtime.name}), {n['error']} error(s), "
        f"{n['warning']} warning(s){skips} -> {out}{cams}"
    )
