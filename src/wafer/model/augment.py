"""The 8 symmetries of the square (dihedral group D4) for augmentation and TTA.

View ``k`` (0..7) is ``rot90`` by ``k % 4`` quarter turns, then a left-right flip if ``k >= 4``.
No crops: they would cut away the edge patterns (Edge-Ring, Edge-Loc) that define classes.
Works on any tensor whose last two dims are the square map (uint8 or float, any device).
"""

from __future__ import annotations

import torch

from wafer.config.rules import TTA_VIEWS

N_VIEWS = 8
# TTA: the view counts served (infer.views) and the order views are taken in, so that the first
# n form a subgroup: 1 the map as given, 2 and its half turn, 4 the four rotations, 8 the group.
VIEWS = TTA_VIEWS
TTA_ORDER = (0, 2, 1, 3, 4, 5, 6, 7)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


def random_dihedral(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply an independently drawn view to each sample of the batch (dim 0)."""
    ks = torch.randint(0, N_VIEWS, (x.shape[0],), generator=generator, device="cpu")
    out = torch.empty_like(x)
    for k in range(N_VIEWS):
        idx = torch.nonzero(ks == k).squeeze(1).to(x.device)
        if idx.numel():
            out[idx] = dihedral(x[idx], k)
    return out


def all_views(x: torch.Tensor, views: int = N_VIEWS) -> torch.Tensor:
    """(B, ...) -> (views * B, ...): the first ``views`` views of :data:`TTA_ORDER` stacked
    view-major (the i-th is rows i*B:(i+1)*B; the first is the map as given)."""
    return torch.cat([dihedral(x, k) for k in TTA_ORDER[:views]], dim=0)
