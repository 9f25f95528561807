"""Reading MixedWM38's layout (checked rows, one-line errors) and the grouped, stratified split."""

from pathlib import Path

import numpy as np
import pytest

from wafer.core.errors import WaferInputError
from wafer.mixed.data import MixedSet, read_mixed
from wafer.mixed.labels import MIXED_LABELS
from wafer.mixed.split import mixed_split, split_report
from wafer.mixed.synth import generate_mixed

REAL = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "mixedwm38" / "mixedwm38-subset.npz"
)


def _write(path: Path, **over) -> Path:
    d = generate_mixed(60, 20, 0.5, seed=1)
    arrays = {
        "maps": d.maps,
        "labels": d.labels,
        "label_names": np.array(MIXED_LABELS),
        "pattern": d.codes,
    } | over
    np.savez_compressed(path, **arrays)
    return path


def test_a_clean_file_is_read_whole(tmp_path):
    data, report = read_mixed(_write(tmp_path / "a.npz"))
    assert len(data) == report["rows_kept"] == 60 and report["dropped"] == {}
    data.save(tmp_path / "b.npz")
    again = MixedSet.load(tmp_path / "b.npz")
    assert np.array_equal(again.maps, data.maps) and list(again.codes) == list(data.codes)


def test_bad_rows_are_dropped_and_counted_or_fail_with_their_row(tmp_path):
    d = generate_mixed(60, 20, 0.5, seed=1)
    maps, labels, pattern = d.maps.copy(), d.labels.copy(), d.codes.copy()
    maps[4, 3, 3] = 7
    labels[9, 0] = 2
    pattern[11] = "NF" if pattern[11] != "NF" else "R"
    path = _write(tmp_path / "bad.npz", maps=maps, labels=labels, pattern=pattern)
    data, report = read_mixed(path)
    assert len(data) == 57
    assert report["first_dropped"] == {
        "bad_die_value": 4,
        "bad_label_value": 9,
        "pattern_differs_from_labels": 11,
    }
    with pytest.raises(WaferInputError, match=r"bad\.npz, row 4: bad die value"):
        read_mixed(path, on_invalid="fail")


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"label_names": np.array(list(reversed(MIXED_LABELS)))}, "label_names"),
        ({"labels": np.zeros((60, 7), np.uint8)}, "labels: expected shape"),
        ({"maps": np.zeros((60, 20), np.uint8)}, "maps: expected"),
    ],
)
def test_a_file_of_another_layout_is_refused_in_one_line(tmp_path, over, why):
    with pytest.raises(WaferInputError, match=why):
        read_mixed(_write(tmp_path / "x.npz", **over))


def test_an_object_array_is_never_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    obj = np.empty(60, dtype=object)
    np.savez(path, maps=obj, labels=np.zeros((60, 8)), label_names=np.array(MIXED_LABELS))
    with pytest.raises(WaferInputError, match="not a readable .npz"):
        read_mixed(path)


def test_duplicates_share_a_split_and_every_type_is_in_every_split():
    d = generate_mixed(380, 20, 1.0, seed=2)
    d.maps[10] = d.maps[20]  # an exact twin
    d.maps[30] = np.rot90(d.maps[40])  # a rotated twin
    split, groups, stats = mixed_split(d, 0.2, 0.2, seed=5)
    assert split[10] == split[20] and split[30] == split[40]
    assert stats["exact_duplicate_groups"] >= 1 and stats["dihedral_duplicate_groups"] >= 2
    report = split_report(split, d, groups)
    assert report["groups_spanning_splits"] == 0
    assert report["train"]["codes"] == report["val"]["codes"] == report["test"]["codes"] == 38
    assert abs(report["test"]["total"] / 380 - 0.2) < 0.05


@pytest.mark.skipif(not REAL.is_file(), reason="the real MixedWM38 subset is not here")
def test_the_real_subset_reads_clean_and_splits_its_duplicates_together():
    data, report = read_mixed(REAL)
    assert report["rows_kept"] == 19389 and report["dropped"] == {}
    assert len(set(data.codes)) == 38
    split, groups, stats = mixed_split(data, 0.15, 0.2, seed=20200101)
    assert stats["maps_in_exact_duplicate_groups"] >= 271
    assert split_report(split, data, groups)["groups_spanning_splits"] == 0


def test_wafer_predict_reads_only_the_maps_of_a_mixedwm38_file(tmp_path):
    from wafer.inputs.read import read_maps

    path = _write(tmp_path / "m.npz", source=np.full(60, "x"), source_index=np.arange(60))
    items = list(read_maps(path))
    assert len(items) == 60 and all(it.error is None for it in items)
    assert items[3].source.endswith("m.npz[maps] row 3")


def test_each_pipelines_cross_checks_are_its_own():
    """Both pipelines have `split` and `synthesize` sections: the split shares are checked in
    both, the 9-class `synthesize.unlabeled` rule only where that key exists."""
    from wafer.config.mixed import MIXED_SECTIONS
    from wafer.config.params import ParamError, load_params, validate_all

    root = Path(__file__).resolve().parents[2]
    params = load_params(root / "pipelines" / "mixed" / "params.yaml")
    validate_all(params, MIXED_SECTIONS)  # no 9-class rule reaches the mixed synthesize section
    params["split"].update(val=0.6, test=0.5)
    with pytest.raises(ParamError, match="split: split.val \\+ split.test = 1.1 leaves no"):
        validate_all(params, MIXED_SECTIONS)
