"""Ragged 2-D uint8 maps packed as one flat buffer + shapes + offsets (compact, no pickle)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pack(maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate 2-D arrays: (flat uint8 buffer, shapes (n, 2) int32, offsets (n+1,) int64)."""
    shapes = np.array([m.shape for m in maps], dtype=np.int32).reshape(-1, 2)
    sizes = shapes[:, 0].astype(np.int64) * shapes[:, 1]
    offsets = np.zeros(len(maps) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    flat = np.empty(int(offsets[-1]), dtype=np.uint8)
    for m, start, end in zip(maps, offsets[:-1], offsets[1:], strict=True):
        flat[start:end] = np.asarray(m, dtype=np.uint8).ravel()
    return flat, shapes, offsets


def get(flat: np.ndarray, shapes: np.ndarray, offsets: np.ndarray, i: int) -> np.ndarray:
    """The i-th map as a 2-D view of the flat buffer."""
    h, w = (int(v) for v in shapes[i])
    return flat[offsets[i] : offsets[i + 1]].reshape(h, w)
