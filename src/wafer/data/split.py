"""Persisted train/val/test assignment, independent of any training seed.

Maps that must not be separated form a *group*, and a group always lands in one split, so that
no test map has a twin in training:

* **exact duplicates**: same shape and same dies;
* **dihedral duplicates**: identical up to a rotation or a flip (the 8 views that TTA and the
  augmentation treat as one map), found by hashing each map's canonical view;
* **lots** (``group_lots``, when a ``lotName`` column is present): wafers of one lot share a
  process history, so a pattern seen on one of them is not new on its neighbour.

Groups are the connected components of these relations (:func:`group_ids`). They are stratified
by their label (the group's most common label): within each class, groups are shuffled with
``split.seed`` and dealt out until each split reaches its share of that class's maps.

**Held-out classes** (``split.holdout``, for measuring novelty detection): every group holding
a map of a held-out class is moved to test after the split (:func:`hold_out`), so the model,
its temperature and its thresholds never see the class, while the known-class test maps stay
exactly those of the split without holdout.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from wafer.core import ragged
from wafer.core.classes import CLASS_NAMES

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2


def _digest(m: np.ndarray) -> bytes:
    h = hashlib.blake2b(np.ascontiguousarray(m).tobytes(), digest_size=16)
    h.update(np.asarray(m.shape, dtype=np.int32).tobytes())
    return h.digest()


def dihedral_views(m: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations and reflections of a 2-D map."""
    return [np.rot90(v, k) for v in (m, m.T) for k in range(4)]


def _ids(keys: list) -> np.ndarray:
    """Index of each key's first occurrence order: equal keys share an id, ids are 0..G-1."""
    seen: dict = {}
    return np.array([seen.setdefault(k, len(seen)) for k in keys], dtype=np.int64)


def duplicate_groups(
    flat: np.ndarray, shapes: np.ndarray, offsets: np.ndarray, dihedral: bool = False
) -> np.ndarray:
    """Group id per map (ids 0..G-1 in order of first appearance): identical shape and content,
    or, with ``dihedral``, identical up to one of the 8 rotations/flips."""
    keys = []
    for i in range(len(shapes)):
        m = ragged.get(flat, shapes, offsets, i)
        keys.append(min(_digest(v) for v in dihedral_views(m)) if dihedral else _digest(m))
    return _ids(keys)


def merge_groups(*labelings: np.ndarray) -> np.ndarray:
    """Connected components of "same id in any of the labelings" (ids 0..G-1, first-appearance
    order). Each labeling is an int array over the same rows."""
    n = len(labelings[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows, cols = [], []
    for lab in labelings:
        _, first, inverse = np.unique(lab, return_index=True, return_inverse=True)
        rows.append(np.arange(n))
        cols.append(first[inverse])  # each row linked to the first row of its id
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    return _ids(comp.tolist())


def group_ids(
    flat: np.ndarray,
    shapes: np.ndarray,
    offsets: np.ndarray,
    lots: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Groups that must share a split (module docstring) and how many of each kind there are.

    ``lots`` holds each row's lot name ('' = unknown: such rows are not grouped by lot); pass
    None to ignore lots. Returns (group id per row, counts for metrics/split.json).
    """
    exact = duplicate_groups(flat, shapes, offsets)
    dihedral = duplicate_groups(flat, shapes, offsets, dihedral=True)
    labelings = [dihedral]
    n_lots = 0
    if lots is not None and len(lots) and np.any(lots != ""):
        # rows without a lot get a lot of their own
        lot_keys = [name if name != "" else ("", i) for i, name in enumerate(lots.tolist())]
        labelings.append(_ids(lot_keys))
        n_lots = int(len(np.unique(lots[lots != ""])))
    groups = merge_groups(*labelings)

    def multi(g: np.ndarray) -> tuple[int, int]:
        size = np.bincount(g)
        return int(np.sum(size > 1)), int(size[size > 1].sum())

    stats = {
        "exact_duplicate_groups": multi(exact)[0],
        "maps_in_exact_duplicate_groups": multi(exact)[1],
        # identical up to a rotation or flip (these include the exact duplicates)
        "dihedral_duplicate_groups": multi(dihedral)[0],
        "maps_in_dihedral_duplicate_groups": multi(dihedral)[1],
        "lots": n_lots,
        "groups": int(groups.max()) + 1 if len(groups) else 0,
        "multi_map_groups": multi(groups)[0],
        "maps_in_multi_map_groups": multi(groups)[1],
    }
    return groups, stats


def _n_strata(labels: np.ndarray) -> int:
    """Number of strata: the 9 classes, or more when ``labels`` are other codes (the mixed-type
    pipeline stratifies on its 38 pattern codes)."""
    return max(len(CLASS_NAMES), int(labels.max()) + 1 if len(labels) else 0)


def _group_labels(groups: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Most common label of each group (ties -> smallest class index)."""
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    counts = np.zeros((n_groups, _n_strata(labels)), dtype=np.int64)
    np.add.at(counts, (groups, labels), 1)
    return counts.argmax(axis=1)


def stratified_group_split(
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: tuple[float, float, float],
    seed: int,
) -> np.ndarray:
    """Assign every row to TRAIN/VAL/TEST (int8), whole groups at a time, stratified by label
    (a class index, or any non-negative stratum code).

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
    for c in range(_n_strata(labels)):
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


def hold_out(
    split: np.ndarray, labels: np.ndarray, groups: np.ndarray, classes: list[str]
) -> tuple[np.ndarray, dict]:
    """Move every group that holds a map of one of ``classes`` (names) to TEST; returns the new
    split and ``{"holdout": names, "holdout_moved_to_test": n}`` (maps moved from train/val)."""
    unknown = [c for c in classes if c not in CLASS_NAMES]
    if unknown:
        raise ValueError(f"holdout: no class {', '.join(unknown)}")
    ids = [CLASS_NAMES.index(c) for c in classes]
    held = np.isin(groups, np.unique(groups[np.isin(labels, ids)]))
    out = split.copy()
    moved = int(np.sum(held & (out != TEST)))
    out[held] = TEST
    return out, {"holdout": list(classes), "holdout_moved_to_test": moved}


def original_split(
    orig: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    val_fraction: float,
    seed: int,
) -> tuple[np.ndarray, dict]:
    """WM-811K's own Training/Test split; val is carved from Training, stratified by group.

    A group with maps on both sides of the official line (a map in Training with a twin in Test)
    goes to test whole, so training never sees a twin of a test map; the official test set is
    kept and grows by those Training maps. Returns (split, counts for metrics/split.json).
    """
    values = set(np.unique(orig).tolist())
    if not values <= {"Training", "Test"} or "Training" not in values:
        raise ValueError(
            f"trianTestLabel must hold 'Training'/'Test' for every kept row, found {sorted(values)}"
        )
    in_test = np.zeros(int(groups.max()) + 1 if len(groups) else 0, dtype=bool)
    in_test[groups[orig == "Test"]] = True
    straddling = in_test & (np.bincount(groups[orig == "Training"], minlength=len(in_test)) > 0)
    moved = (orig == "Training") & in_test[groups]
    out = np.full(len(labels), TEST, dtype=np.int8)
    tr = np.flatnonzero(~in_test[groups])
    if len(tr):
        _, sub_groups = np.unique(groups[tr], return_inverse=True)  # ids 0..G'-1, no phantoms
        out[tr] = stratified_group_split(
            labels[tr], sub_groups, (1 - val_fraction, val_fraction, 0.0), seed
        )
    stats = {
        "groups_straddling_original_split": int(straddling.sum()),
        "training_maps_moved_to_test": int(moved.sum()),
    }
    return out, stats


def split_report(split: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> dict:
    """Per-class counts per split and a leak check (groups whose maps lie in several splits;
    0 by construction)."""
    report: dict = {}
    for s, name in enumerate(SPLITS):
        counts = np.bincount(labels[split == s], minlength=len(CLASS_NAMES))
        report[name] = {"total": int(counts.sum())} | {
            c: int(n) for c, n in zip(CLASS_NAMES, counts, strict=True)
        }
    splits_per_group = np.bincount(np.unique(groups * 3 + split) // 3)
    report["groups_spanning_splits"] = int(np.sum(splits_per_group > 1))
    return report
