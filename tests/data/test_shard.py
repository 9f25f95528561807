import numpy as np
import torch
import torch.nn.functional as F

from wafer.core import ragged
from wafer.data.shard import block_starts, resize_map, resize_rows


def test_upsampling_is_plain_nearest_neighbour():
    rng = np.random.default_rng(0)
    m = rng.integers(0, 3, (23, 31)).astype(np.uint8)
    ours = resize_map(m, 64)
    ref = F.interpolate(torch.from_numpy(m)[None, None].float(), size=(64, 64), mode="nearest")
    assert np.array_equal(ours, ref[0, 0].numpy().astype(np.uint8))


def test_downsampling_keeps_a_one_die_scratch():
    m = np.ones((150, 150), dtype=np.uint8)
    idx = np.arange(150)
    m[idx, (idx * 0.7 + 20).astype(int)] = 2  # thin diagonal line, 1 die wide
    m[75, :] = np.where(np.arange(150) % 2 == 0, 1, m[75, :])  # nothing special
    out = resize_map(m, 32)
    # every output row still holds a failing cell: the scratch is continuous, not erased
    assert np.all((out == 2).any(axis=1))
    # plain nearest-neighbour sampling loses most of it
    nn = m[np.ix_(block_starts(150, 32) + 2, block_starts(150, 32) + 2)]
    assert (nn == 2).sum() < (out == 2).sum()


def test_single_failing_die_survives_any_downsampling():
    for h, w in ((150, 150), (97, 61), (212, 40)):
        for size in (16, 32, 48):
            m = np.ones((h, w), dtype=np.uint8)
            m[h // 3, w - 1] = 2
            assert (resize_map(m, size) == 2).sum() == 1


def test_values_stay_in_domain_and_resize_rows_matches_per_map():
    rng = np.random.default_rng(1)
    maps = [
        rng.integers(0, 3, (h, w)).astype(np.uint8)
        for h, w in ((20, 20), (45, 30), (20, 20), (100, 120), (7, 9))
    ]
    flat, shapes, offsets = ragged.pack(maps)
    rows = np.array([4, 0, 3, 2])
    out = resize_rows(flat, shapes, offsets, rows, 32)
    assert out.shape == (4, 32, 32) and out.dtype == np.uint8
    for k, r in enumerate(rows):
        assert np.array_equal(out[k], resize_map(maps[r], 32))
    assert set(np.unique(out).tolist()) <= {0, 1, 2}
