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

# the index stage's outputs, served when present
DEFAULT_INDEX, DEFAULT_NOVELTY = Path("models/index.npz"), Path("models/novelty.json")


def novelty_paths(
    index: str | os.PathLike | None, novelty: str | os.PathLike | None
) -> tuple[Path | None, Path | None, str]:
    """``(index, novelty.json, note)`` to serve: the given paths, else the defaults; when
    neither is given and the default index does not exist, ``(None, None, why)``: serve
    without novelty (:meth:`wafer.predict.Predictor.load` refuses given files that are missing)."""
    if index is None and novelty is None and not DEFAULT_INDEX.exists():
        why = (
            f"no {DEFAULT_INDEX} (index stage): no novelty score and no similar historical "
            "maps; `dvc repro` builds it"
        )
        return None, None, why
    return Path(index or DEFAULT_INDEX), Path(novelty or DEFAULT_NOVELTY), ""


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
