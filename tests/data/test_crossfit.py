"""wafer.data.crossfit: folds keep groups whole, are stratified and reproducible; the folds and
OOF files round-trip and refuse a shard they were not drawn on."""

from __future__ import annotations

import numpy as np
import pytest

from wafer.core.errors import WaferInputError
from wafer.data.crossfit import FoldsFile, OofFile, assign_folds


def _data(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.choice(9, size=n, p=[0.05] * 8 + [0.6])
    groups = np.arange(n)
    groups[1::7] = groups[0::7][: len(groups[1::7])]  # every 7th map shares its neighbour's group
    return labels, groups


def test_every_map_gets_one_fold_and_groups_stay_whole():
    labels, groups = _data()
    folds = assign_folds(labels, groups, 3, seed=1)
    assert folds.dtype == np.int8 and set(np.unique(folds)) == {0, 1, 2}
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1, g


def test_folds_are_stratified_and_balanced():
    labels, groups = _data(900)
    folds = assign_folds(labels, groups, 3, seed=0)
    sizes = np.bincount(folds)
    assert sizes.min() >= 0.9 * sizes.max()
    for c in range(9):
        per_fold = np.bincount(folds[labels == c], minlength=3)
        assert per_fold.max() - per_fold.min() <= max(3, 0.25 * per_fold.mean()), c


def test_the_seed_sets_the_folds_and_the_same_seed_repeats_them():
    labels, groups = _data()
    a, b = assign_folds(labels, groups, 3, 1), assign_folds(labels, groups, 3, 1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, assign_folds(labels, groups, 3, 2))


def test_too_few_groups_or_folds_are_refused():
    with pytest.raises(ValueError, match="groups cannot fill"):
        assign_folds(np.zeros(4, int), np.array([0, 0, 1, 1]), 3, 0)
    with pytest.raises(ValueError, match="at least 2"):
        assign_folds(np.zeros(4, int), np.arange(4), 1, 0)


def test_folds_file_round_trips_and_checks_the_shard(tmp_path):
    labels, groups = _data(60)
    rows = np.arange(100, 160)
    f = FoldsFile(assign_folds(labels, groups, 3, 0), rows, 0)
    f.save(tmp_path / "f.npz")
    g = FoldsFile.load(tmp_path / "f.npz")
    assert g.k == 3 and g.seed == 0 and np.array_equal(g.fold, f.fold)
    held = g.held_out(1, rows)
    assert held.sum() == (f.fold == 1).sum()
    with pytest.raises(ValueError, match="not the one"):
        g.held_out(1, rows[::-1])
    with pytest.raises(ValueError, match="not one of"):
        g.held_out(3, rows)


def test_oof_file_round_trips_and_a_missing_member_is_named(tmp_path):
    oof = OofFile(
        np.ones((5, 9), np.float32),
        np.arange(5),
        np.array([0, 1, 0, 1, 0], np.int8),
        np.arange(5),
        8,
        ("a" * 64, "b" * 64),
    )
    oof.save(tmp_path / "o.npz")
    back = OofFile.load(tmp_path / "o.npz")
    assert back.member_sha256 == oof.member_sha256 and back.views == 8
    np.savez(tmp_path / "bad.npz", logits=np.ones((2, 9)))
    with pytest.raises(WaferInputError, match="missing array"):
        OofFile.load(tmp_path / "bad.npz")
