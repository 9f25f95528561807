"""The bad-input and fault catalogue, 3: bounded resources.

The map-size cap and the byte caps, checked from the file header before decoding."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wafer.core.errors import WaferInputError
from wafer.inputs.read import read_maps

from conftest import (
    lswmd_frame,
    pipeline_args,
    run_cli,
    wafer,
)

# --------------------------------------------------------------------------- 3. resources


def _npy_header_only(shape: tuple[int, ...], dtype=np.uint8) -> bytes:
    """A .npy header claiming ``shape`` with (almost) no data after it: a tiny file that would
    decode into a huge array."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf,
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": shape,
        },
    )
    return buf.getvalue() + b"\0" * 64


def test_oversized_png_is_refused_from_its_header(tmp_path):
    """A 12000 x 12000 PNG (a small file) is refused before its pixels are decoded."""
    import time

    Image.new("1", (12000, 12000)).save(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size < 1_000_000
    t0 = time.perf_counter()
    (item,) = read_maps(tmp_path / "big.png")
    assert time.perf_counter() - t0 < 2.0
    assert str(item.error) == (
        f"{tmp_path / 'big.png'}: map is 12000x12000 dies, over the map-size cap of 1024 a side"
    )


def test_oversized_npy_and_npz_are_refused_from_their_headers(tmp_path):
    """A .npy or an .npz member claiming a 20000 x 20000 map, or a stack of 4 GB that the
    member does not hold, is refused from its header (the data is never read)."""
    (tmp_path / "big.npy").write_bytes(_npy_header_only((20000, 20000)))
    with zipfile.ZipFile(tmp_path / "big.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.npy", _npy_header_only((20000, 20000)))
        zf.writestr("stack.npy", _npy_header_only((10**5, 200, 200)))
        zf.writestr("ok.npy", _npy_header_only((20, 30)))  # truncated data: its own error
    (item,) = read_maps(tmp_path / "big.npy")
    assert "map is 20000x20000 dies, over the map-size cap of 1024" in str(item.error)
    items = {it.source.rsplit("[", 1)[1]: it for it in read_maps(tmp_path / "big.npz")}
    assert "over the map-size cap" in str(items["big]"].error)
    assert "truncated array: shape (100000, 200, 200)" in str(items["stack]"].error)
    assert "truncated array: shape (20, 30)" in str(items["ok]"].error)


def test_max_side_is_an_option(tmp_path, tiny_pipeline):
    """`--max-side` lowers (or raises) the cap; the refusal is one line for that map and the
    rest of the batch goes on."""
    np.save(tmp_path / "m.npy", wafer(40, 40))
    np.save(tmp_path / "s.npy", wafer(12, 12))
    out = tmp_path / "p.csv"
    inputs = [str(tmp_path / "m.npy"), str(tmp_path / "s.npy")]
    res = run_cli(
        ["predict", *inputs, "-o", str(out), "--max-side", "32", *pipeline_args(tiny_pipeline)]
    )
    assert res.exit_code == 0, res.output
    assert res.stderr.strip() == (
        f"error: {tmp_path / 'm.npy'}: map is 40x40 dies, over the map-size cap of 32 a side"
    )
    assert len(read_maps(tmp_path / "m.npy", max_side=40)[0].map) == 40


def test_oversized_maps_in_trusted_pickles_and_ragged_npz(tmp_path):
    """Maps in a (trusted) pickle or a ragged-maps .npz are checked by shape, per row."""
    from wafer.data.ingest import convert_pickle

    lswmd_frame([(wafer(12, 12), "Center"), (wafer(30, 1100), None)]).to_pickle(tmp_path / "w.pkl")
    items = read_maps(tmp_path / "w.pkl", trust_pickle=True)
    assert items[0].error is None and "row 1: map is 30x1100 dies" in str(items[1].error)
    convert_pickle(tmp_path / "w.pkl", tmp_path / "w.npz")
    items = read_maps(tmp_path / "w.npz")
    assert items[0].error is None and "row 1: map is 30x1100 dies" in str(items[1].error)


def test_demo_refuses_an_oversized_upload_without_waiting_for_the_lock(tmp_path, tiny_pipeline):
    """An oversized upload is refused while another request holds the model lock: the check
    happens before the lock, so it neither waits nor makes others wait."""
    import threading

    from wafer.apps.demo.analysis import handle_upload
    from wafer.apps.demo.assets import DemoAssets
    from wafer.serving.predictor import Predictor

    p = Predictor.load(*(tiny_pipeline[k] for k in ("model", "calibration", "thresholds")), "cpu")
    assets = DemoAssets(p, {}, [], max_side=256)
    Image.new("1", (4000, 4000)).save(tmp_path / "big.png")
    result = {}
    with assets.lock:  # another user's request is running
        t = threading.Thread(
            target=lambda: result.update(a=handle_upload(assets, tmp_path / "big.png"))
        )
        t.start()
        t.join(timeout=10)
        assert not t.is_alive()
    a = result["a"]
    assert a.row is None and "big.png: map is 4000x4000 dies, over the map-size cap" in a.warning_md
    assert str(tmp_path) not in a.warning_md


def _peak_rss_growth_mib(path: Path, extra: str = "") -> float:
    """Peak resident set (MiB) that reading every map of ``path`` with read_maps adds, in a
    fresh process (so nothing else of the test run counts)."""
    code = (
        "import resource, sys\n"
        "from wafer.inputs.read import read_maps\n"
        f"{extra}\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "n = sum(it.map is not None for it in read_maps(sys.argv[1]))\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(n, (after - before) / 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), float(out[1])


def test_a_compressed_stack_is_streamed_map_by_map(tmp_path):
    """A compressed .npz stack of 96 MB of maps is read a map at a time from the member's
    stream: reading every map adds a few MiB to the peak, not the stack (issue 29: each
    compressed member used to be read whole, a 1.9 MB file peaking at 2.8 GB)."""
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 3, size=(96, 1000, 1000), dtype=np.uint8)
    stack[:, :, :2] = 1  # every map has dies
    np.savez_compressed(tmp_path / "stack.npz", maps=stack)
    del stack
    n, grown = _peak_rss_growth_mib(tmp_path / "stack.npz")
    assert n == 96
    assert grown < 40, f"reading the stack grew the peak by {grown:.0f} MiB"


def test_a_decompression_bomb_is_refused_from_the_zip_directory(tmp_path, tiny_pipeline):
    """A 1 MB .npz whose member inflates to 600 MB of zeros is refused in one line before any
    byte is decompressed."""
    header = _npy_header_only((600, 1000, 1000))
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("maps.npy", "w", force_zip64=True) as fh:
            fh.write(header)
            block = bytes(2**24)
            for _ in range(600 * 10**6 // len(block)):
                fh.write(block)
    assert (tmp_path / "bomb.npz").stat().st_size < 2**20
    (item,) = read_maps(tmp_path / "bomb.npz")
    assert "refused as a decompression bomb" in str(item.error)
    args = ["predict", str(tmp_path / "bomb.npz"), "-o", str(tmp_path / "p.csv")]
    res = run_cli([*args, *pipeline_args(tiny_pipeline)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert [ln for ln in res.stderr.splitlines() if "decompression bomb" in ln][0].startswith(
        f"error: {tmp_path / 'bomb.npz'}[maps]: decompresses to"
    )


def _ragged(maps: list[np.ndarray]) -> dict[str, np.ndarray]:
    flat = np.concatenate([m.ravel() for m in maps]).astype(np.uint8)
    shapes = np.array([m.shape for m in maps], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([m.size for m in maps])]).astype(np.int64)
    labels = np.array(["Center"] * len(maps)).astype("<U32")
    return {"flat": flat, "shapes": shapes, "offsets": offsets, "failure_type": labels}


def test_ingest_caps_the_map_size_before_reading_the_dies(tmp_path):
    """ingest.max_side: a map over the cap in a ragged .npz is invalid (too_large: dropped and
    counted, or one line with on_invalid=fail) and its dies are never read; the others are
    kept (issue 29: ingest had no map-size cap)."""
    from wafer.data.ingest import ingest_file

    rng = np.random.default_rng(0)
    big = rng.integers(1, 3, size=(3000, 2500), dtype=np.uint8)
    np.savez_compressed(tmp_path / "in.npz", **_ragged([wafer(20, 20), big, wafer(30, 24)]))
    ing = ingest_file(tmp_path / "in.npz", "drop", max_side=1024)
    assert len(ing.labels) == 2 and ing.dropped["too_large"] == 1
    assert ing.first_dropped["too_large"] == 1
    with pytest.raises(WaferInputError, match=r"row 1: too_large: map is 3000x2500 dies"):
        ingest_file(tmp_path / "in.npz", "fail", max_side=1024)
    assert len(ingest_file(tmp_path / "in.npz", "drop", max_side=4096).labels) == 3


def test_a_small_npz_cannot_make_ingest_grow(tmp_path):
    """The issue's case: a 200 KB .npz holding one 10000 x 20000 map. The ingest stage refuses
    it in one line from the zip directory (a 1000:1 decompression bomb), adding little to the
    peak; it used to peak at 2.4 GB and write a 200 MB ingested.npz."""
    zeros = np.zeros((10000, 20000), np.uint8)
    arrays = _ragged([zeros])
    np.savez_compressed(tmp_path / "bomb.npz", **arrays)
    del zeros, arrays
    assert (tmp_path / "bomb.npz").stat().st_size < 400_000
    code = (
        "import resource, sys\n"
        "from wafer.core.errors import WaferInputError\n"
        "from wafer.data.ingest import ingest_file\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    ingest_file(sys.argv[1], 'drop', 1024)\n"
        "    print('read')\n"
        "except WaferInputError as exc:\n"
        "    print(exc)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "bomb.npz")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert "refused as a decompression bomb" in out[0]
    assert float(out[1]) < 50
