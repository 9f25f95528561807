"""The forward pass that every stage and the served pipeline run: the device, the model's input
(one-hot uint8 maps) and :func:`predict_outputs`, the logits in fp32 on every device (with TTA
the mean of the logits of the 8 dihedral views) and, on request, the penultimate features from
the same pass. The validation pass during training, the `infer` and `index` stages,
`wafer predict` and the demo all call it, so the logits evaluated are the logits served.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from wafer.core.errors import UsageError
from wafer.model.augment import N_VIEWS, all_views
from wafer.model.net import one_hot

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


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on ``device`` (channels-last on CUDA)."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


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
    model: nn.Module,
    x: np.ndarray,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    tta: bool = False,
    progress: bool = False,
    features: str | None = None,
) -> Outputs:
    """Logits ``(N, C)`` for uint8 maps ``(N, S, S)``, in fp32 (what is served); with ``tta`` the
    mean of the logits of the 8 dihedral views (batched together in one forward pass). With
    ``features`` also the penultimate-layer features (the input
    of ``model.fc``) from the same forward pass: ``"mean"`` over the 8 views when ``tta`` (the
    head maps the mean feature to the mean logits), ``"first"`` those of the map as given
    (view 0, the same as a pass without TTA). Without ``tta`` both are the one view's."""
    if features not in (None, "mean", "first"):
        raise ValueError(f"features must be None, 'mean' or 'first', not {features!r}")
    device = torch.device(device)
    model = to_device(model, device).eval()
    xt = torch.from_numpy(np.ascontiguousarray(x))
    step = max(1, batch_size // N_VIEWS) if tta else batch_size
    out, feats, seen = [], [], []
    hook = (
        model.fc.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].float()))
        if features
        else None
    )
    try:
        for i in tqdm(range(0, len(xt), step), desc="infer", disable=not progress, unit="batch"):
            xb = xt[i : i + step].to(device)
            if tta:
                xb = all_views(xb)
            logits = model(model_inputs(xb, device)).float()  # fp32 on every device: what is served
            if tta:
                logits = logits.view(N_VIEWS, -1, logits.shape[-1]).mean(dim=0)
            out.append(logits.cpu())
            if features:
                f = seen.pop()
                if tta:
                    f = f.view(N_VIEWS, -1, f.shape[-1])
                    f = f.mean(dim=0) if features == "mean" else f[0]
                feats.append(f.cpu())
    finally:
        if hook is not None:
            hook.remove()
    if not out:
        return Outputs(np.zeros((0, 0), dtype=np.float32), None)
    return Outputs(torch.cat(out).numpy(), torch.cat(feats).numpy() if features else None)
