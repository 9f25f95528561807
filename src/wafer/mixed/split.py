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


FRACTION_STREAM = 0xF2AC  # train.fraction's draw: its own stream of train.seed


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices of a ``fraction`` of the training maps (``train.fraction``, the
    transfer study's 1 %, 5 %, 10 %), stratified on the label combination (the pattern code):
    each combination keeps ``round(fraction * n)`` of its ``n`` maps, at least one, so even a
    1 % set sees every mixture. Drawn from ``seed`` (``train.seed``) on a stream of its own,
    so the same seed gives the same maps whatever the initial weights (a donor run and a
    from-scratch run at one seed train on the same maps). ``fraction == 1`` is every row."""
    labels = np.asarray(labels)
    n = len(labels)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train.fraction must be in (0, 1], not {fraction!r}")
    if fraction == 1.0:
        return np.arange(n)
    rng = np.random.default_rng([seed, FRACTION_STREAM])
    _, strata = np.unique(labels.reshape(n, -1), axis=0, return_inverse=True)
    strata = strata.reshape(-1)
    keep = []
    for s in range(int(strata.max()) + 1 if n else 0):
        rows = np.flatnonzero(strata == s)
        k = max(1, int(round(fraction * len(rows))))
        keep.append(rng.permutation(rows)[:k])
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def epoch_rows(rows: np.ndarray, epoch_maps: int) -> np.ndarray:
    """``rows`` passed whole ``round(epoch_maps / len(rows))`` times (at least once) in an
    epoch (``train.epoch_maps``): a small training set (1 % of the split is ~130 maps, two
    steps) then takes enough optimizer steps between two validations for early stopping to mean
    something; each pass draws its own order and augmentation. Rounded, not ceiled: a set a few
    maps short of ``epoch_maps`` is passed once, not twice. 0, or a larger set: one pass."""
    if len(rows) == 0:
        return rows
    return np.tile(rows, max(1, round(epoch_maps / len(rows))))
