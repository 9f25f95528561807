"""The PNG encoding of a wafer map, and whether a decoded image plausibly is one.

Encoding (:func:`encode_png` / :func:`decode_png`)
    8-bit grayscale, one pixel per die, row 0 at the top: outside (0) -> 0, pass (1) -> 128,
    fail (2) -> 255. Decoding converts any other mode to 8-bit grayscale first (a colour image
    via PIL's ITU-R 601-2 luma; 16-bit images are scaled to 8 bit) and thresholds at 64 and 192:
    ``v < 64`` -> 0, ``64 <= v < 192`` -> 1, ``v >= 192`` -> 2. Any image therefore decodes;
    :func:`looks_like_wafer` says whether the result is plausibly a wafer map (grey levels
    close to {0, 128, 255}, at least two levels, dies inside a roughly round region, not too
    large) and why not. Its verdict is a warning, not an error: the map is still predicted.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from wafer.data.maprules import MAX_SIDE, check_map, check_side

PNG_LEVELS = np.array([0, 128, 255], dtype=np.uint8)  # outside, pass, fail
PNG_THRESHOLDS = (64, 192)  # v < 64 -> 0, 64 <= v < 192 -> 1, v >= 192 -> 2
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# looks_like_wafer limits
OFF_LEVEL_TOLERANCE = 32  # a grey value farther than this from {0, 128, 255} is "off level"
MAX_OFF_LEVEL_SHARE = 0.01
MAX_DIES_OUTSIDE_ELLIPSE = 0.05  # real WM-811K maps: at most 2.6% (52,903-map subset)


def encode_png(m: np.ndarray) -> bytes:
    """A valid die map -> 8-bit grayscale PNG bytes (0 -> 0, 1 -> 128, 2 -> 255)."""
    from PIL import Image

    m = check_map(m, "map", max_side=None)
    buf = io.BytesIO()
    Image.fromarray(PNG_LEVELS[m], mode="L").save(buf, format="PNG")
    return buf.getvalue()


def png_pixels(data: bytes | str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """The image as an 8-bit grayscale ``(H, W)`` array (colour -> luma, 16 bit -> 8 bit; an
    alpha channel is dropped). With ``max_side``, an image larger than that a side is refused
    from its header, before its pixels are decoded."""
    from PIL import Image

    src = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    with warnings.catch_warnings():
        if max_side is not None:  # the cap below is stricter than PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        im = Image.open(src)  # lazy: reads the header only
    with im:
        w, h = im.size
        check_side((h, w), "image" if src is not data else data, None, max_side)
        im.load()
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            arr = np.asarray(im, dtype=np.float64)
            scale = 255.0 / 65535.0 if arr.max(initial=0) > 255 else 1.0
            return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return np.asarray(im.convert("L"), dtype=np.uint8)


def decode_pixels(gray: np.ndarray) -> np.ndarray:
    """8-bit grey values -> die states by the thresholds 64 and 192."""
    return np.digitize(gray, PNG_THRESHOLDS).astype(np.uint8)


def decode_png(data: bytes | str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """PNG bytes or path -> uint8 die map {0, 1, 2} (see the module docstring)."""
    return decode_pixels(png_pixels(data, max_side))


def looks_like_wafer(
    m: np.ndarray, pixels: np.ndarray | None = None, max_side: int | None = MAX_SIDE
) -> tuple[bool, str]:
    """Whether the die map ``m`` (and, for a decoded image, its grey ``pixels``) plausibly is a
    wafer map; the reason when not ("" when it is). Checks: grey levels close to {0, 128, 255};
    at least two levels (outside and dies); at most ``max_side`` cells a side (the cap the map
    was read under; None: none); the dies inside the
    ellipse inscribed in their bounding box (up to 5% outside, half a cell of slack)."""
    m = np.asarray(m)
    if pixels is not None:
        p = np.asarray(pixels, dtype=np.int16)
        dist = np.min(np.abs(p[..., None] - PNG_LEVELS.astype(np.int16)), axis=-1)
        off = float(np.mean(dist > OFF_LEVEL_TOLERANCE)) if p.size else 0.0
        if off > MAX_OFF_LEVEL_SHARE:
            return False, (
                f"{off:.0%} of the pixels are not close to the grey levels 0/128/255 of a "
                "wafer-map PNG (a photo or a rendered figure?)"
            )
    if m.ndim != 2 or m.size == 0:
        return False, f"not a 2-D map (shape {m.shape})"
    if max_side is not None and max(m.shape) > max_side:
        return False, f"too large for a die map ({m.shape[0]}x{m.shape[1]}; limit {max_side})"
    levels = np.unique(m)
    if len(levels) < 2:
        return False, f"too few distinct levels (only {levels.tolist()})"
    inside = m > 0
    if not inside.any():
        return False, "no die"
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    box = inside[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = box.shape
    yy, xx = np.ogrid[:h, :w]
    dy = np.maximum(np.abs(yy + 0.5 - h / 2) - 0.5, 0) / (h / 2)
    dx = np.maximum(np.abs(xx + 0.5 - w / 2) - 0.5, 0) / (w / 2)
    share = float((box & (dy**2 + dx**2 > 1)).sum()) / float(box.sum())
    if share > MAX_DIES_OUTSIDE_ELLIPSE:
        return False, (
            f"wafer region not roughly round ({share:.0%} of the dies lie outside the ellipse "
            "inscribed in their bounding box)"
        )
    return True, ""
