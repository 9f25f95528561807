"""Resize ragged die-resolution maps to a fixed square size, stored as uint8 {0, 1, 2}.

Resize rule ("block max"): output row ``i`` of ``S`` covers the input rows
``[floor(i*H/S), floor((i+1)*H/S))`` (at least one row), and likewise for columns; the output
cell takes the **maximum** of its block, with the ordering outside (0) < pass (1) < fail (2).

* Upsampling (H <= S, most WM-811K maps at 64 px) makes every block a single input cell, so the
  rule is plain nearest-neighbour (the same cells as ``torch.nn.functional.interpolate(...,
  mode="nearest")``): no value is invented, none is blended.
* Downsampling (H > S) makes the blocks partition the input, so every input die falls in
  exactly one output cell and a failing die is never dropped: a 1-die-wide scratch survives at
  any size, where plain nearest-neighbour would sample between its dies and erase it. The price
  is that failing regions grow by up to one output cell, which is the right bias for defects.

The work is vectorised: maps are grouped by shape and each group is reduced with two
``np.maximum.reduceat`` calls.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def block_starts(n_in: int, n_out: int) -> np.ndarray:
    """First input index of each of the n_out blocks: floor(i * n_in / n_out)."""
    return (np.arange(n_out, dtype=np.int64) * n_in) // n_out


def resize_stack(stack: np.ndarray, size: int) -> np.ndarray:
    """Block-max resize of a (n, H, W) uint8 stack to (n, size, size)."""
    _, h, w = stack.shape
    out = np.maximum.reduceat(stack, block_starts(h, size), axis=1)
    return np.maximum.reduceat(out, block_starts(w, size), axis=2)


def resize_map(m: np.ndarray, size: int) -> np.ndarray:
    return resize_stack(m[None], size)[0]


def resize_maps(maps: list[np.ndarray], size: int) -> np.ndarray:
    """Die maps of any shapes -> one uint8 ``(N, size, size)`` array (the served model input,
    resized as the training shards)."""
    out = np.empty((len(maps), size, size), dtype=np.uint8)
    for i, m in enumerate(maps):
        out[i] = resize_map(np.asarray(m, dtype=np.uint8), size)
    return out


def resize_ragged(
    flat: np.ndarray,
    shapes: np.ndarray,
    offsets: np.ndarray,
    rows: np.ndarray,
    size: int,
    chunk: int = 2048,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (positions in ``rows``, resized maps), one shape group (at most ``chunk`` maps)
    at a time."""
    sel = shapes[rows]
    keys = sel[:, 0].astype(np.int64) * 100_000 + sel[:, 1]
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.diff(keys[order])) + 1
    groups = np.split(order, bounds)
    for pos in (g[k : k + chunk] for g in groups for k in range(0, len(g), chunk)):
        h, w = (int(v) for v in sel[pos[0]])
        starts = offsets[rows[pos]]
        idx = starts[:, None] + np.arange(h * w, dtype=np.int64)[None, :]
        stack = flat[idx].reshape(len(pos), h, w)
        yield pos, resize_stack(stack, size)


def resize_rows(
    flat: np.ndarray, shapes: np.ndarray, offsets: np.ndarray, rows: np.ndarray, size: int
) -> np.ndarray:
    """Resize the maps ``rows`` of a packed buffer into one (len(rows), size, size) array."""
    out = np.empty((len(rows), size, size), dtype=np.uint8)
    for pos, resized in resize_ragged(flat, shapes, offsets, rows, size):
        out[pos] = resized
    return out
