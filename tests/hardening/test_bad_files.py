"""The bad-input and fault catalogue, 5: bad input files (the cases that already passed, kept
as regressions)."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
from PIL import Image

from wafer.inputs.png import encode_png
from wafer.inputs.read import read_maps

from conftest import (
    lswmd_frame,
    pipeline_args,
    run_cli,
    wafer,
)

# --------------------------------------------------------------------------- 5. bad input files


def test_text_file_named_npy_is_not_called_an_object_array(tmp_path):
    """A text file named .npy: 'not a .npy array', never 'object array', never a hint to
    allow pickles."""
    (tmp_path / "notes.npy").write_text("hello")
    (item,) = read_maps(tmp_path / "notes.npy")
    assert str(item.error) == f"{tmp_path / 'notes.npy'}: not a .npy array (no NUMPY header)"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("trunc.npy", lambda: _npy_bytes(wafer())[:-20], "not a readable .npy array"),
        ("trunc.png", lambda: encode_png(wafer())[:40], "not a readable image"),
        ("trunc.npz", lambda: _npz_bytes()[:50], "not a readable .npz file"),
        ("junk.png", lambda: b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "not a readable image"),
        ("junk.npz", lambda: b"PK\x03\x04 not really", "not a readable .npz file"),
        ("values.npy", lambda: _npy_bytes(np.full((4, 4), 7)), "values outside {0, 1, 2}"),
        ("nodie.npy", lambda: _npy_bytes(np.zeros((4, 4))), "no die"),
        ("strings.npy", lambda: _npy_bytes(np.array([["a", "b"]])), "non-numeric dtype"),
        ("4d.npy", lambda: _npy_bytes(np.ones((1, 1, 2, 2))), "4 dimension(s)"),
        ("empty.npy", lambda: _npy_bytes(np.zeros((0, 5, 5))), "empty stack"),
        ("obj.npy", lambda: _npy_bytes(np.array([None, 1], dtype=object)), "object array"),
        ("empty.npz", lambda: _npz_bytes(empty=True), "no arrays"),
        ("nothing.png", lambda: b"", "not a readable image"),
    ],
)
def test_bad_file_is_one_line(tmp_path, name, data, reason):
    """Truncated, corrupt, empty, wrongly-valued, wrongly-shaped and object-array files: one
    error naming the file and the reason, no hint to unpickle."""
    (tmp_path / name).write_bytes(data())
    items = read_maps(tmp_path / name)
    err = str(items[0].error)
    assert items[0].map is None and err.startswith(str(tmp_path / name)), err
    assert reason in err and "\n" not in err and "allow_pickle" not in err


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=arr.dtype.hasobject)
    return buf.getvalue()


def _npz_bytes(empty: bool = False) -> bytes:
    buf = io.BytesIO()
    if empty:
        zipfile.ZipFile(buf, "w").close()
    else:
        np.savez(buf, a=wafer())
    return buf.getvalue()


def test_truncated_and_foreign_pickles_when_trusted(tmp_path):
    """Even with --trust-pickle, a truncated pickle or one holding no DataFrame is one line."""
    data = pickle.dumps(lswmd_frame([(wafer(), "Center")]))
    (tmp_path / "trunc.pkl").write_bytes(data[: len(data) // 2])
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    (a,) = read_maps(tmp_path / "trunc.pkl", trust_pickle=True)
    (b,) = read_maps(tmp_path / "list.pkl", trust_pickle=True)
    assert "not a readable pickle" in str(a.error)
    assert "expected a pandas DataFrame, found list" in str(b.error)


def test_decompression_bomb_over_pils_limit(tmp_path, monkeypatch):
    """An image over PIL's own decompression-bomb limit is one line even with a high cap."""
    Image.new("L", (300, 300)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    (item,) = read_maps(tmp_path / "bomb.png", max_side=10**6)
    assert "not a readable image: DecompressionBombError" in str(item.error)


def test_symlink_loop_and_odd_names_in_a_folder(tmp_path, tiny_pipeline):
    """A symlink loop in a folder is ignored; odd file names (spaces, quotes, commas, a
    newline, non-ASCII) come through intact in the CSV."""
    import csv

    d = tmp_path / "maps"
    d.mkdir()
    (d / "loop.npy").symlink_to(d / "loop.npy")
    odd = ['a b,"c".npy', "é\nx.npy"]
    for n in odd:
        np.save(d / n, wafer())
    out = tmp_path / "p.csv"
    res = run_cli(["predict", str(d), "-o", str(out), *pipeline_args(tiny_pipeline)])
    assert res.exit_code == 0, res.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["source"] for r in rows) == sorted(str(d / n) for n in odd)


def test_interrupted_write_keeps_the_previous_file(tmp_path):
    """A writer killed mid-write (here: an exception) leaves the previous file, whole, and no
    temporary file: wafer.core.io.atomic_path."""
    from wafer.core.io import atomic_path

    (tmp_path / "out.csv").write_text("good\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "out.csv") as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert (tmp_path / "out.csv").read_text() == "good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_unsupported_and_missing_inputs(tmp_path):
    """A file of no supported kind (and not sniffable), a missing file, an empty folder."""
    (tmp_path / "w.csv").write_text("a,b\n")
    (tmp_path / "empty").mkdir()
    for name, reason in [
        ("w.csv", "unsupported input"),
        ("missing.npy", "no such file"),
        ("empty", "no input files"),
    ]:
        (item,) = read_maps(tmp_path / name)
        assert str(item.error).startswith(f"{tmp_path / name}: {reason}")


def test_an_empty_ragged_npz_gets_its_line(tmp_path, tiny_pipeline):
    """A ragged-maps .npz holding no map, in a batch with a good map, gets an error row and a
    line on stderr (it used to get none at all)."""
    np.savez(
        tmp_path / "empty.npz",
        flat=np.zeros(0, np.uint8),
        shapes=np.zeros((0, 2), np.int64),
        offsets=np.zeros(1, np.int64),
    )
    np.save(tmp_path / "good.npy", wafer())
    out = tmp_path / "p.csv"
    res = run_cli(["predict", str(tmp_path), "-o", str(out), *pipeline_args(tiny_pipeline)])
    assert res.exit_code == 0, res.output
    assert f"error: {tmp_path / 'empty.npz'}: ragged maps: the file holds no map" in res.stderr
    assert "empty.npz" in out.read_text() and "good.npy" in out.read_text()


def test_the_wafer_warning_cites_the_cap_in_force(tmp_path):
    """With --max-side raised to 2000, a 1200 x 1300 map is read, and its "does not look like
    a wafer map" warning does not call it too large for the default 1024 limit."""
    big = np.ones((1200, 1300), np.uint8)
    (item,) = read_maps(_save(tmp_path / "big.npy", big), max_side=2000)
    assert item.error is None
    assert "limit 1024" not in (item.warning or "") and "too large" not in (item.warning or "")
    (item,) = read_maps(_save(tmp_path / "big.npy", big))  # the default cap refuses it
    assert "over the map-size cap of 1024" in str(item.error)


def _save(path, arr):
    np.save(path, arr)
    return path


@pytest.mark.parametrize("kind", ["png", "folder", "npz"])
def test_convert_says_what_the_input_is(tmp_path, kind):
    """`wafer convert` on a PNG, an .npz or a folder: one line saying it reads pickles only
    (a folder used to be 'no such file', a PNG a two-line unpickling error)."""
    if kind == "png":
        src = tmp_path / "m.png"
        src.write_bytes(encode_png(wafer()))
    elif kind == "npz":
        src = tmp_path / "m.npz"
        np.savez(src, m=wafer())
    else:
        src = tmp_path / "maps"
        src.mkdir()
    res = run_cli(["convert", str(src), "--trust-pickle", "-o", str(tmp_path / "o.npz")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert line.startswith(f"error: {src}: ")
    assert {"png": "a PNG image", "npz": "an .npz file", "folder": "a folder"}[kind] in line
    assert len(res.stderr.strip().splitlines()) == 1
