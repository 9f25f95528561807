"""Resumable training: the loop's whole state saved after every epoch, so that a training killed
half-way (a session that ends, a machine that restarts, Ctrl-C) continues where it stopped and
ends with the weights and metrics an uninterrupted run gives (bit-identical on the same kind of
CPU).

Opt-in, by the environment: with ``WAFER_RESUME_DIR`` set, :func:`wafer.model.train.fit` writes
``<dir>/train-<key>.pt`` after every epoch (atomic: temp file + rename) and, when that file is
there at the start, loads it and goes on from the next epoch. Nothing a stage declares changes:
resuming does not change what is computed, so it is not a param and dvc.lock does not see it; a
``dvc repro`` / ``dvc exp run`` killed during `train` and started again resumes by itself.

``key`` is a SHA-256 of everything the training depends on: the initial weights (so the
architecture, the seed and a donor), the criterion (its kind and class weights), the training
and validation arrays, every :class:`~wafer.model.train.TrainConfig` field but ``progress``, the
early-stopping score, the process count and the torch version. A state is therefore only ever
resumed by the same training; anything else starts afresh under another key. A state written on
another kind of CPU is resumed with a one-line warning (the run is then not bit-identical to an
uninterrupted one on either machine). The stage deletes the file once its outputs are written.

The file holds the model, optimizer, scheduler and EMA states, the generator that draws the data
order and augmentation, the best weights so far and the history, loaded back with
``torch.load(weights_only=True)``. For a ResNet-18 it is four to five times the checkpoint
(weights, AdamW's two moments, the best weights, the EMA's copy when on): 180-225 MB.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wafer.core.io import atomic_path, json_text

RESUME_ENV = "WAFER_RESUME_DIR"
FORMAT = 1


def resume_dir() -> Path | None:
    """The folder named by ``WAFER_RESUME_DIR``, or None (resuming off)."""
    value = os.environ.get(RESUME_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _update_tensor(h: Any, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous().reshape(-1)
    h.update(f"{t.dtype}{t.numel()}".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def run_key(
    model: nn.Module,
    criterion: nn.Module,
    arrays: Iterable[np.ndarray],
    config: Any,
    score: Callable,
    world: int,
) -> str:
    """The SHA-256 (hex) of one training's inputs (see the module docstring)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        _update_tensor(h, t)
    h.update(repr(criterion).encode())
    for name, t in criterion.state_dict().items():
        h.update(name.encode())
        _update_tensor(h, t)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    cfg = asdict(config) if is_dataclass(config) else dict(config)
    cfg.pop("progress", None)
    h.update(json_text(cfg).encode())
    h.update(f"{score.__module__}.{score.__qualname__}|{world}|{torch.__version__}".encode())
    return h.hexdigest()


def state_file(directory: Path, key: str) -> Path:
    return directory / f"train-{key[:20]}.pt"


def save_state(path: Path, state: dict) -> None:
    """Write the loop's state atomically (the previous epoch's file stays until this one is
    whole)."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "cpu": _cpu(), **state}, tmp)


def load_state(path: Path) -> dict | None:
    """The saved state, or None when there is none. A file that cannot be read (another format,
    a truncated copy) is reported in one line and ignored: training starts afresh."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means: start afresh
        print(f"train: {path}: not resumable ({type(exc).__name__}); starting afresh", flush=True)
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        print(f"train: {path}: another state format; starting afresh", flush=True)
        return None
    if state.get("cpu") != _cpu():
        print(
            f"train: {path} was written on {state.get('cpu')}, this is {_cpu()}: resuming, "
            "but the result will not be bit-identical to an uninterrupted run",
            file=sys.stderr,
            flush=True,
        )
    return state


def _cpu() -> str:
    return torch.backends.cpu.get_cpu_capability()
