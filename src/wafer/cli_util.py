"""Shared bits for the command-line tools and stage scripts: one-line errors, never a
traceback, for bad input files, bad options / params and failed writes."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wafer.io import UsageError, WaferInputError


def served_files(
    given: dict[str, str | os.PathLike | None], repo: str | os.PathLike = "."
) -> tuple[dict[str, Path | None], str]:
    """The files to serve: each of ``given`` (model, calibration, thresholds, index, novelty,
    and any other name of dvc.yaml's ``paths``), else the pipeline's own (dvc.yaml's ``paths``
    in ``repo``). The index and novelty.json are optional: when neither is given and the
    pipeline's index does not exist, both are None and the note says why (serve without
    novelty; :meth:`wafer.serve.Predictor.load` refuses given files that are missing)."""
    from wafer.pipeline import pipeline_paths

    files = {k: None if v is None else Path(v) for k, v in given.items()}
    if all(v is not None for v in files.values()):
        return files, ""
    try:
        pipeline, no_pipeline = pipeline_paths(repo), ""
    except UsageError as exc:
        pipeline, no_pipeline = {}, str(exc)

    def default(k: str) -> Path:
        if k not in pipeline:
            why = no_pipeline or f"dvc.yaml has no paths.{k}"
            raise UsageError(f"--{k.replace('_', '-')} not given, and {why}")
        return pipeline[k]

    optional = ("index", "novelty")
    for k in files:
        if files[k] is None and k not in optional:
            files[k] = default(k)
    if "index" in files and files["index"] is None and files["novelty"] is None:
        index = pipeline.get("index")
        if index is None or not index.exists():
            where = f"no {index}" if index is not None else f"no index ({no_pipeline})"
            why = f"{where} (index stage): no novelty score and no similar historical maps"
            return files, why + ("; `dvc repro` builds it" if index is not None else "")
    for k in optional:
        if k in files and files[k] is None:
            files[k] = default(k)
    return files, ""


def cam_settings(
    method: str | None, layer: str | None, needed: bool
) -> tuple[str | None, str | None]:
    """Grad-CAM method and layer: as given, else params.yaml's ``gradcam`` section (the
    checkout's, in the current directory). Without params.yaml they stay None (no CAM) unless
    ``needed``, which makes that a one-line error."""
    if method is not None and layer is not None:
        return method, layer
    from wafer.pipeline import pipeline_params

    try:
        gradcam = pipeline_params("gradcam")
    except UsageError as exc:
        if needed:
            raise UsageError(f"--cam-method/--cam-layer not given, and {exc}") from None
        return method, layer
    return method or gradcam.method, layer or gradcam.layer


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: a :class:`WaferInputError` prints ``error: <file>, row N: <reason>``, a
    :class:`UsageError` (bad option or param, e.g. :class:`wafer.params.ParamError`) prints
    ``error: <what>: <reason>``; both exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (WaferInputError, UsageError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


DEVICES = "auto, cpu, cuda, cuda:N or mps"


def check_device(name: str) -> str:
    """``name`` when it is a device this machine has ('auto' always is), else a one-line
    :class:`UsageError` (``--device 'tpu9': ...``)."""
    if name == "auto":
        return name
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device {name!r}: not a device name (use {DEVICES})") from None
    if dev.type == "cpu":
        return name
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UsageError(f"--device {name!r}: no CUDA GPU is available on this machine")
        if dev.index is not None and dev.index >= n:
            raise UsageError(f"--device {name!r}: this machine has {n} CUDA GPU(s)")
        return name
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError(f"--device {name!r}: MPS is not available on this machine")
        return name
    raise UsageError(f"--device {name!r}: not supported (use {DEVICES})")


def _existing_ancestor_is_a_dir(path: Path, option: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option} {path}: {parent} is not a folder")
            return


def check_output_file(path: Path, option: str = "--out") -> None:
    """Refuse, before any work, an output file path that is a folder or lies below a file."""
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file name")
    _existing_ancestor_is_a_dir(path, option)


def check_output_dir(path: Path, option: str) -> None:
    """Refuse, before any work, an output folder path that is a file or lies below a file."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder")
    _existing_ancestor_is_a_dir(path, option)
