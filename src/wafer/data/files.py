"""The array files passed between stages, one load/save type each (the paths are dvc.yaml's):

* :class:`Ingested`  -- the `ingest` stage's validated maps and labels (``paths.ingested``)
* :class:`SplitFile` -- the `split` stage's assignment (``paths.split``, .npz)
* :class:`Shard`     -- one split of the `shard` stage's maps (``paths.shards``/{split}_*.npy)
* :class:`Logits`    -- the `infer` stage's served logits on val and test (``paths.logits``)

(:class:`wafer.serving.novelty.FeatureIndex` and the served JSON files of
:mod:`wafer.serving.files` are the others.) Readers use ``allow_pickle=False``; writers are
atomic and byte-reproducible (:func:`wafer.core.io.save_npz`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wafer.core import ragged
from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError
from wafer.core.io import atomic_path, load_npz, save_npz

EVAL_SPLITS = ("val", "test")  # the splits the infer stage scores


@dataclass
class Ingested:
    """The kept rows: maps packed by :mod:`wafer.core.ragged`, labels as class indices."""

    flat: np.ndarray
    shapes: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray  # int8 index into CLASS_NAMES
    source_row: np.ndarray  # int64 position in the input frame
    orig_split: np.ndarray  # str: 'Training' / 'Test' / '' (from trianTestLabel)
    lot: np.ndarray  # str ('' when absent)
    wafer_index: np.ndarray  # float (NaN when absent)
    mask_flat: np.ndarray  # uint8 pattern masks packed like `flat` (synthetic data), else empty
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    first_dropped: dict[str, int] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        names = ["flat", "shapes", "offsets", "labels", "source_row", "orig_split", "lot"]
        return {n: getattr(self, n) for n in names} | {
            "wafer_index": self.wafer_index,
            "mask_flat": self.mask_flat,
        }

    @property
    def has_masks(self) -> bool:
        return len(self.mask_flat) == len(self.flat) and len(self.flat) > 0

    def map(self, i: int) -> np.ndarray:
        return ragged.get(self.flat, self.shapes, self.offsets, i)

    def mask(self, i: int) -> np.ndarray:
        return ragged.get(self.mask_flat, self.shapes, self.offsets, i).astype(bool)

    @classmethod
    def load(cls, path: str | Path) -> Ingested:
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: z[k] for k in z.files})

    def per_class(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(CLASS_NAMES))
        return {name: int(c) for name, c in zip(CLASS_NAMES, counts, strict=True)}


@dataclass
class Shard:
    x: np.ndarray  # uint8 (N, S, S), die states {0, 1, 2}
    y: np.ndarray  # int64 (N,) class index; uint8 (N, 8) multi-hot in the mixed-type pipeline
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
    """Split index (0 train, 1 val, 2 test; wafer.data.split.SPLITS) and group id of every ingested
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


def _json_record(path, z: dict, key: str) -> dict | None:
    """The JSON object stored as the string array ``key`` of a loaded .npz, or None if absent."""
    if key not in z:
        return None
    try:
        record = json.loads(str(z[key]))
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise WaferInputError(path, f"array '{key}' is not a JSON object")
    return record


@dataclass(frozen=True)
class Logits:
    """The served logits (the mean over ``views`` TTA views; 1: the map as given) of the val
    and test maps, with labels and ingested rows, and the SHA-256 of the model that gave them."""

    views: int
    runtime: str  # infer.runtime (wafer.model.runtime) that computed them
    model_sha256: str
    logits: dict[str, np.ndarray]  # split -> (N, C) float32
    y: dict[str, np.ndarray]  # split -> (N,) int64, or (N, 8) multi-hot (mixed-type pipeline)
    rows: dict[str, np.ndarray]  # split -> (N,) int64
    # runtime int8: how its graph was quantised (wafer.model.runtime.Int8.quantization)
    quantization: dict | None = None

    def save(self, path: str | os.PathLike) -> None:
        arrays: dict[str, np.ndarray] = {}
        for split in EVAL_SPLITS:
            arrays |= {
                f"{split}_logits": self.logits[split],
                f"{split}_y": self.y[split],
                f"{split}_rows": self.rows[split],
            }
        if self.quantization is not None:  # absent otherwise: the file is what it was before
            arrays["quantization"] = np.array(json.dumps(self.quantization, sort_keys=True))
        save_npz(
            path,
            views=np.array(self.views),
            runtime=np.array(self.runtime),
            model_sha256=np.array(self.model_sha256),
            **arrays,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> Logits:
        keys = [f"{s}_{k}" for s in EVAL_SPLITS for k in ("logits", "y", "rows")]
        z = load_npz(path, ("views", "runtime", "model_sha256", *keys))
        return cls(
            views=int(z["views"]),
            runtime=str(z["runtime"]),
            model_sha256=str(z["model_sha256"]),
            logits={s: z[f"{s}_logits"] for s in EVAL_SPLITS},
            y={s: z[f"{s}_y"] for s in EVAL_SPLITS},
            rows={s: z[f"{s}_rows"] for s in EVAL_SPLITS},
            quantization=_json_record(path, z, "quantization"),
        )
