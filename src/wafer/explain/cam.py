"""Grad-CAM and Grad-CAM++ class activation maps, and how well they localise a defect.

CAMs (batched: one forward and one ``torch.autograd.grad`` per batch)
    A **forward hook** captures the target layer's activations ``A`` ``(B, K, h, w)``; the score
    is the sum over the batch of each sample's target-class logit ``S_c``, and
    ``g = dS/dA = torch.autograd.grad(score, A)``. Samples do not interact in eval mode, so
    ``g[b]`` is the gradient of sample b's own logit. Backward hooks are not used: they break on
    ResNet's in-place residual add (``out += identity``). The hook hands the rest of the network
    a clone of ``A``, so an in-place op after the hooked module (the residual add after ``bn2``,
    an in-place ReLU) cannot overwrite the captured activations.

    * Grad-CAM (Selvaraju et al. 2017): ``w_k = mean_ab g_kab``; ``cam = relu(sum_k w_k A_k)``.
    * Grad-CAM++ (Chattopadhay et al. 2018, eq. 19)::

          alpha_kab = g_kab^2 / (2 g_kab^2 + sum_ij A_kij * g_kab^3)      (0/0 -> 0)
          w_k       = sum_ab alpha_kab * relu(g_kab)
          cam       = relu(sum_k w_k A_k)

      The paper scores with ``Y = exp(S_c)``. For a piecewise-linear network (ReLU, max-pool,
      batch norm in eval mode: second derivatives of ``S_c`` vanish) the n-th derivative of
      ``Y`` is ``exp(S_c) g^n``, so ``exp(S_c)`` cancels in alpha and only scales ``w`` (and the
      CAM) by a positive per-sample factor, which we drop: the powers of ``g`` above *are* the
      exponential-score variant, up to that scale. CAMs here are raw (unnormalised) anyway.

Target layer
    :func:`target_layer` resolves a dotted module name (``model.get_submodule``). The default
    is ``"auto"`` (:func:`auto_layer`: the deepest ResNet stage whose output still has 7 x 7
    cells, ``layer4`` at 224 px). ``"layerN"`` is the output of ResNet stage N; with CBAM (see
    :mod:`wafer.model.net`) it is the :class:`~wafer.model.net.StageWithCBAM`, i.e. the output
    **after** CBAM's channel and spatial attention, and ``"layerN.stage"`` is the plain stage
    **before** CBAM.

Localisation (per map, on the map's own die grid)
    :func:`upsample_to_grid` brings the ``h x w`` CAM to the die grid ``H x W`` (bilinear,
    ``align_corners=False``: the CAM cells' centres land where the block-max shard resize of
    :mod:`wafer.data.shard` took them from). Given a bool ``region`` (the synthetic pattern mask, or
    the failing dies ``m == 2`` on real data) and ``inside = m > 0`` (the wafer):

    * :func:`energy_share`: CAM mass on the region / CAM mass on the wafer;
    * :func:`pointing_hit`: whether the CAM's maximum over the wafer dies (first argmax in
      row-major order) lies on the region (the pointing game);
    * :func:`area_share`: the region's share of the wafer dies, the chance level: what a
      uniform CAM scores on the energy share, and the hit rate of a uniformly random pointer.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wafer.config.rules import CAM_METHODS
from wafer.model.net import Ensemble, stage_side

METHODS = CAM_METHODS


def auto_layer(stem: str, input_size: int, min_cells: int = 7) -> str:
    """The deepest ResNet stage whose output still has ``min_cells`` cells per side.

    ``layer4`` at the seed's 224 px (7 x 7); ``layer2`` at 32 px with the compact stem (8 x 8,
    where layer4 would be 2 x 2 and cannot localise). docs/GRADCAM.md has the measurements.
    """
    for stage in (4, 3, 2):
        if stage_side(stem, input_size, stage) >= min_cells:
            return f"layer{stage}"
    return "layer1"


def resolve_layer_name(name: str, stem: str, input_size: int) -> str:
    """``"auto"`` -> :func:`auto_layer` for the checkpoint's stem and input size; else ``name``."""
    return auto_layer(stem, input_size) if name == "auto" else name


def target_layer(model: nn.Module, name: str) -> nn.Module:
    """The module named ``name`` (dotted path, e.g. ``"layer4"``, ``"layer4.stage"``,
    ``"layer3.1.conv2"``). With CBAM, ``"layer4"`` is after CBAM, ``"layer4.stage"`` before.
    For an :class:`~wafer.model.net.Ensemble`, the module of that name in every member (a
    ``ModuleList``, which :func:`compute_cam` takes member by member)."""
    if isinstance(model, Ensemble):
        return nn.ModuleList([target_layer(m, name) for m in model.members])
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ValueError(
            f"no module {name!r} in {type(model).__name__} (top-level modules: {', '.join(names)})"
        ) from None


def activations_and_gradients(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, layer: nn.Module
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward + one ``autograd.grad``: (A, g = d(sum_b logit_b[target_b]) / dA, logits).

    ``A`` and ``g`` are detached ``(B, K, h, w)`` tensors; ``logits`` ``(B, C)`` detached. The
    model is used as it is (call ``.eval()`` first); parameter gradients are neither needed nor
    accumulated. If the layer runs several times in one forward pass, the last call counts.
    """
    captured: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        captured["A"] = output
        return output.clone()  # downstream in-place ops must not overwrite A

    handle = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            # requires_grad on the input keeps A in the graph even with frozen parameters.
            x = x.detach().requires_grad_(True)
            logits = model(x)
            if "A" not in captured:
                raise RuntimeError("the target layer did not run in the forward pass")
            acts = captured["A"]
            score = logits.gather(1, targets.to(logits.device).long().view(-1, 1)).sum()
            (grads,) = torch.autograd.grad(score, acts)
    finally:
        handle.remove()
    return acts.detach(), grads.detach(), logits.detach()


def gradcam_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM channel weights ``(B, K)``: the spatial mean of the gradients."""
    del acts
    return grads.mean(dim=(2, 3))


def gradcam_pp_weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ channel weights ``(B, K)`` (eq. 19 of Chattopadhay et al. 2018).

    ``alpha = g^2 / (2 g^2 + (sum_ab A_ab) g^3)`` per position, 0 where the denominator is 0;
    ``w_k = sum_ab alpha * relu(g)``.
    """
    g2 = grads.pow(2)
    g3 = grads.pow(3)
    denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
    safe = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = torch.where(denom != 0, g2 / safe, torch.zeros_like(denom))
    return (alpha * grads.clamp_min(0)).sum(dim=(2, 3))


def cam_from(acts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``relu(sum_k w_k A_k)``: ``(B, h, w)``."""
    return torch.relu((weights[:, :, None, None] * acts).sum(dim=1))


def compute_cam(
    model: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    layer: nn.Module,
    method: str,
) -> np.ndarray:
    """Raw (unnormalised, non-negative) CAMs ``(B, h, w)`` float32 of classes ``targets`` (B,).

    ``x`` is the float one-hot input ``(B, 3, S, S)`` (:func:`wafer.model.net.one_hot`) on the
    model's device. The model runs in eval mode; afterwards every submodule is back in its own
    previous mode (a model with, say, frozen batch norm in eval mode inside a training model
    stays so).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if isinstance(model, Ensemble):  # the mean of the members' CAMs, each on its own layer
        layers = list(layer) if isinstance(layer, nn.ModuleList) else []
        if len(layers) != len(model.members):
            raise ValueError("an ensemble's layer is target_layer(ensemble, name): one per member")
        cams = [
            compute_cam(m, x, targets, lay, method)
            for m, lay in zip(model.members, layers, strict=True)
        ]
        return np.mean(cams, axis=0).astype(np.float32)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        acts, grads, _ = activations_and_gradients(model, x, targets, layer)
    finally:
        for m, training in modes.items():
            m.training = training
    acts, grads = acts.float(), grads.float()
    fn = gradcam_weights if method == "gradcam" else gradcam_pp_weights
    return cam_from(acts, fn(acts, grads)).cpu().numpy().astype(np.float32)


def upsample_to_grid(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling (``align_corners=False``) of one ``(h, w)`` CAM to the die grid
    ``shape = (H, W)`` of its map, clamped at 0; float32."""
    t = torch.as_tensor(np.asarray(cam, dtype=np.float32))[None, None]
    out = F.interpolate(t, size=tuple(int(s) for s in shape), mode="bilinear", align_corners=False)
    return out[0, 0].clamp_min(0).numpy()


def energy_share(cam: np.ndarray, region: np.ndarray, inside: np.ndarray) -> float:
    """Share of the CAM's mass over the wafer (``inside``) that lies on ``region``; NaN if the
    CAM is zero on the whole wafer."""
    inside = np.asarray(inside, dtype=bool)
    total = float(cam[inside].sum(dtype=np.float64))
    if not total > 0:
        return math.nan
    on = np.asarray(region, dtype=bool) & inside
    return float(cam[on].sum(dtype=np.float64)) / total


def pointing_hit(cam: np.ndarray, region: np.ndarray, inside: np.ndarray | None = None) -> float:
    """Pointing game: 1.0 if the CAM's maximum over the wafer dies (the first argmax in row-major
    order among the dies ``inside``; all cells when ``inside`` is None) lies on ``region``, else
    0.0; NaN if the CAM is zero on the whole wafer (it points nowhere)."""
    cam = np.asarray(cam, dtype=np.float64)
    inside = np.ones(cam.shape, dtype=bool) if inside is None else np.asarray(inside, dtype=bool)
    if not inside.any():
        return math.nan
    masked = np.where(inside, cam, -np.inf)
    flat = int(np.argmax(masked))
    if not masked.flat[flat] > 0:
        return math.nan
    return float(np.asarray(region, dtype=bool).flat[flat])


def area_share(region: np.ndarray, inside: np.ndarray) -> float:
    """Chance level: the share of the wafer dies that lie on ``region``."""
    inside = np.asarray(inside, dtype=bool)
    n = int(inside.sum())
    if n == 0:
        return math.nan
    return float((np.asarray(region, dtype=bool) & inside).sum()) / n
