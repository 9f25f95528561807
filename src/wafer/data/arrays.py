"""Arrays read from ``.npy`` files and ``.npz`` members without unpickling, their headers
checked before any data is read: a numeric dtype (no objects), 2 or 3 dimensions, the map-size
cap and the byte cap.

Bounded memory, whatever a small file claims to hold:

* a stack of maps and a ragged buffer are never read whole: :class:`FileArray` reads them by
  ranges as they are indexed, from the file (an uncompressed .npy or .npz member) or from the
  member's decompressing stream (a compressed .npz member: read forward, a row at a time);
* an array that is read whole (a 2-D map, a ragged file's shapes and offsets) is refused above
  :data:`MAX_ARRAY_BYTES`, from its header;
* a compressed member that would decompress to more than :data:`BOMB_MIN_BYTES` at a ratio
  over :data:`MAX_RATIO` : 1 is refused as a decompression bomb, from the zip directory, before
  anything is decompressed (real wafer-map files compress far less: maps are small and varied).
"""

from __future__ import annotations

import math
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from wafer.core.errors import WaferInputError
from wafer.data.maprules import check_side

NPY_MAGIC = b"\x93NUMPY"

# An array read whole into memory (a 2-D map, a ragged file's shapes/offsets/source_row) is
# refused above this many bytes, from its header (the full LSWMD.pkl's shapes take 13 MB).
MAX_ARRAY_BYTES = 2**28
# A compressed .npz member decompressing to more than BOMB_MIN_BYTES at a ratio above MAX_RATIO
# is refused before it is decompressed (np.savez_compressed of real maps: about 10-30 : 1).
BOMB_MIN_BYTES = 2**26
MAX_RATIO = 200

OBJECT_ARRAY_REFUSED = (
    "object array (e.g. maps of different shapes), which only unpickling could read, and "
    "unpickling can run code: refused; save the maps as a ragged-maps .npz (`wafer convert`) "
    "or as .npz with one member per map"
)


def bad_ndim(shape: tuple[int, ...]) -> str:
    return (
        f"array has {len(shape)} dimension(s), shape {shape} "
        "(expected a 2-D map or a 3-D stack of maps)"
    )


def clean_reason(exc: BaseException) -> str:
    """An exception as one line of text, without any hint to switch a safety check off."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "allow_pickle" in text or "weights_only" in text or "pickle" in text.lower():
        return "its content needs unpickling, which can run code: refused"
    return text[:200]


def npy_header(
    fh: IO[bytes],
    where: str | Path,
    max_side: int | None,
    ndims: tuple[int, ...] | None = (2, 3),
    byte_cap: bool = True,
    kinds: str = "iufb",
) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Read and check a .npy header (file or .npz member) without reading the data: the
    magic, a dtype of one of ``kinds`` (numbers by default; never objects), ``ndims``
    dimensions, the map-size cap, the byte cap (unless ``byte_cap`` is off: a
    :class:`FileArray`, never read whole into memory). Returns (shape, fortran_order, dtype);
    ``fh`` is left at the first data byte."""
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
        raise WaferInputError(where, f"not a readable .npy header: {clean_reason(exc)}") from None
    if dtype.hasobject:
        raise WaferInputError(where, OBJECT_ARRAY_REFUSED)
    if dtype.kind not in kinds:
        what = "non-numeric" if kinds == "iufb" else "unexpected"
        raise WaferInputError(where, f"array has {what} dtype {dtype}")
    if ndims is not None and len(shape) not in ndims:
        raise WaferInputError(where, bad_ndim(tuple(shape)))
    check_side(tuple(shape), where, None, max_side)
    nbytes = math.prod(shape) * dtype.itemsize
    if byte_cap:
        check_bytes(nbytes, tuple(shape), where)
    return tuple(shape), bool(fortran), dtype


def check_bytes(nbytes: int, shape: tuple[int, ...], where: str | Path) -> None:
    """:class:`WaferInputError` when an array to be read whole needs over MAX_ARRAY_BYTES."""
    if nbytes > MAX_ARRAY_BYTES:
        raise WaferInputError(
            where,
            f"array of shape {shape} needs {nbytes / 2**20:.0f} MiB, over the "
            f"{MAX_ARRAY_BYTES / 2**20:.0f} MiB cap for one array: split it into smaller files",
        )


Opener = Callable[[], IO[bytes]]


class FileArray:
    """A C-order .npy array at a byte offset of a stream, read by ranges as it is indexed
    (``a[i]`` along the first axis, or a contiguous slice of it): neither loaded nor mapped, so
    reading every map of a file larger than memory keeps the resident set small. ``opener``
    gives the stream: the file itself, or a compressed .npz member's decompressing stream (read
    forward as the items are taken; going back starts the stream again)."""

    def __init__(
        self, opener: Opener, offset: int, shape: tuple[int, ...], dtype: np.dtype, where: str
    ):
        self.opener, self.offset, self.shape, self.dtype = opener, offset, shape, dtype
        self.where = where
        self.ndim = len(shape)
        self._row = math.prod(shape[1:]) * dtype.itemsize
        self._fh: IO[bytes] | None = None

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self._row

    def __len__(self) -> int:
        return self.shape[0]

    def __del__(self) -> None:
        if getattr(self, "_fh", None) is not None:
            self._fh.close()

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
        try:
            if self._fh is None:
                self._fh = self.opener()  # noqa: SIM115 - kept open while items are read
            self._fh.seek(self.offset + start * self._row)
            data = self._fh.read(n * self._row)
        except (OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
            raise WaferInputError(
                self.where, f"unreadable array data: {clean_reason(exc)}"
            ) from None
        if len(data) != n * self._row:
            raise WaferInputError(self.where, "truncated array data")
        arr = np.frombuffer(data, dtype=self.dtype).reshape((n, *self.shape[1:]))
        return arr if isinstance(i, slice) else arr[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        check_bytes(self.nbytes, self.shape, self.where)
        a = self[:]
        return a if dtype is None else a.astype(dtype)


def stream_array(
    opener: Opener,
    start: int,
    size: int,
    where: str,
    max_side: int | None,
    ndims: tuple[int, ...] | None,
) -> FileArray | None:
    """The .npy array at byte ``start`` of ``opener``'s stream, ``size`` bytes long (header
    included), as a :class:`FileArray` after its header is checked (no byte cap: it is never
    read whole). None when it is Fortran-ordered or empty (the caller then reads it the
    ordinary way, capped); a header that claims more data than ``size`` is an error."""
    with opener() as fh:
        fh.seek(start)
        shape, fortran, dtype = npy_header(fh, where, max_side, ndims, byte_cap=False)
        offset = fh.tell()
    nbytes = math.prod(shape) * dtype.itemsize
    if offset - start + nbytes > size:
        raise WaferInputError(
            where, f"truncated array: shape {shape} needs more than the file holds"
        )
    if fortran or not shape or nbytes == 0:
        return None
    return FileArray(opener, offset, shape, dtype, where)


def check_member(info: zipfile.ZipInfo, where: str) -> None:
    """Refuse, from the zip directory, an encrypted member or a decompression bomb."""
    if info.flag_bits & 0x1:
        raise WaferInputError(where, "encrypted .npz member")
    packed = max(1, info.compress_size)
    if info.file_size > BOMB_MIN_BYTES and info.file_size > MAX_RATIO * packed:
        raise WaferInputError(
            where,
            f"decompresses to {info.file_size / 2**20:.0f} MiB from {packed / 2**20:.2f} MiB "
            f"(over {MAX_RATIO}:1): refused as a decompression bomb",
        )


def member_array(
    path: Path,
    zf: zipfile.ZipFile,
    member: str,
    where: str,
    max_side: int | None,
    ndims: tuple[int, ...] | None,
) -> FileArray | None:
    """An .npz member as a :class:`FileArray`: read in place from the file when stored
    uncompressed (``np.savez`` and :func:`wafer.core.io.save_npz`, hence ``wafer convert``),
    from its decompressing stream when compressed; None when it must be read whole (Fortran
    order, empty)."""
    info = zf.getinfo(member)
    check_member(info, where)
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise WaferInputError(where, "not a readable .npz member (bad local header)")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        return stream_array(lambda: open(path, "rb"), start, info.file_size, where, max_side, ndims)
    return stream_array(
        lambda: zipfile.ZipFile(path).open(member), 0, info.file_size, where, max_side, ndims
    )


def read_array(
    open_fh: Callable[[], IO[bytes]],
    where: str | Path,
    max_side: int | None,
    ndims: tuple[int, ...] | None = (2, 3),
    kinds: str = "iufb",
) -> np.ndarray:
    """Header first (:func:`npy_header`: capped, ``kinds`` of dtype), then the data, never
    unpickling."""
    with open_fh() as fh:
        npy_header(fh, where, max_side, ndims, kinds=kinds)
    try:
        with open_fh() as fh:
            return np.lib.format.read_array(fh, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise WaferInputError(where, f"not a readable .npy array: {clean_reason(exc)}") from None
