"""The mixed-type pipeline's data file, one load/save type: :class:`MixedSet` (the `ingest`
stage's output, ``paths.ingested`` of ``pipelines/mixed/dvc.yaml``), and :func:`read_mixed`,
which reads and checks an input file in MixedWM38's layout (the real
``../shared/data/mixedwm38/mixedwm38-subset.npz`` or the `synthesize` stage's output).

The layout (a plain ``.npz``, read with ``allow_pickle=False``: no code runs):

=============== ======================= ==================================================
array           dtype, shape            meaning
=============== ======================= ==================================================
``maps``        uint8 (N, S, S)         0 = no die, 1 = pass, 2 = fail (as WM-811K)
``labels``      uint8 (N, 8), 0/1       multi-hot over ``label_names``
``label_names`` str (8,)                must be :data:`wafer.mixed.labels.MIXED_LABELS`
``pattern``     str (N,), optional      the file's pattern code; checked against ``labels``
``source``      str (N,), optional      where the map came from
``source_index``int (N,), optional      its row there
``masks``       uint8 (N, S, S), opt.   bit k set where label k's pattern made a die fail
                                        (synthetic maps only: the truth Grad-CAM is scored on)
=============== ======================= ==================================================

A row is invalid when a die value is not 0/1/2, a label is not 0/1, the map has no die on the
wafer, or its ``pattern`` names other labels than its ``labels``: dropped and counted
(``on_invalid: drop``) or the first one stops the stage with file, row and reason (``fail``).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wafer.core.errors import WaferInputError
from wafer.core.io import load_npz, save_npz
from wafer.data.arrays import check_member
from wafer.mixed.labels import MIXED_LABELS, N_LABELS, codes_of, labels_of

REQUIRED = ("maps", "labels", "label_names")
MAX_MEMBER_BYTES = 2**30  # a member decompressing to more is refused (the real file: 52 MB)


@dataclass
class MixedSet:
    """Maps of one side with their multi-hot labels, canonical pattern codes and provenance."""

    maps: np.ndarray  # uint8 (N, S, S)
    labels: np.ndarray  # uint8 (N, 8)
    codes: np.ndarray  # str (N,): wafer.mixed.labels.code_of, parts in label order
    source: np.ndarray  # str (N,)
    source_index: np.ndarray  # int64 (N,): row in the input file's source
    masks: np.ndarray  # uint8 (N, S, S) bit fields, or (0, S, S) when unknown

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def has_masks(self) -> bool:
        return len(self.masks) == len(self.maps) > 0

    def take(self, rows: np.ndarray) -> MixedSet:
        masks = self.masks[rows] if self.has_masks else self.masks
        return MixedSet(
            self.maps[rows],
            self.labels[rows],
            self.codes[rows],
            self.source[rows],
            self.source_index[rows],
            masks,
        )

    def save(self, path: str | os.PathLike) -> None:
        save_npz(
            path,
            maps=self.maps,
            labels=self.labels,
            label_names=np.array(MIXED_LABELS),
            pattern=self.codes,
            source=self.source,
            source_index=self.source_index,
            masks=self.masks,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> MixedSet:
        """A file this type saved (the ingest stage's output; already checked)."""
        z = load_npz(path, (*REQUIRED, "pattern", "source", "source_index", "masks"))
        return cls(z["maps"], z["labels"], z["pattern"], z["source"], z["source_index"], z["masks"])


def _members(path: Path) -> None:
    """Refuse a decompression bomb or an oversized member from the zip directory, before
    anything is decompressed."""
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                where = f"{path} ({info.filename})"
                check_member(info, where)
                if info.file_size > MAX_MEMBER_BYTES:
                    raise WaferInputError(
                        where, f"{info.file_size / 2**20:.0f} MiB, over the 1 GiB cap"
                    )
    except FileNotFoundError:
        raise WaferInputError(path, "no such file") from None
    except zipfile.BadZipFile:
        raise WaferInputError(path, "not a readable .npz (not a zip file)") from None


def _shape_checks(path: Path, z: dict[str, np.ndarray]) -> int:
    maps, labels, names = z["maps"], z["labels"], z["label_names"]
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2] or maps.shape[1] < 8:
        raise WaferInputError(path, f"maps: expected (N, S, S) with S >= 8, found {maps.shape}")
    n = len(maps)
    if labels.shape != (n, N_LABELS):
        raise WaferInputError(
            path, f"labels: expected shape ({n}, {N_LABELS}), found {labels.shape}"
        )
    if tuple(str(v) for v in names) != MIXED_LABELS:
        raise WaferInputError(
            path, f"label_names {[str(v) for v in names]} differ from {list(MIXED_LABELS)}"
        )
    for key in ("pattern", "source", "source_index", "masks"):
        if key in z and len(z[key]) not in (n,) and not (key == "masks" and len(z[key]) == 0):
            raise WaferInputError(path, f"{key}: {len(z[key])} rows, maps has {n}")
    if not np.issubdtype(maps.dtype, np.integer) or not np.issubdtype(labels.dtype, np.integer):
        raise WaferInputError(path, "maps and labels must be integer arrays")
    return n


def row_problems(z: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reason -> bool mask of the rows it makes invalid (module docstring)."""
    maps, labels = z["maps"], z["labels"]
    n = len(maps)
    flat = maps.reshape(n, -1)
    out = {
        "bad_die_value": ((flat < 0) | (flat > 2)).any(axis=1),
        "bad_label_value": ((labels != 0) & (labels != 1)).any(axis=1),
        "no_wafer": (flat == 0).all(axis=1),
    }
    if "pattern" in z:
        given = np.zeros(n, dtype=bool)
        for code in np.unique(z["pattern"]):
            rows = z["pattern"] == code
            try:
                want = labels_of(str(code))
            except ValueError:
                given[rows] = True
                continue
            given[rows] = (labels[rows] != want).any(axis=1)
        out["pattern_differs_from_labels"] = given & ~out["bad_label_value"]
    return out


def read_mixed(path: str | os.PathLike, on_invalid: str = "drop") -> tuple[MixedSet, dict]:
    """Read and check an input file (module docstring). Returns the kept rows and a report:
    rows read, kept, dropped per reason (with the first such row)."""
    path = Path(path)
    _members(path)
    z = load_npz(path, REQUIRED)
    n = _shape_checks(path, z)
    problems = row_problems(z)
    bad = np.zeros(n, dtype=bool)
    dropped, first = {}, {}
    for reason, rows in problems.items():
        if rows.any():
            row = int(np.flatnonzero(rows)[0])
            if on_invalid == "fail":
                raise WaferInputError(path, reason.replace("_", " "), row=row)
            dropped[reason], first[reason] = int(rows.sum()), row
            bad |= rows
    keep = np.flatnonzero(~bad)
    maps = z["maps"][keep].astype(np.uint8)
    labels = z["labels"][keep].astype(np.uint8)
    masks = z.get("masks", np.zeros((0, *maps.shape[1:]), np.uint8))
    data = MixedSet(
        maps,
        labels,
        codes_of(labels),
        z["source"][keep].astype(str) if "source" in z else np.full(len(keep), path.name),
        z["source_index"][keep].astype(np.int64) if "source_index" in z else keep.astype(np.int64),
        masks[keep].astype(np.uint8) if len(masks) else masks.astype(np.uint8),
    )
    report = {"rows_read": n, "rows_kept": len(keep), "dropped": dropped, "first_dropped": first}
    return data, report
