"""Reading the input formats of `wafer predict` and the demo (wafer.inputs.read): formats,
refusals, laziness and ranged reads."""

from __future__ import annotations

import numpy as np

from wafer.inputs.read import read_maps

from conftest import (
    good_maps,
    lswmd_frame,
    wafer,
    write_legacy_pickle,
)

# --------------------------------------------------------------------------- reading inputs


def test_read_maps_formats(tmp_path):
    maps = good_maps()
    np.save(tmp_path / "one.npy", maps[0])
    np.save(tmp_path / "stack.npy", np.stack([maps[0], maps[0]]))
    np.savez(tmp_path / "z.npz", a=maps[1], b=np.stack([maps[2], maps[2]]))
    write_legacy_pickle(lswmd_frame([(maps[3], "Center"), (maps[4], None)]), tmp_path / "old.pkl")
    (tmp_path / "notes.txt").write_text("ignored in a folder")
    got = {it.source: it for it in read_maps(tmp_path, trust_pickle=True)}
    d = str(tmp_path)
    assert list(got) == [
        f"{d}/old.pkl row 0",
        f"{d}/old.pkl row 1",  # unlabeled rows are predicted too
        f"{d}/one.npy",
        f"{d}/stack.npy row 0",
        f"{d}/stack.npy row 1",
        f"{d}/z.npz[a]",
        f"{d}/z.npz[b] row 0",
        f"{d}/z.npz[b] row 1",
    ]
    assert all(it.error is None and it.warning is None for it in got.values())
    np.testing.assert_array_equal(got[f"{d}/old.pkl row 1"].map, maps[4])
    np.testing.assert_array_equal(got[f"{d}/z.npz[b] row 1"].map, maps[2])


def test_read_maps_refuses_object_arrays(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = wafer(6, 6, (2, 2)), wafer(7, 7, (3, 3))
    np.save(tmp_path / "ragged.npy", ragged, allow_pickle=True)
    np.savez(tmp_path / "ragged.npz", ok=wafer(6, 6, (2, 2)), bad=ragged)
    (item,) = read_maps(tmp_path / "ragged.npy")
    assert item.map is None
    msg = str(item.error)
    assert msg.startswith(f"{tmp_path / 'ragged.npy'}: object array")
    assert ".npz" in msg and "wafer convert" in msg and "\n" not in msg
    assert "allow_pickle" not in msg
    items = {it.source.rsplit("[", 1)[1]: it for it in read_maps(tmp_path / "ragged.npz")}
    assert items["ok]"].error is None
    assert "object array" in str(items["bad]"].error)


def test_read_maps_unreadable_and_missing(tmp_path):
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "junk.txt").write_text("?")
    for name, reason in [
        ("junk.pkl", "not a readable pickle"),
        ("junk.npy", "not a readable .npy"),
        ("junk.txt", "unsupported input"),
        ("missing.png", "no such file"),
    ]:
        (item,) = read_maps(tmp_path / name, trust_pickle=True)
        assert str(item.error).startswith(f"{tmp_path / name}: {reason}")
    (tmp_path / "empty").mkdir()
    (item,) = read_maps(tmp_path / "empty")
    assert "no input files" in str(item.error)


def test_readers_are_lazy_and_read_stored_arrays_in_place(tmp_path):
    """read_maps knows the count at once and makes each item only when taken; a stack is read
    map by map (FileArray), from the file when uncompressed and from the member's stream when
    compressed, and both give the same maps."""
    from wafer.data.arrays import FileArray
    from wafer.inputs.read import Items

    made = []
    items = Items(3, lambda i: made.append(i) or i)
    assert len(items) == 3 and made == []
    assert list(items) == [0, 1, 2] and items[-1] == 2 and items[1:] == [1, 2]

    stack = np.stack([wafer(10, 10, (k, 2)) for k in range(6)])
    np.save(tmp_path / "s.npy", stack)
    np.savez_compressed(tmp_path / "z.npz", s=stack)
    np.savez(tmp_path / "u.npz", s=stack)
    for name in ("s.npy", "z.npz", "u.npz"):
        got = read_maps(tmp_path / name)
        assert len(got) == 6
        for k, it in enumerate(got):
            np.testing.assert_array_equal(it.map, stack[k], err_msg=name)
    with open(tmp_path / "s.npy", "rb") as fh:
        np.lib.format.read_magic(fh)
        np.lib.format.read_array_header_1_0(fh)
        offset = fh.tell()
    fa = FileArray(lambda: open(tmp_path / "s.npy", "rb"), offset, stack.shape, stack.dtype, "s")
    np.testing.assert_array_equal(fa[4], stack[4])
    np.testing.assert_array_equal(fa[1:3], stack[1:3])
    np.testing.assert_array_equal(fa[0], stack[0])  # back to the start: the stream reopens
