"""Load the per-split shards written by the `shard` stage (uint8 maps, int64 labels, rows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Shard:
    x: np.ndarray  # uint8 (N, S, S), die states {0, 1, 2}
    y: np.ndarray  # int64 (N,) class index
    rows: np.ndarray  # int64 (N,) row of data/ingested.npz

    @property
    def size(self) -> int:
        return int(self.x.shape[-1])


def load_shard(shards_dir: str | Path, split: str, mmap: bool = True) -> Shard:
    d = Path(shards_dir)
    mode = "r" if mmap else None
    return Shard(
        x=np.load(d / f"{split}_x.npy", mmap_mode=mode),
        y=np.load(d / f"{split}_y.npy"),
        rows=np.load(d / f"{split}_rows.npy"),
    )
