"""The 8 symmetries of the square (dihedral group D4) for augmentation and TTA.

View ``k`` (0..7) is ``rot90`` by ``k % 4`` quarter turns, then a left-right flip if ``k >= 4``.
No crops: they would cut away the edge patterns (Edge-Ring, Edge-Loc) that define classes.
Works on any tensor whose last two dims are the square map (uint8 or float, any device).
"""

from __future__ import annotations

import torch

N_VIEWS = 8


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


def all_views(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (8 * B, ...): the 8 views stacked view-major (view k is rows k*B:(k+1)*B)."""
    return torch.cat([dihedral(x, k) for k in range(N_VIEWS)], dim=0)
