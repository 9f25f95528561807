"""The PNG encoding of a wafer map and the plausibility check of a decoded image
(wafer.inputs.png)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from wafer.core.errors import WaferInputError
from wafer.inputs.png import decode_png, encode_png, looks_like_wafer, png_pixels

from conftest import wafer

# --------------------------------------------------------------------------- PNG encoding


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (25, 27), (64, 40), (5, 300)])
def test_png_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        m = rng.integers(0, 3, shape).astype(np.uint8)
        m.flat[0] = 1  # at least one die
        data = encode_png(m)
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "L" and im.size == (shape[1], shape[0])
            assert set(np.unique(np.asarray(im))) <= {0, 128, 255}
        np.testing.assert_array_equal(decode_png(data), m)


def test_png_decoding_thresholds_colour_and_16_bit(tmp_path):
    grey = np.array([[0, 63, 64, 128, 191, 192, 255]], dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buf, format="PNG")
    np.testing.assert_array_equal(decode_png(buf.getvalue()), [[0, 0, 1, 1, 1, 2, 2]])
    m = wafer(10, 10, (4, 4))
    levels = np.array([0, 128, 255], dtype=np.uint8)[m]
    Image.fromarray(np.stack([levels] * 3, axis=-1), mode="RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(decode_png(tmp_path / "rgb.png"), m)
    Image.fromarray(levels.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(decode_png(tmp_path / "g16.png"), m)


def test_encode_png_rejects_invalid_maps():
    with pytest.raises(WaferInputError, match="values outside"):
        encode_png(np.full((3, 3), 3))
    with pytest.raises(WaferInputError, match="no die"):
        encode_png(np.zeros((3, 3)))


def test_looks_like_wafer():
    assert looks_like_wafer(wafer(25, 27, (3, 12))) == (True, "")
    assert looks_like_wafer(
        decode_png(encode_png(wafer(30, 20))), png_pixels(encode_png(wafer(30, 20)))
    )[0]
    ok, why = looks_like_wafer(np.ones((20, 20), dtype=np.uint8))
    assert not ok and "too few distinct levels" in why
    square = np.ones((20, 20), dtype=np.uint8)
    square[5, 5] = 2
    ok, why = looks_like_wafer(square)
    assert not ok and "not roughly round" in why
    ok, why = looks_like_wafer(np.pad(wafer(2000, 2000), 1))
    assert not ok and "too large" in why
    photo = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8)
    ok, why = looks_like_wafer(np.digitize(photo, (64, 192)), photo)
    assert not ok and "not close to the grey levels" in why
