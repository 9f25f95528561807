"""The array files passed between stages, one load/save type each (the paths are dvc.yaml's):

* :class:`SplitFile` -- the `split` stage's assignment (``paths.split``, .npz)
* :class:`Shard`     -- one split of the `shard` stage's maps (``paths.shards``/{split}_*.npy)
* :class:`Logits`    -- the `infer` stage's served logits on val and test (``paths.logits``)

(:class:`wafer.ingest.Ingested`, :class:`wafer.novelty.FeatureIndex` and the served JSON files
of :mod:`wafer.serve` are the others.) Readers use ``allow_pickle=False``; writers are atomic and
byte-reproducible (:func:`wafer.io.save_npz`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wafer.io import atomic_path, load_npz, save_npz

EVAL_SPLITS = ("val", "test")  # the splits the infer stage scores


@dataclass
class Shard:
    x: np.ndarray  # uint8 (N, S, S), die states {0, 1, 2}
    y: np.ndarray  # int64 (N,) class index
    rows: np.ndarray  # int64 (N,) row of the ingested file

    @property
    def size(self) -> int:
        return int(self.x.shape[-1])

    def save(self, shards_dir: str | Path, split: str) -> None:
        """``{split}_x.npy``, ``{split}_y.npy``, ``{split}_rows.npy`` in ``shards_dir``."""
        for suffix, arr in (("x", self.x), ("y", self.y), ("rows", self.rows)):
            with atomic_path(Path(shards_dir) / f"{split}_{suffix}.npy") as tmp:
                np.save(tmp, arr)


def load_shard(shards_dir: str | Path, split: str, mmap: bool = True) -> Shard:
    d = Path(shards_dir)
    mode = "r" if mmap else None
    return Shard(
        x=np.load(d / f"{split}_x.npy", mmap_mode=mode),
        y=np.load(d / f"{split}_y.npy"),
        rows=np.load(d / f"{split}_rows.npy"),
    )


@dataclass(frozen=True)
class SplitFile:
    """Split index (0 train, 1 val, 2 test; wafer.split.SPLITS) and group id of every ingested
    row, and the classes held out of train and val (``split.holdout``)."""

    split: np.ndarray  # (N,) int
    groups: np.ndarray  # (N,) int
    holdout: tuple[str, ...] = ()

    def save(self, path: str | os.PathLike) -> None:
        extra = {"holdout": np.array(list(self.holdout))} if self.holdout else {}
        save_npz(path, split=self.split, groups=self.groups, **extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SplitFile:
        z = load_npz(path, ("split", "groups"))
        holdout = tuple(str(c) for c in z.get("holdout", []))
        return cls(z["split"], z["groups"], holdout)


@dataclass(frozen=True)
class Logits:
    """The served logits (TTA-combined when ``tta``) of the val and test maps, with labels and
    ingested rows, and the SHA-256 of the model that gave them."""

    tta: bool
    model_sha256: str
    logits: dict[str, np.ndarray]  # split -> (N, C) float32
    y: dict[str, np.ndarray]  # split -> (N,) int64
    rows: dict[str, np.ndarray]  # split -> (N,) int64

    def save(self, path: str | os.PathLike) -> None:
        arrays: dict[str, np.ndarray] = {}
        for split in EVAL_SPLITS:
            arrays |= {
                f"{split}_logits": self.logits[split],
                f"{split}_y": self.y[split],
                f"{split}_rows": self.rows[split],
            }
        save_npz(path, tta=np.array(self.tta), model_sha256=np.array(self.model_sha256), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Logits:
        keys = [f"{s}_{k}" for s in EVAL_SPLITS for k in ("logits", "y", "rows")]
        z = load_npz(path, ("tta", "model_sha256", *keys))
        return cls(
            tta=bool(z["tta"]),
            model_sha256=str(z["model_sha256"]),
            logits={s: z[f"{s}_logits"] for s in EVAL_SPLITS},
            y={s: z[f"{s}_y"] for s in EVAL_SPLITS},
            rows={s: z[f"{s}_rows"] for s in EVAL_SPLITS},
        )
