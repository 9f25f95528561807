import numpy as np
import pytest

from wafer.core import ragged
from wafer.core.classes import CLASS_NAMES
from wafer.data.split import (
    TEST,
    TRAIN,
    VAL,
    duplicate_groups,
    group_ids,
    hold_out,
    original_split,
    split_report,
    stratified_group_split,
)

from conftest import wafer


def _dataset(n_per_class=60, dup_every=7, seed=0):
    rng = np.random.default_rng(seed)
    maps, labels = [], []
    for c in range(len(CLASS_NAMES)):
        for _ in range(n_per_class):
            m = wafer(20, 20, None)
            m[rng.integers(0, 20, 5), rng.integers(0, 20, 5)] = 2
            m[m == 2] = np.where(wafer(20, 20, None)[m == 2] > 0, 2, 0)
            maps.append(m)
            labels.append(c)
    # identical maps: copy every dup_every-th map (same label)
    for i in range(0, len(maps), dup_every):
        maps.append(maps[i].copy())
        labels.append(labels[i])
    return ragged.pack(maps), np.array(labels, dtype=np.int8)


def test_duplicate_groups_find_identical_maps():
    a, b = wafer(10, 10, (3, 3)), wafer(10, 10, (4, 4))
    flat, shapes, offsets = ragged.pack([a, b, a.copy(), wafer(10, 12, (3, 3)), b.copy()])
    g = duplicate_groups(flat, shapes, offsets)
    assert g[0] == g[2] and g[1] == g[4] and len(set(g.tolist())) == 3


def test_split_is_disjoint_stratified_and_keeps_duplicates_together():
    (flat, shapes, offsets), labels = _dataset()
    groups = duplicate_groups(flat, shapes, offsets)
    split = stratified_group_split(labels, groups, (0.7, 0.1, 0.2), seed=3)
    assert set(np.unique(split).tolist()) == {TRAIN, VAL, TEST}
    for g in np.unique(groups):  # each duplicate group lies in exactly one split
        assert len(np.unique(split[groups == g])) == 1
    for c in range(len(CLASS_NAMES)):
        share = np.bincount(split[labels == c], minlength=3) / np.sum(labels == c)
        assert abs(share[TEST] - 0.2) < 0.06 and abs(share[VAL] - 0.1) < 0.06
    report = split_report(split, labels, groups)
    assert report["groups_spanning_splits"] == 0
    assert sum(report[s]["total"] for s in ("train", "val", "test")) == len(labels)


def test_held_out_class_goes_to_test_whole_groups_and_known_maps_stay_put():
    (flat, shapes, offsets), labels = _dataset()
    groups = duplicate_groups(flat, shapes, offsets)
    groups[labels == 0] = groups[np.flatnonzero(labels == 7)[0]]  # a group mixing Center/Scratch
    split = stratified_group_split(labels, groups, (0.7, 0.1, 0.2), seed=3)
    held, stats = hold_out(split, labels, groups, ["Scratch"])
    mixed = np.isin(groups, groups[labels == 7])
    assert np.all(held[labels == 7] == TEST) and np.all(held[mixed] == TEST)
    assert np.array_equal(held[~mixed], split[~mixed])  # every other map keeps its split
    assert stats == {
        "holdout": ["Scratch"],
        "holdout_moved_to_test": int(np.sum(mixed & (split != TEST))),
    }
    assert stats["holdout_moved_to_test"] > 0
    with pytest.raises(ValueError, match="no class Foo"):
        hold_out(split, labels, groups, ["Foo"])


def test_split_depends_only_on_its_seed():
    (flat, shapes, offsets), labels = _dataset()
    groups = duplicate_groups(flat, shapes, offsets)
    a = stratified_group_split(labels, groups, (0.7, 0.1, 0.2), seed=1)
    b = stratified_group_split(labels, groups, (0.7, 0.1, 0.2), seed=1)
    c = stratified_group_split(labels, groups, (0.7, 0.1, 0.2), seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_original_split_uses_trian_test_label():
    (flat, shapes, offsets), labels = _dataset(n_per_class=20)
    groups = duplicate_groups(flat, shapes, offsets)
    orig = np.where(np.arange(len(labels)) % 4 == 0, "Test", "Training")
    split, stats = original_split(orig, labels, groups, val_fraction=0.1, seed=0)
    assert np.all(split[orig == "Test"] == TEST)
    moved = stats["training_maps_moved_to_test"]
    assert np.sum(split[orig == "Training"] == TEST) == moved
    for g in np.unique(groups):  # no twin on both sides
        assert len(np.unique(split[groups == g])) == 1
    assert set(np.unique(split[orig == "Training"]).tolist()) >= {TRAIN, VAL}


def test_original_split_moves_training_twins_of_test_maps_and_has_no_phantom_groups():
    a, b, c = wafer(10, 10, (3, 3)), wafer(10, 10, (4, 4)), wafer(12, 12, (5, 5))
    maps = [a, b, a.copy(), c] + [wafer(16, 16, (i % 7, i // 7)) for i in range(40)]
    flat, shapes, offsets = ragged.pack(maps)
    groups = duplicate_groups(flat, shapes, offsets)
    labels = np.zeros(len(maps), dtype=np.int8)
    orig = np.array(["Training", "Training", "Test", "Test"] + ["Training"] * 40)
    split, stats = original_split(orig, labels, groups, val_fraction=0.1, seed=0)
    assert stats == {"groups_straddling_original_split": 1, "training_maps_moved_to_test": 1}
    assert split[0] == TEST and split[2] == TEST  # a's Training copy follows its Test twin
    # ids of the Training groups are made contiguous: val gets its share of the 41 maps
    assert 2 <= np.sum(split == VAL) <= 6


def test_dihedral_twins_and_lots_share_a_group():
    a = wafer(10, 12, (3, 4))
    a[0:2, 3] = 2
    others = [wafer(14, 14, (i, 5)) for i in range(4)]
    maps = [a, np.rot90(a), a[:, ::-1].copy(), a.T.copy(), *others]
    flat, shapes, offsets = ragged.pack(maps)
    exact = duplicate_groups(flat, shapes, offsets)
    assert len(set(exact[:4].tolist())) == 4  # no exact twins
    groups, stats = group_ids(flat, shapes, offsets)
    assert len(set(groups[:4].tolist())) == 1 and stats["dihedral_duplicate_groups"] == 1
    assert stats["maps_in_dihedral_duplicate_groups"] == 4 and stats["lots"] == 0
    lots = np.array(["", "", "", "", "L1", "L1", "", "L2"])
    groups, stats = group_ids(flat, shapes, offsets, lots)
    assert groups[4] == groups[5] and groups[5] != groups[6] and groups[6] != groups[7]
    assert stats["lots"] == 2 and stats["groups"] == 4
    assert sorted(set(groups.tolist())) == list(range(4))  # contiguous ids
