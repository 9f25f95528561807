"""The mixed-type task's labels and pattern codes, and the superposing generator."""

import numpy as np
import pytest

from wafer.mixed.labels import MIXED_LABELS, NORMAL, code_of, codes_of, labels_of
from wafer.mixed.synth import draw_mixed, generate_mixed, pattern_codes


def test_code_and_labels_round_trip_in_any_part_order():
    v = labels_of("C-L-EL-S")  # MixedWM38's own order
    assert code_of(v) == "C-EL-L-S"  # label order
    assert np.array_equal(labels_of("C-EL-L-S"), v)
    assert code_of(np.zeros(8, np.uint8)) == NORMAL and labels_of(NORMAL).sum() == 0
    assert list(codes_of(np.stack([v, labels_of("NF")]))) == ["C-EL-L-S", "NF"]


@pytest.mark.parametrize("code", ["C-X", "C-C", ""])
def test_a_bad_code_is_refused(code):
    with pytest.raises(ValueError, match="pattern code"):
        labels_of(code)


def test_the_38_types_follow_mixedwm38s_rule():
    codes = pattern_codes()
    assert len(codes) == len(set(codes)) == 38
    sizes = np.bincount([labels_of(c).sum() for c in codes])
    assert list(sizes) == [1, 8, 13, 12, 4]  # normal, single, double, triple, quadruple
    for c in codes:
        v = labels_of(c)
        names = {MIXED_LABELS[k] for k in np.flatnonzero(v)}
        assert not {"Center", "Donut"} <= names and not {"Edge-Loc", "Edge-Ring"} <= names
        if names & {"Near-full", "Random"}:
            assert len(names) == 1


def test_each_label_draws_its_own_failing_dies():
    v = labels_of("C-ER-S")
    m, masks = draw_mixed(v, 52, np.random.default_rng(3))
    assert m.shape == (52, 52) and set(np.unique(m)) <= {0, 1, 2}
    for k in range(8):
        bit = (masks & (1 << k)) > 0
        assert bit.any() == bool(v[k])
        assert (m[bit] == 2).all()  # a mask is always on failing dies


def test_generation_is_deterministic_and_covers_every_type():
    a, b = generate_mixed(120, 24, 0.5, seed=7), generate_mixed(120, 24, 0.5, seed=7)
    assert np.array_equal(a.maps, b.maps) and np.array_equal(a.masks, b.masks)
    assert set(a.codes) == set(pattern_codes())
    assert np.array_equal(codes_of(a.labels), a.codes)
    assert not np.array_equal(a.maps, generate_mixed(120, 24, 0.5, seed=8).maps)


def test_a_cam_on_its_own_pattern_beats_one_on_another_even_when_the_other_is_larger():
    from wafer.mixed.cam import own_vs_other, summarise

    m = np.ones((20, 20), np.uint8)
    masks = np.zeros((20, 20), np.uint8)
    masks[2, 2:12] = 1 << 6  # a scratch: 10 dies
    masks[10:20, 10:20] |= 1 << 0  # a large centre-ish blob: 100 dies
    m[masks > 0] = 2
    cam = np.zeros((20, 20), np.float32)
    cam[2, 2:12], cam[10:20, 10:20] = 1.0, 0.2  # mass 10 on the scratch, 20 on the blob
    r = own_vs_other(cam, m, masks, 6)
    assert r["own_energy"] < r["other_energy"]  # raw shares favour the larger region ...
    assert r["own_lift"] > r["other_lift"]  # ... lifts do not
    assert summarise([r])["own_beats_other"] == 1.0
