"""Persisted train/val/test assignment, independent of any training seed.

Identical maps (same shape and same dies) form a *duplicate group* and always land in the
same split, so that no test map has a twin in training. Groups are stratified by their label
(the group's most common label): within each class, groups are shuffled with ``split.seed``
and dealt out until each split reaches its share of that class's maps.
"""

from __future__ import annotations

import hashlib

import numpy as np

from wafer import ragged
from wafer.classes import CLASS_NAMES

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2


def duplicate_groups(flat: np.ndarray, shapes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Group id per map: maps with identical shape and content share an id (ids are 0..G-1)."""
    ids: dict[bytes, int] = {}
    out = np.empty(len(shapes), dtype=np.int64)
    for i in range(len(shapes)):
        h = hashlib.blake2b(ragged.get(flat, shapes, offsets, i).tobytes(), digest_size=16)
        h.update(shapes[i].tobytes())
        out[i] = ids.setdefault(h.digest(), len(ids))
    return out


def _group_labels(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Most common label of each group (ties -> smallest class index)."""
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    counts = np.zeros((n_groups, len(CLASS_NAMES)), dtype=np.int64)
    np.add.at(counts, (groups, labels), 1)
    return counts.argmax(axis=1)


def stratified_group_split(
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: tuple[float, float, float],
    seed: int,
) -> np.ndarray:
    """Assign every row to TRAIN/VAL/TEST (int8), whole groups at a time, stratified by label.

    Within each class the shuffled groups go to test first, then val, until each has reached
    its share of the class's rows; the rest go to train. Tiny classes still get at least one
    group in test and val when they have three or more groups.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    glabel = _group_labels(groups, labels)
    gsize = np.bincount(groups, minlength=len(glabel))
    gsplit = np.full(len(glabel), TRAIN, dtype=np.int8)
    for c in range(len(CLASS_NAMES)):
        members = np.flatnonzero(glabel == c)
        if len(members) == 0:
            continue
        members = members[rng.permutation(len(members))]
        total = gsize[members].sum()
        cum = np.cumsum(gsize[members]) - gsize[members]  # rows dealt before each group
        test_goal = fractions[TEST] * total
        val_goal = (fractions[TEST] + fractions[VAL]) * total
        gsplit[members[cum < val_goal]] = VAL
        gsplit[members[cum < test_goal]] = TEST
        if len(members) >= 3:  # keep every class present in all three splits
            for k, s in enumerate((TEST, VAL)):
                if fractions[s] > 0 and not np.any(gsplit[members] == s):
                    gsplit[members[k]] = s
    return gsplit[groups]


def original_split(
    orig: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    val_fraction: float,
    seed: int,
) -> np.ndarray:
    """WM-811K's own Training/Test split; val is carved from Training, stratified by group."""
    values = set(np.unique(orig).tolist())
    if not values <= {"Training", "Test"} or "Training" not in values:
        raise ValueError(
            f"trianTestLabel must hold 'Training'/'Test' for every kept row, found {sorted(values)}"
        )
    out = np.full(len(labels), TEST, dtype=np.int8)
    tr = np.flatnonzero(orig == "Training")
    sub = stratified_group_split(
        labels[tr], groups[tr], (1 - val_fraction, val_fraction, 0.0), seed
    )
    out[tr] = sub
    return out


def split_report(split: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict:
    """Per-class counts per split, duplicate-group statistics and a leak check."""
    report: dict = {}
    for s, name in enumerate(SPLITS):
        counts = np.bincount(labels[split == s], minlength=len(CLASS_NAMES))
        report[name] = {"total": int(counts.sum())} | {
            c: int(n) for c, n in zip(CLASS_NAMES, counts, strict=True)
        }
    gsize = np.bincount(groups)
    splits_per_group = np.bincount(np.unique(groups * 3 + split) // 3)
    report["duplicate_groups"] = int(np.sum(gsize > 1))
    report["maps_in_duplicate_groups"] = int(gsize[gsize > 1].sum())
    report["groups_spanning_splits"] = int(np.sum(splits_per_group > 1))
    return report
