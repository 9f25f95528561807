"""The forward pass that every stage and the served pipeline run: the device, the model's input
(one-hot uint8 maps) and :func:`predict_outputs`, the logits as fp32 arrays (with TTA the mean of
the logits of the first ``views`` of the 8 dihedral views) and, on request, the penultimate
features from the same pass, computed by the served runtime (:mod:`wafer.model.runtime`). The
validation pass during training, the `infer` and `index` stages, `wafer predict` and the demo
all call it, so the logits evaluated are the logits served.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from wafer.core.errors import UsageError
from wafer.model.augment import VIEWS, all_views
from wafer.model.net import one_hot
from wafer.model.runtime import Runtime, to_device

__all__ = ["Outputs", "predict_outputs", "to_device", "model_inputs", "resolve_device"]

DEVICES = "auto, cpu, cuda, cuda:N or mps"


def check_device(name: str, what: str = "--device") -> str:
    """``name`` when it is a device this machine has ('auto' always is), else a one-line
    :class:`UsageError` naming ``what`` (the option or param: ``--device 'tpu9': ...``)."""
    if name == "auto":
        return name
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"{what} {name!r}: not a device name (use {DEVICES})") from None
    if dev.type == "cpu":
        return name
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UsageError(f"{what} {name!r}: no CUDA GPU is available on this machine")
        if dev.index is not None and dev.index >= n:
            raise UsageError(f"{what} {name!r}: this machine has {n} CUDA GPU(s)")
        return name
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError(f"{what} {name!r}: MPS is not available on this machine")
        return name
    raise UsageError(f"{what} {name!r}: not supported (use {DEVICES})")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; anything else is taken as given."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def model_inputs(xb: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 maps ``(B, S, S)`` -> the one-hot model input on ``device``."""
    x = one_hot(xb.to(device, non_blocking=True))
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


@dataclass(frozen=True)
class Outputs:
    logits: np.ndarray  # (N, C) fp32
    features: np.ndarray | None  # (N, D) fp32: the classifier head's input (penultimate layer)


@torch.no_grad()
def predict_outputs(
    model: nn.Module | Runtime,
    x: np.ndarray,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    views: int = 1,
    progress: bool = False,
    features: str | None = None,
) -> Outputs:
    """Logits ``(N, C)`` for uint8 maps ``(N, S, S)``, in fp32 (what is served): the mean of the
    logits of the first ``views`` (:data:`VIEWS`) dihedral views, batched together in one
    forward pass (1 = the map as given, no TTA). ``model`` is a network (run eager on
    ``device``) or a :class:`wafer.model.runtime.Runtime` (``infer.runtime``; its own device).
    With ``features`` also the penultimate-layer features (the input of ``model.fc``) from the
    same forward pass: ``"mean"`` over the views (the head maps the mean feature to the mean
    logits), ``"first"`` those of the map as given (view 0, the same as a pass without TTA).
    With one view both are the one view's."""
    if features not in (None, "mean", "first"):
        raise ValueError(f"features must be None, 'mean' or 'first', not {features!r}")
    if views not in VIEWS:
        raise ValueError(f"views must be one of {VIEWS}, not {views!r}")
    run = model if isinstance(model, Runtime) else Runtime(model, torch.device(device))
    step = max(1, batch_size // views)
    out, feats = [], []
    for i in tqdm(range(0, len(x), step), desc="infer", disable=not progress, unit="batch"):
        # a writable copy of one batch: x may be a read-only memory map (shards, predict's
        # input), which torch would share and warn about, and only a batch need be in memory
        xb = torch.from_numpy(np.array(x[i : i + step], copy=True)).to(run.device)
        if views > 1:
            xb = all_views(xb, views)
        logits, f = run(model_inputs(xb, run.device))
        out.append(logits.view(views, -1, logits.shape[-1]).mean(dim=0).cpu())
        if features:
            f = f.view(views, -1, f.shape[-1])
            feats.append((f.mean(dim=0) if features == "mean" else f[0]).cpu())
    if not out:
        return Outputs(np.zeros((0, 0), dtype=np.float32), None)
    return Outputs(torch.cat(out).numpy(), torch.cat(feats).numpy() if features else None)
