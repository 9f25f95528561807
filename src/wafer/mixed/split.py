"""The mixed-type split: the 9-class split's machinery (:mod:`wafer.data.split`) on MixedWM38's
maps. Maps identical, or identical up to a rotation or flip, form a group and share a split
(the real file has 271 exact duplicates); groups are stratified on the pattern code (38
strata), so every mixture has its share in train, val and test."""

from __future__ import annotations

import numpy as np

from wafer.core import ragged
from wafer.data.split import SPLITS, group_ids, stratified_group_split
from wafer.mixed.data import MixedSet
from wafer.mixed.labels import MIXED_LABELS


def mixed_split(
    data: MixedSet, val: float, test: float, seed: int
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(split per row, group per row, group counts for the metrics)."""
    groups, stats = group_ids(*ragged.pack(list(data.maps)), None)
    _, strata = np.unique(data.codes, return_inverse=True)
    split = stratified_group_split(strata, groups, (1 - val - test, val, test), seed)
    return split, groups, stats


def split_report(split: np.ndarray, data: MixedSet, groups: np.ndarray) -> dict:
    """Maps and label counts per split, pattern codes per split, and the leak check (groups
    spanning splits: 0 by construction)."""
    out: dict = {}
    for s, name in enumerate(SPLITS):
        sel = split == s
        out[name] = {"total": int(sel.sum())} | {
            label: int(c)
            for label, c in zip(MIXED_LABELS, data.labels[sel].sum(axis=0), strict=True)
        }
        out[name]["codes"] = int(len(np.unique(data.codes[sel])))
    splits_per_group = np.bincount(np.unique(groups * 3 + split) // 3)
    out["groups_spanning_splits"] = int(np.sum(splits_per_group > 1))
    return out
