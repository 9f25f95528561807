"""Cross-fitting folds over the training split (issue 25): every training map gets one fold in
0..K-1; member ``k`` of the cross-fitted ensemble trains on the other folds, so its predictions on
fold ``k`` are *out of fold* (OOF) and every training map gets one prediction from a model that
never saw it (what confident learning and distillation need).

Whole groups stay in one fold (the split stage's groups: maps identical up to a rotation or
flip, wafers of one lot), stratified by label, as the split stage keeps them in one split
(:class:`sklearn.model_selection.StratifiedGroupKFold`, shuffled by ``crossfit.seed``).

Only the training split is folded. Validation stays whole and outside every fold: no member
trains on it, so the ensemble's validation predictions are as honest as the single model's, and
the served ensemble's temperature and thresholds are fit on them (the predictions that are
served); the test split is never touched.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError
from wafer.core.io import load_npz, save_npz, write_csv

# the label-noise audit's list (reports/audit/label_issues.csv), most suspect first
LABEL_ISSUES_COLUMNS = ("rank", "row", "given", "suggested", "quality", "p_suggested", "fold")


def assign_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold (int8, 0..k-1) of every row: whole groups per fold, stratified by ``labels`` (a
    class index per row). Raises ValueError when there are fewer groups than folds."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.shape != groups.shape or labels.ndim != 1:
        raise ValueError("labels and groups must be 1-D arrays of one length")
    if k < 2:
        raise ValueError(f"k must be at least 2, not {k}")
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise ValueError(f"{n_groups} groups cannot fill {k} folds")
    folds = np.full(len(labels), -1, dtype=np.int8)
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer groups than folds: fine, said in docs
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, held) in enumerate(cv.split(np.zeros(len(labels)), labels, groups)):
            folds[held] = fold
    return folds


@dataclass(frozen=True)
class FoldsFile:
    """The `folds` stage's file: the fold of every training-shard map (in the shard's order) and
    the ingested row it is, so a reader can check that both still describe the same maps."""

    fold: np.ndarray  # (N,) int8, 0..k-1
    rows: np.ndarray  # (N,) int64: the training shard's rows
    seed: int

    @property
    def k(self) -> int:
        return int(self.fold.max()) + 1 if len(self.fold) else 0

    def save(self, path: str | os.PathLike) -> None:
        save_npz(path, fold=self.fold, rows=self.rows, seed=np.array(self.seed))

    @classmethod
    def load(cls, path: str | os.PathLike) -> FoldsFile:
        z = load_npz(path, ("fold", "rows", "seed"))
        return cls(z["fold"].astype(np.int8), z["rows"].astype(np.int64), int(z["seed"]))

    def held_out(self, fold: int, rows: np.ndarray) -> np.ndarray:
        """Boolean mask over ``rows`` (the training shard's, which must be this file's) of the
        maps in ``fold``; ValueError when the shard is not the one the folds were drawn on or
        ``fold`` is not one of them."""
        if len(rows) != len(self.rows) or not np.array_equal(rows, self.rows):
            raise ValueError("the training shard is not the one these folds were drawn on")
        if not 0 <= fold < self.k:
            raise ValueError(f"fold {fold} is not one of 0..{self.k - 1}")
        return self.fold == fold


@dataclass(frozen=True)
class OofFile:
    """The `oof` stage's file: every training map's out-of-fold served logits (the member that
    left its fold out, ``views`` TTA views, fp32), with its label, fold and ingested row, and
    the SHA-256 of each member file (index = fold) that gave them."""

    logits: np.ndarray  # (N, C) float32, in the training shard's order
    y: np.ndarray  # (N,) int64 given label
    fold: np.ndarray  # (N,) int8
    rows: np.ndarray  # (N,) int64
    views: int
    member_sha256: tuple[str, ...]

    def save(self, path: str | os.PathLike) -> None:
        save_npz(
            path,
            logits=self.logits,
            y=self.y,
            fold=self.fold,
            rows=self.rows,
            views=np.array(self.views),
            member_sha256=np.array(list(self.member_sha256)),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> OofFile:
        z = load_npz(path, ("logits", "y", "fold", "rows", "views", "member_sha256"))
        return cls(
            z["logits"],
            z["y"],
            z["fold"],
            z["rows"],
            int(z["views"]),
            tuple(str(s) for s in z["member_sha256"]),
        )


@dataclass(frozen=True)
class InsampleFile:
    """The `insample` stage's file: the served ensemble's own logits on every training map
    (``views`` TTA views, the served ``runtime``), with its label and ingested row, and the
    ensemble file's SHA-256. In-sample: its members trained on these maps, so the logits are more
    confident than held-out ones (a distillation teacher, not an audit's evidence)."""

    logits: np.ndarray  # (N, C) float32, in the training shard's order
    y: np.ndarray  # (N,) int64 given label
    rows: np.ndarray  # (N,) int64
    views: int
    runtime: str
    model_sha256: str

    def save(self, path: str | os.PathLike) -> None:
        save_npz(
            path,
            logits=self.logits,
            y=self.y,
            rows=self.rows,
            views=np.array(self.views),
            runtime=np.array(self.runtime),
            model_sha256=np.array(self.model_sha256),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> InsampleFile:
        z = load_npz(path, ("logits", "y", "rows", "views", "runtime", "model_sha256"))
        return cls(
            z["logits"],
            z["y"],
            z["rows"],
            int(z["views"]),
            str(z["runtime"]),
            str(z["model_sha256"]),
        )


def teacher_logits(
    path: str | os.PathLike, teacher: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(logits, y, rows)`` of a student's teacher file: ``teacher`` is ``student.teacher``
    (``oof``: an :class:`OofFile`, ``insample``: an :class:`InsampleFile`)."""
    f = OofFile.load(path) if teacher == "oof" else InsampleFile.load(path)
    return f.logits, f.y, f.rows


@dataclass(frozen=True)
class LabelIssues:
    """The audit's list (``label_issues.csv``, :data:`LABEL_ISSUES_COLUMNS`; written by
    wafer.report.audit's stage, read by the cleaned-label model's training): the flagged maps'
    ingested rows, most suspect first, with their given and suggested labels."""

    rows: np.ndarray  # (M,) int64
    given: tuple[str, ...]
    suggested: tuple[str, ...]


def write_label_issues(path, table: list[list]) -> None:
    """Write the ranked list (rows of :data:`LABEL_ISSUES_COLUMNS` values), atomically."""
    write_csv(path, LABEL_ISSUES_COLUMNS, table)


def read_label_issues(path) -> LabelIssues:
    """Read the ranked list; a file that is not one raises WaferInputError naming it."""
    import csv

    try:
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or tuple(header) != LABEL_ISSUES_COLUMNS:
                raise WaferInputError(path, f"not a label-issues list (header {header})")
            body = list(reader)
    except OSError as exc:
        raise WaferInputError(path, str(exc)) from None
    rows, given, suggested = [], [], []
    for i, r in enumerate(body, start=2):
        try:
            rows.append(int(r[1]))
        except (IndexError, ValueError):
            raise WaferInputError(path, f"line {i}: no integer row") from None
        if r[2] not in CLASS_NAMES or r[3] not in CLASS_NAMES:
            raise WaferInputError(path, f"line {i}: labels {r[2]!r}, {r[3]!r} are not classes")
        given.append(r[2])
        suggested.append(r[3])
    return LabelIssues(np.array(rows, dtype=np.int64), tuple(given), tuple(suggested))
