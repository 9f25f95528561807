import pickle

import numpy as np
import pytest

from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError
from wafer.data.files import Ingested
from wafer.data.ingest import validate_frame
from wafer.data.lswmd import read_lswmd, unwrap_label

from conftest import lswmd_frame, params_file, wafer, write_legacy_pickle


def test_unwrap_label_handles_lswmd_nesting():
    assert unwrap_label(np.array([["Center"]], dtype=object)) == "Center"
    assert unwrap_label(np.array([["none"]])) == "none"  # str dtype too
    assert unwrap_label(np.zeros((0, 0))) is None  # unlabeled rows hold empty arrays
    assert unwrap_label(np.array([], dtype=object)) is None
    assert unwrap_label("Scratch") == "Scratch"
    assert unwrap_label(None) is None
    assert unwrap_label(float("nan")) is None
    assert unwrap_label(np.array([[b"Loc"]], dtype=object)) == "Loc"


def test_legacy_pickle_fixture_reproduces_both_quirks(tmp_path):
    df = lswmd_frame([(wafer(), "Center"), (wafer(9, 11), None), (wafer(), "Edge-Ring")])
    path = tmp_path / "LSWMD.pkl"
    write_legacy_pickle(df, path)
    # The plain Python 3 unpickler fails on it, as on Kaggle's file.
    with pytest.raises((ModuleNotFoundError, UnicodeDecodeError)):
        with open(path, "rb") as fh:
            pickle.load(fh)
    with pytest.raises(UnicodeDecodeError):  # even with the old modules mapped, latin1 is needed
        data = path.read_bytes().replace(b"cpandas.indexes.", b"cpandas.core.indexes.")
        pickle.loads(data.replace(b"cnumpy.core.", b"cnumpy._core."))
    back = read_lswmd(path)
    assert list(back.columns) == list(df.columns)
    assert all(np.array_equal(a, b) for a, b in zip(back["waferMap"], df["waferMap"], strict=True))
    assert back["dieSize"].tolist() == df["dieSize"].tolist()
    ing = validate_frame(back, path, "drop")
    assert ing.labels.tolist() == [CLASS_NAMES.index("Center"), CLASS_NAMES.index("Edge-Ring")]
    assert ing.dropped["unlabeled"] == 1 and ing.rows_read == 3
    assert ing.source_row.tolist() == [0, 2]
    assert ing.orig_split.tolist() == ["Test", "Training"]
    assert ing.lot.tolist() == ["lot0", "lot0"]


def test_compressed_and_modern_pickles(tmp_path):
    df = lswmd_frame([(wafer(), "Loc"), (wafer(20, 17), "none")])
    for name in ("a.pkl", "a.pkl.xz", "a.pkl.gz", "a.pkl.bz2"):
        df.to_pickle(tmp_path / name)
        ing = validate_frame(read_lswmd(tmp_path / name), tmp_path / name, "drop")
        assert ing.per_class()["Loc"] == 1 and ing.per_class()["none"] == 1


def test_round_trip_of_the_intermediate(tmp_path):
    from wafer.core.io import save_npz

    maps = [wafer(), wafer(30, 25, (10, 3)), wafer(7, 7)]
    df = lswmd_frame([(maps[0], "Donut"), (maps[1], "Scratch"), (maps[2], "none")])
    ing = validate_frame(df, "x.pkl", "drop")
    save_npz(tmp_path / "ing.npz", **ing.arrays())
    back = Ingested.load(tmp_path / "ing.npz")
    for i, m in enumerate(maps):
        assert np.array_equal(back.map(i), m)
    assert back.labels.dtype == np.int8 and not back.has_masks


def test_truncated_pickle_is_a_clear_error(tmp_path):
    path = tmp_path / "cut.pkl"
    lswmd_frame([(wafer(), "Center")] * 5).to_pickle(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WaferInputError, match=r"cut\.pkl: not a readable pickle \(truncated"):
        read_lswmd(path)


def test_pickle_without_wafermap(tmp_path):
    df = lswmd_frame([(wafer(), "Center")]).drop(columns=["waferMap"])
    with pytest.raises(WaferInputError, match="missing column 'waferMap'"):
        validate_frame(df, tmp_path / "x.pkl", "drop")


def test_not_a_dataframe(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(WaferInputError, match="expected a pandas DataFrame, found list"):
        read_lswmd(path)


BAD_ROWS = [
    (
        lambda: np.where(wafer() == 2, 3, wafer()).astype(np.uint8),
        "Center",
        "bad_values",
        r"values outside \{0, 1, 2\}: \[3\]",
    ),
    (lambda: np.zeros((0, 0), dtype=np.uint8), "Loc", "empty", "waferMap is empty"),
    (lambda: np.ones(12, dtype=np.uint8), "Loc", "not_2d", "1 dimension"),
    (lambda: wafer(), "Blob", "unknown_label", "unknown label 'Blob'"),
    (lambda: np.zeros((5, 5), dtype=np.uint8), "none", "no_dies", "no die"),
    (lambda: np.full((4, 4), 1.5), "none", "bad_values", "values outside"),
]


@pytest.mark.parametrize("make, lab, reason, message", BAD_ROWS)
def test_bad_rows_are_counted_or_fail(make, lab, reason, message):
    df = lswmd_frame([(wafer(), "Center"), (make(), lab), (wafer(), "none")])
    ing = validate_frame(df, "in.pkl", on_invalid="drop")
    assert ing.dropped[reason] == 1 and len(ing.labels) == 2
    assert ing.first_dropped[reason] == 1
    with pytest.raises(WaferInputError, match=rf"^in\.pkl, row 1: {reason}: .*{message}"):
        validate_frame(df, "in.pkl", on_invalid="fail")


def test_stage_prints_one_line_error(tmp_path, load_stage):
    from typer.testing import CliRunner

    path = tmp_path / "cut.pkl"
    path.write_bytes(b"\x80\x04\x95garbage")
    result = CliRunner().invoke(
        load_stage("ingest").app,
        [
            "--params",
            str(params_file(tmp_path, {"ingest.input": str(path), "ingest.trust_pickle": True})),
            "--out",
            str(tmp_path / "o.npz"),
            "--metrics",
            str(tmp_path / "m.json"),
        ],
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: not a readable pickle")
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.npz").exists()


def test_real_subset_counts(subset_path):
    """Ingesting the real subset reproduces the per-class counts of its README."""
    ing = validate_frame(read_lswmd(subset_path), subset_path, "drop")
    assert ing.per_class() == {
        "Center": 3649,
        "Donut": 472,
        "Edge-Loc": 4409,
        "Edge-Ring": 8228,
        "Loc": 3054,
        "Near-full": 127,
        "Random": 735,
        "Scratch": 1013,
        "none": 31216,
    }
    assert ing.rows_read == 52903 and sum(ing.dropped.values()) == 0


def test_an_npz_counts_its_unlabeled_rows_without_reading_them(tmp_path):
    """A ragged-maps .npz gives the pickle's Ingested (counts, first dropped rows and their
    order, rows, maps) while its unlabeled rows never become frame rows."""
    from wafer.data.ingest import convert_pickle, ingest_file, read_ragged_npz

    df = lswmd_frame(
        [
            (wafer(), None),
            (wafer(), "Center"),
            (wafer(9, 11), None),
            (wafer(), "Foo"),
            (wafer(14, 12, (3, 4)), "Edge-Ring"),
        ]
    )
    pkl, npz = tmp_path / "a.pkl", tmp_path / "a.npz"
    df.to_pickle(pkl)
    convert_pickle(pkl, npz)
    a, b = ingest_file(pkl, "drop", trust_pickle=True), ingest_file(npz, "drop")
    assert a.rows_read == b.rows_read == 5
    assert a.dropped == b.dropped and a.dropped["unlabeled"] == 2
    assert list(a.first_dropped.items()) == list(b.first_dropped.items())
    assert b.first_dropped == {"unlabeled": 0, "unknown_label": 3}
    assert a.source_row.tolist() == b.source_row.tolist() == [1, 4]
    assert np.array_equal(a.flat, b.flat) and np.array_equal(a.shapes, b.shapes)
    frame, rows = read_ragged_npz(npz, labeled_only=True)
    assert rows.tolist() == [1, 3, 4] and frame.attrs["unlabeled_rows"].tolist() == [0, 2]
    assert len(read_ragged_npz(npz)[0]) == 5
