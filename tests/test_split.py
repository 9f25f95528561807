import numpy as np

from wafer import ragged
from wafer.classes import CLASS_NAMES
from wafer.split import (
    TEST,
    TRAIN,
    VAL,
    duplicate_groups,
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
    assert report["duplicate_groups"] == int(np.sum(np.bincount(groups) > 1)) > 0
    assert sum(report[s]["total"] for s in ("train", "val", "test")) == len(labels)


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
    split = original_split(orig, labels, groups, val_fraction=0.1, seed=0)
    assert np.all(split[orig == "Test"] == TEST)
    assert set(np.unique(split[orig == "Training"]).tolist()) == {TRAIN, VAL}
