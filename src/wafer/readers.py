"""The input formats that ``wafer predict`` and the demo read, and the checks every map passes.

Inputs (:func:`read_maps`; each map becomes one :class:`Item`, named by its source)

* ``.npy``: one 2-D map (``"file.npy"``) or a 3-D stack ``(N, H, W)`` (``"file.npy row i"``),
  never unpickled. Object arrays (ragged maps) would need unpickling and are refused: save such
  maps as a ragged-maps ``.npz`` (``wafer convert``) or as ``.npz`` with one member per map.
* ``.npz``: every member a 2-D map (``"file.npz[name]"``) or a 3-D stack
  (``"file.npz[name] row i"``); no pickles. A **ragged-maps** ``.npz`` (members ``flat``,
  ``shapes``, ``offsets``: what ``wafer convert`` and the ``ingest`` stage write, see
  :mod:`wafer.ingest`) gives one map per row, ``"file.npz row 12"`` (its ``source_row`` when
  it has one: the row of the pickle it was converted from).
* ``.png``: one map per image, in the encoding below (``"file.png"``).
* an LSWMD-format pickle (``.pkl``/``.pickle``, optionally ``.xz``/``.gz``/``.bz2``/``.zip``;
  Kaggle's legacy ``LSWMD.pkl`` too), **only with** ``trust_pickle=True``
  (``wafer predict --trust-pickle``): a pickle runs code when it is loaded. Every row of its
  ``waferMap`` column, labeled or not, is read (``"file.pkl row 12"``). Without the flag a
  pickle given by name is an error item, and one found in a folder is skipped (reported
  through ``on_skip``). ``wafer convert`` turns a trusted pickle into a ragged-maps ``.npz``
  once, which is then read without the flag.
* a folder: every file of the kinds above in it (not recursive), sorted by name.

Bounded resources: a map larger than ``max_side`` dies a side (default :data:`MAX_SIDE`) is
refused, and so is any array over :data:`MAX_ARRAY_BYTES`, from the file's header (the PNG
header, the ``.npy`` header of a file or of each ``.npz`` member, the ragged shapes) before
anything is decoded; pickled maps are checked by shape before they are resized.

Every map is validated (:func:`check_map`): 2-D, non-empty, integer values in {0, 1, 2}
(outside, pass, fail), at least one die (a value > 0). An invalid map, or a file that cannot be
read, becomes an item with an error (:class:`wafer.io.WaferInputError`: one line,
``"file, row N: reason"``); the other items are unaffected.

PNG encoding of a wafer map (:func:`encode_png` / :func:`decode_png`)
    8-bit grayscale, one pixel per die, row 0 at the top: outside (0) -> 0, pass (1) -> 128,
    fail (2) -> 255. Decoding converts any other mode to 8-bit grayscale first (a colour image
    via PIL's ITU-R 601-2 luma; 16-bit images are scaled to 8 bit) and thresholds at 64 and 192:
    ``v < 64`` -> 0, ``64 <= v < 192`` -> 1, ``v >= 192`` -> 2. Any image therefore decodes;
    :func:`looks_like_wafer` says whether the result is plausibly a wafer map (grey levels
    close to {0, 128, 255}, at least two levels, dies inside a roughly round region, not too
    large) and why not. Its verdict is a warning, not an error: the map is still predicted.
"""

from __future__ import annotations

import bisect
import io
import math
import os
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np

from wafer.io import WaferInputError
from wafer.maprules import MapProblem, as_candidate, value_problems

# --------------------------------------------------------------------------- PNG encoding

PNG_LEVELS = np.array([0, 128, 255], dtype=np.uint8)  # outside, pass, fail
PNG_THRESHOLDS = (64, 192)  # v < 64 -> 0, 64 <= v < 192 -> 1, v >= 192 -> 2
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"

# The map-size cap: maps larger than this many dies a side are refused, checked from the file
# header before anything is decoded (the largest real WM-811K map is 212 dies across).
# ``wafer predict --max-side`` and the demo's ``--max-side`` change it.
MAX_SIDE = 1024
# Any one array (a .npy, an .npz member, a ragged buffer) is refused above this many bytes,
# from its header: a small compressed file must not unpack into gigabytes.
MAX_ARRAY_BYTES = 2**31

# looks_like_wafer limits
OFF_LEVEL_TOLERANCE = 32  # a grey value farther than this from {0, 128, 255} is "off level"
MAX_OFF_LEVEL_SHARE = 0.01
MAX_DIES_OUTSIDE_ELLIPSE = 0.05  # real WM-811K maps: at most 2.6% (52,903-map subset)


def check_side(
    shape: tuple[int, ...],
    source: str | os.PathLike,
    row: int | None = None,
    max_side: int | None = MAX_SIDE,
) -> None:
    """:class:`WaferInputError` when a map of ``shape`` (its last two sides) is larger than
    ``max_side`` dies a side (None: no cap)."""
    if max_side is not None and len(shape) >= 2 and max(shape[-2:]) > max_side:
        h, w = shape[-2:]
        raise WaferInputError(
            source, f"map is {h}x{w} dies, over the map-size cap of {max_side} a side", row
        )


def check_map(
    m: object,
    source: str | os.PathLike,
    row: int | None = None,
    max_side: int | None = MAX_SIDE,
) -> np.ndarray:
    """The map as uint8 {0, 1, 2}, or :class:`WaferInputError` naming ``source`` (and ``row``):
    the rules of :mod:`wafer.maprules` (the ones ``ingest`` applies) and the map-size cap of
    ``max_side`` dies a side."""
    try:
        m = as_candidate(m)
        check_side(m.shape, source, row, max_side)
        problem = value_problems([m])[0]
    except MapProblem as exc:
        raise WaferInputError(source, exc.detail, row) from None
    if problem is not None:
        raise WaferInputError(source, problem.detail, row)
    return m.astype(np.uint8)


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


def looks_like_wafer(m: np.ndarray, pixels: np.ndarray | None = None) -> tuple[bool, str]:
    """Whether the die map ``m`` (and, for a decoded image, its grey ``pixels``) plausibly is a
    wafer map; the reason when not ("" when it is). Checks: grey levels close to {0, 128, 255};
    at least two levels (outside and dies); at most MAX_SIDE cells a side; the dies inside the
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
    if max(m.shape) > MAX_SIDE:
        return False, f"too large for a die map ({m.shape[0]}x{m.shape[1]}; limit {MAX_SIDE})"
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


# --------------------------------------------------------------------------- reading inputs


class Item(NamedTuple):
    """One map to predict: its source name and either the map or the error; plus a warning
    (looks_like_wafer's reason) when the map does not look like a wafer map."""

    source: str
    map: np.ndarray | None
    error: WaferInputError | None = None
    warning: str | None = None


PICKLE_SUFFIXES = (".pkl", ".pickle")
COMPRESSION_SUFFIXES = ("", ".xz", ".gz", ".bz2", ".zip")
SUPPORTED = "a .npy, .npz or .png file, a folder of them, or a trusted pickle with --trust-pickle"
RAGGED_MEMBERS = ("flat", "shapes", "offsets")

PICKLE_REFUSED = (
    "a pickle can run code when it is loaded, so it is not read without --trust-pickle "
    "(give that flag only for a file from a source you trust, or convert the file once with "
    "`wafer convert` and read the .npz it writes)"
)
OBJECT_ARRAY_REFUSED = (
    "object array (e.g. maps of different shapes), which only unpickling could read, and "
    "unpickling can run code: refused; save the maps as a ragged-maps .npz (`wafer convert`) "
    "or as .npz with one member per map"
)

SkipHook = Callable[[Path, str], None]


class Items(Sequence):
    """``n`` items, each made by ``make(i)`` when it is taken (not kept): a reader's view of a
    file whose maps are validated one by one as they are predicted."""

    def __init__(self, n: int, make: Callable[[int], Item]):
        self._n, self._make = n, make

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._make(i)

    def __iter__(self) -> Iterator[Item]:
        return (self._make(i) for i in range(self._n))


class Chain(Sequence):
    """Several item sequences (a folder's files, an .npz's members) read one after another."""

    def __init__(self, parts: list[Sequence[Item]]):
        self._parts = parts
        self._ends = list(np.cumsum([len(p) for p in parts], dtype=np.int64))

    def __len__(self) -> int:
        return int(self._ends[-1]) if self._ends else 0

    def __getitem__(self, i):
        n = len(self)
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(n))]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        k = bisect.bisect_right(self._ends, i)
        start = int(self._ends[k - 1]) if k else 0
        return self._parts[k][i - start]

    def __iter__(self) -> Iterator[Item]:
        for p in self._parts:
            yield from p


def input_kind(path: Path) -> str | None:
    """'pickle', 'npy', 'npz' or 'png' from the file name; sniffed from the first bytes when the
    name does not say (PNG and .npy only: a pickle is never recognised by its content); None
    if neither does."""
    name = path.name.lower()
    for s in PICKLE_SUFFIXES:
        if any(name.endswith(s + c) for c in COMPRESSION_SUFFIXES):
            return "pickle"
    for kind in ("npy", "npz", "png"):
        if name.endswith("." + kind):
            return kind
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(NPY_MAGIC):
        return "npy"
    return None


def _ok(source: str, m: object, path: str | Path, row: int | None, max_side: int | None) -> Item:
    try:
        good = check_map(m, path, row, max_side)
    except WaferInputError as exc:
        return Item(source, None, exc)
    ok, why = looks_like_wafer(good)
    return Item(source, good, None, None if ok else f"does not look like a wafer map: {why}")


def _stack(source: str, arr: np.ndarray, path: str | Path, max_side: int | None) -> Sequence[Item]:
    """A 2-D map -> one item, a 3-D stack -> one per map (made when taken), anything else ->
    one error."""
    if arr.ndim == 3:
        if len(arr) == 0:
            return [Item(source, None, WaferInputError(path, f"empty stack, shape {arr.shape}"))]
        return Items(len(arr), lambda i: _ok(f"{source} row {i}", arr[i], path, i, max_side))
    if arr.ndim == 2:
        return [_ok(source, np.asarray(arr), path, None, max_side)]
    return [Item(source, None, WaferInputError(path, _bad_ndim(arr.shape)))]


def _bad_ndim(shape: tuple[int, ...]) -> str:
    return (
        f"array has {len(shape)} dimension(s), shape {shape} "
        "(expected a 2-D map or a 3-D stack of maps)"
    )


def _clean(exc: BaseException) -> str:
    """An exception as one line of text, without any hint to switch a safety check off."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "allow_pickle" in text or "weights_only" in text or "pickle" in text.lower():
        return "its content needs unpickling, which can run code: refused"
    return text[:200]


def _npy_header(
    fh: IO[bytes],
    where: str | Path,
    max_side: int | None,
    ndims: tuple[int, ...] | None = (2, 3),
    byte_cap: bool = True,
) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read and check a .npy header (file or .npz member) without reading the data: the
    magic, a numeric dtype (no objects), ``ndims`` dimensions, the map-size cap, the byte
    cap (unless ``byte_cap`` is off: a :class:`FileArray`, never read whole into memory).
    Returns (shape, fortran_order, dtype); ``fh`` is left at the first data byte."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
    except (ValueError, EOFError, OSError):
        raise WaferInputError(where, "not a .npy array (no NUMPY header)") from None
    try:
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, OSError, SyntaxError) as exc:
        raise WaferInputError(where, f"not a readable .npy header: {_clean(exc)}") from None
    if dtype.hasobject:
        raise WaferInputError(where, OBJECT_ARRAY_REFUSED)
    if dtype.kind not in "iufb":
        raise WaferInputError(where, f"array has non-numeric dtype {dtype}")
    if ndims is not None and len(shape) not in ndims:
        raise WaferInputError(where, _bad_ndim(tuple(shape)))
    check_side(tuple(shape), where, None, max_side)
    nbytes = math.prod(shape) * dtype.itemsize
    if byte_cap and nbytes > MAX_ARRAY_BYTES:
        raise WaferInputError(
            where,
            f"array of shape {tuple(shape)} needs {nbytes / 2**30:.1f} GiB, over the "
            f"{MAX_ARRAY_BYTES / 2**30:.0f} GiB cap: split it into smaller files",
        )
    return tuple(shape), bool(fortran), dtype


class FileArray:
    """A C-order .npy array stored uncompressed at a byte offset of a file, read by ranges as
    it is indexed (``a[i]`` along the first axis, or a slice of it): neither loaded nor mapped,
    so reading every map of a file larger than memory keeps the resident set small."""

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.offset, self.shape, self.dtype = path, offset, shape, dtype
        self.ndim = len(shape)
        self._row = math.prod(shape[1:]) * dtype.itemsize
        self._fh = open(path, "rb")  # noqa: SIM115 - kept open while the items are read

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()

    def __getitem__(self, i) -> np.ndarray:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                raise IndexError("FileArray takes contiguous slices only")
        else:
            start = int(i) + (len(self) if int(i) < 0 else 0)
            if not 0 <= start < len(self):
                raise IndexError(i)
            stop = start + 1
        n = max(0, stop - start)
        self._fh.seek(self.offset + start * self._row)
        data = self._fh.read(n * self._row)
        if len(data) != n * self._row:
            raise WaferInputError(self.path, "truncated array data")
        arr = np.frombuffer(data, dtype=self.dtype).reshape((n, *self.shape[1:]))
        return arr if isinstance(i, slice) else arr[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self[:]
        return a if dtype is None else a.astype(dtype)


def _file_array(
    path: Path,
    start: int,
    size: int,
    where: str | Path,
    max_side: int | None,
    ndims: tuple[int, ...] | None,
) -> FileArray | None:
    """The .npy array stored (uncompressed) at byte ``start`` of ``path``, ``size`` bytes long,
    as a :class:`FileArray` after its header is checked (no byte cap: it is never read whole).
    None when it is Fortran-ordered, empty or longer than ``size`` (the caller then reads it
    the ordinary way, which reports any problem)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        shape, fortran, dtype = _npy_header(fh, where, max_side, ndims, byte_cap=False)
        offset = fh.tell()
    nbytes = math.prod(shape) * dtype.itemsize
    if fortran or not shape or nbytes == 0 or offset - start + nbytes > size:
        return None
    return FileArray(path, offset, shape, dtype)


def _stored_member(
    path: Path, zf: zipfile.ZipFile, member: str, where: str, ndims: tuple[int, ...] | None
) -> FileArray | None:
    """An uncompressed (ZIP_STORED) .npz member read in place (``np.savez`` and
    :func:`wafer.io.save_npz`, hence ``wafer convert``, store members uncompressed); None for
    a compressed member."""
    info = zf.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # stored, unencrypted
        return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    return _file_array(path, start, info.file_size, where, None, ndims)


def _read_array(
    open_fh: Callable[[], IO[bytes]],
    where: str | Path,
    max_side: int | None,
    ndims: tuple[int, ...] | None = (2, 3),
) -> np.ndarray:
    """Header first (:func:`_npy_header`), then the data, never unpickling."""
    with open_fh() as fh:
        _npy_header(fh, where, max_side, ndims)
    try:
        with open_fh() as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise WaferInputError(where, f"not a readable .npy array: {_clean(exc)}") from None


def _read_npy(path: Path, source: str, max_side: int | None, **_: object) -> Sequence[Item]:
    try:
        arr = _file_array(path, 0, path.stat().st_size, path, max_side, (2, 3))
    except WaferInputError:
        arr = None  # _read_array reports it
    if arr is None:
        arr = _read_array(lambda: open(path, "rb"), path, max_side)
    return _stack(source, arr, path, max_side)


def _read_npz(path: Path, source: str, max_side: int | None, **_: object) -> Sequence[Item]:
    try:
        zf = zipfile.ZipFile(path)
        names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise WaferInputError(path, f"not a readable .npz file: {_clean(exc)}") from None
    with zf:
        if not names:
            raise WaferInputError(path, "no arrays in the .npz file")
        members = {n[:-4] if n.endswith(".npy") else n: n for n in names}
        if all(k in members for k in RAGGED_MEMBERS):
            return _read_ragged(zf, members, path, source, max_side)
        parts: list[Sequence[Item]] = []
        for name, member in members.items():
            src, where = f"{source}[{name}]", f"{path}[{name}]"
            try:
                arr = _stored_member(path, zf, member, where, (2, 3))
                if arr is not None:
                    check_side(arr.shape, where, None, max_side)
                else:
                    arr = _read_array(lambda m=member: zf.open(m), where, max_side)
            except WaferInputError as exc:
                parts.append([Item(src, None, exc)])
                continue
            parts.append(_stack(src, arr, where, max_side))
    return Chain(parts)


def _read_ragged(
    zf: zipfile.ZipFile, members: dict[str, str], path: Path, source: str, max_side: int | None
) -> Sequence[Item]:
    """A ragged-maps .npz: one item per row (made when taken), named by its source_row when
    present. The ``flat`` buffer of all dies is read map by map from the file when stored
    uncompressed (as ``wafer convert`` writes it): the full LSWMD.pkl's 811k maps are read in
    bounded memory."""

    def load(name: str) -> np.ndarray:
        return _read_array(lambda: zf.open(members[name]), f"{path}[{name}]", None, None)

    # The shapes are read (and capped) before the buffer that they describe.
    shapes, offsets = load("shapes"), load("offsets")
    n = len(shapes)
    if shapes.ndim != 2 or shapes.shape[1] != 2 or offsets.shape != (n + 1,):
        raise WaferInputError(path, "ragged maps: shapes must be (N, 2) and offsets (N + 1,)")
    sizes = shapes.astype(np.int64).prod(axis=1)
    if (shapes < 0).any() or (np.diff(offsets) != sizes).any() or (n and offsets[0] != 0):
        raise WaferInputError(path, "ragged maps: offsets do not match the shapes")
    rows = load("source_row") if "source_row" in members else np.arange(n)
    if rows.shape != (n,):
        raise WaferInputError(path, "ragged maps: source_row does not match the shapes")
    flat = _stored_member(path, zf, members["flat"], f"{path}[flat]", None)
    if flat is None:
        flat = load("flat")
    if flat.ndim != 1 or flat.dtype != np.uint8 or len(flat) != (offsets[-1] if n else 0):
        raise WaferInputError(path, "ragged maps: flat must be a uint8 buffer of sum(h*w) dies")

    def item(i: int) -> Item:
        row = int(rows[i])
        src = f"{source} row {row}"
        try:
            check_side(tuple(int(v) for v in shapes[i]), path, row, max_side)
        except WaferInputError as exc:
            return Item(src, None, exc)
        m = flat[offsets[i] : offsets[i + 1]].reshape(int(shapes[i, 0]), int(shapes[i, 1]))
        return _ok(src, m, path, row, max_side)

    return Items(n, item)


def _read_png(path: Path, source: str, max_side: int | None, **_: object) -> list[Item]:
    from PIL import Image, UnidentifiedImageError

    try:
        pixels = png_pixels(path, max_side)
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
    ) as exc:
        if isinstance(exc, WaferInputError):
            raise
        raise WaferInputError(
            path, f"not a readable image: {type(exc).__name__}: {_clean(exc)}"
        ) from None
    m = decode_pixels(pixels)
    try:
        good = check_map(m, path, None, max_side)
    except WaferInputError as exc:
        return [Item(source, None, exc)]
    ok, why = looks_like_wafer(good, pixels)
    return [Item(source, good, None, None if ok else f"does not look like a wafer map: {why}")]


def _read_pickle(
    path: Path, source: str, max_side: int | None, trust_pickle: bool = False, **_: object
) -> list[Item]:
    if not trust_pickle:
        raise WaferInputError(path, PICKLE_REFUSED)
    from wafer.ingest import read_lswmd

    df = read_lswmd(path)
    if "waferMap" not in df.columns:
        cols = ", ".join(map(str, df.columns))
        raise WaferInputError(path, f"missing column 'waferMap' (columns: {cols})")
    maps = df["waferMap"].tolist()
    del df
    return Items(len(maps), lambda i: _ok(f"{source} row {i}", maps[i], path, i, max_side))


READERS = {"pickle": _read_pickle, "npy": _read_npy, "npz": _read_npz, "png": _read_png}


def read_maps(
    path: str | os.PathLike,
    *,
    trust_pickle: bool = False,
    max_side: int | None = MAX_SIDE,
    on_skip: SkipHook | None = None,
) -> Sequence[Item]:
    """All maps of ``path`` (formats: module docstring) as items, in file order; a folder's
    supported files sorted by name. A file that cannot be read at all gives one error item.
    The sequence knows its length at once, but each item (its validated map) is made only when
    it is taken, and stacks and ragged buffers stored uncompressed are read map by map from the
    file (:class:`FileArray`): iterate over it to read a large file in bounded memory (``wafer
    predict`` does).
    Without ``trust_pickle``, a pickle named directly is an error item and a pickle in a folder
    is skipped: ``on_skip(path, reason)`` is called for it."""
    path = Path(path)
    source = str(path)
    kw = {"trust_pickle": trust_pickle, "max_side": max_side}
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _named_kind(p))
        if not trust_pickle:
            for p in files:
                if input_kind(p) == "pickle" and on_skip is not None:
                    on_skip(p, "pickle not read without --trust-pickle (it could run code)")
            files = [p for p in files if input_kind(p) != "pickle"]
        if not files:
            return [Item(source, None, WaferInputError(path, f"no input files ({SUPPORTED})"))]
        return Chain([read_maps(f, **kw) for f in files])
    if not path.exists():
        return [Item(source, None, WaferInputError(path, "no such file"))]
    kind = input_kind(path)
    if kind is None:
        return [
            Item(source, None, WaferInputError(path, f"unsupported input (expected {SUPPORTED})"))
        ]
    try:
        return READERS[kind](path, source, **kw)
    except WaferInputError as exc:
        return [Item(source, None, exc)]
    except (OSError, MemoryError) as exc:
        return [Item(source, None, WaferInputError(path, f"cannot read: {_clean(exc)}"))]


def _named_kind(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith("."):
        return False
    return any(name.endswith(s + c) for s in PICKLE_SUFFIXES for c in COMPRESSION_SUFFIXES) or (
        path.suffix.lower() in (".npy", ".npz", ".png")
    )


__all__ = [
    "MAX_SIDE",
    "Item",
    "check_map",
    "check_side",
    "decode_pixels",
    "decode_png",
    "encode_png",
    "input_kind",
    "looks_like_wafer",
    "png_pixels",
    "read_maps",
]
