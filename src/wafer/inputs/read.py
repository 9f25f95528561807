"""The input formats that ``wafer predict`` and the demo read, and the checks every map passes.

Inputs (:func:`read_maps`; each map becomes one :class:`Item`, named by its source)

* ``.npy``: one 2-D map (``"file.npy"``) or a 3-D stack ``(N, H, W)`` (``"file.npy row i"``),
  never unpickled. Object arrays (ragged maps) would need unpickling and are refused: save such
  maps as a ragged-maps ``.npz`` (``wafer convert``) or as ``.npz`` with one member per map.
* ``.npz``: every member a 2-D map (``"file.npz[name]"``) or a 3-D stack
  (``"file.npz[name] row i"``); no pickles. A **ragged-maps** ``.npz`` (members ``flat``,
  ``shapes``, ``offsets``: what ``wafer convert`` and the ``ingest`` stage write, see
  :mod:`wafer.data.ingest`) gives one map per row, ``"file.npz row 12"`` (its ``source_row`` when
  it has one: the row of the pickle it was converted from). An ``.npz`` in MixedWM38's layout
  (members ``maps``, ``labels``, ``label_names``: :mod:`wafer.mixed.data`) gives its ``maps``
  only (``"file.npz[maps] row i"``): its other members are labels, not maps.
* ``.png``: one map per image, in the encoding below (``"file.png"``).
* an LSWMD-format pickle (``.pkl``/``.pickle``, optionally ``.xz``/``.gz``/``.bz2``/``.zip``;
  Kaggle's legacy ``LSWMD.pkl`` too), **only with** ``trust_pickle=True``
  (``wafer predict --trust-pickle``): a pickle runs code when it is loaded. Every row of its
  ``waferMap`` column, labeled or not, is read (``"file.pkl row 12"``). Without the flag a
  pickle given by name is an error item, and one found in a folder is skipped (reported
  through ``on_skip``). ``wafer convert`` turns a trusted pickle into a ragged-maps ``.npz``
  once, which is then read without the flag.
* a folder: every file of the kinds above in it (not recursive), sorted by name.

Bounded resources: a map larger than ``max_side`` dies a side (default
:data:`wafer.data.maprules.MAX_SIDE`) is refused, and so is any array over
:data:`wafer.data.arrays.MAX_ARRAY_BYTES`, from the file's header (the PNG header, the
``.npy`` header of a file or of each ``.npz`` member, the ragged shapes) before anything is
decoded; pickled maps are checked by shape before they are resized.

Every map is validated (:func:`wafer.data.maprules.check_map`): 2-D, non-empty, integer values
in {0, 1, 2} (outside, pass, fail), at least one die (a value > 0). An invalid map, or a file
that cannot be read, becomes an item with an error
(:class:`wafer.core.errors.WaferInputError`: one line, ``"file, row N: reason"``); the other
items are unaffected.

The PNG encoding is :mod:`wafer.inputs.png`; array headers and ranged reads are
:mod:`wafer.data.arrays`.
"""

from __future__ import annotations

import bisect
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from wafer.core.errors import WaferInputError
from wafer.data.arrays import (
    NPY_MAGIC,
    bad_ndim,
    check_member,
    clean_reason,
    member_array,
    read_array,
    stream_array,
)
from wafer.data.lswmd import read_lswmd
from wafer.data.maprules import MAX_SIDE, check_map, check_side
from wafer.inputs.png import PNG_MAGIC, decode_pixels, looks_like_wafer, png_pixels


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
    ok, why = looks_like_wafer(good, None, max_side)
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
    return [Item(source, None, WaferInputError(path, bad_ndim(arr.shape)))]


def _read_npy(path: Path, source: str, max_side: int | None, **_: object) -> Sequence[Item]:
    try:
        size = path.stat().st_size
        arr = stream_array(lambda: open(path, "rb"), 0, size, str(path), max_side, (2, 3))
    except WaferInputError:
        arr = None  # read_array reports it
    if arr is None:
        arr = read_array(lambda: open(path, "rb"), path, max_side)
    return _stack(source, arr, path, max_side)


# MixedWM38's layout (wafer.mixed.data): the maps with their labels and provenance; the other
# members are not maps
MIXED_MEMBERS = ("maps", "labels", "label_names")


def _read_npz(path: Path, source: str, max_side: int | None, **_: object) -> Sequence[Item]:
    try:
        zf = zipfile.ZipFile(path)
        names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise WaferInputError(path, f"not a readable .npz file: {clean_reason(exc)}") from None
    with zf:
        if not names:
            raise WaferInputError(path, "no arrays in the .npz file")
        members = {n[:-4] if n.endswith(".npy") else n: n for n in names}
        if all(k in members for k in RAGGED_MEMBERS):
            return _read_ragged(zf, members, path, source, max_side)
        if all(k in members for k in MIXED_MEMBERS):  # MixedWM38's layout: only its maps
            members = {"maps": members["maps"]}
        parts: list[Sequence[Item]] = []
        for name, member in members.items():
            src, where = f"{source}[{name}]", f"{path}[{name}]"
            try:
                arr = member_array(path, zf, member, where, max_side, (2, 3))
                if arr is None:
                    arr = read_array(lambda m=member: zf.open(m), where, max_side)
            except WaferInputError as exc:
                parts.append([Item(src, None, exc)])
                continue
            parts.append(_stack(src, arr, where, max_side))
    return Chain(parts)


def _read_ragged(
    zf: zipfile.ZipFile, members: dict[str, str], path: Path, source: str, max_side: int | None
) -> Sequence[Item]:
    """A ragged-maps .npz: one item per row (made when taken), named by its source_row when
    present. The ``flat`` buffer of all dies is read map by map (from the file when stored
    uncompressed, as ``wafer convert`` writes it, else from the member's stream): the full
    LSWMD.pkl's 811k maps are read in bounded memory."""

    def load(name: str) -> np.ndarray:
        where = f"{path}[{name}]"
        check_member(zf.getinfo(members[name]), where)
        return read_array(lambda: zf.open(members[name]), where, None, None)

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
    if n == 0:
        raise WaferInputError(path, "ragged maps: the file holds no map")
    flat = member_array(path, zf, members["flat"], f"{path}[flat]", None, (1,))
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
            path, f"not a readable image: {type(exc).__name__}: {clean_reason(exc)}"
        ) from None
    m = decode_pixels(pixels)
    try:
        good = check_map(m, path, None, max_side)
    except WaferInputError as exc:
        return [Item(source, None, exc)]
    ok, why = looks_like_wafer(good, pixels, max_side)
    return [Item(source, good, None, None if ok else f"does not look like a wafer map: {why}")]


def _read_pickle(
    path: Path, source: str, max_side: int | None, trust_pickle: bool = False, **_: object
) -> list[Item]:
    if not trust_pickle:
        raise WaferInputError(path, PICKLE_REFUSED)
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
        return [Item(source, None, WaferInputError(path, f"cannot read: {clean_reason(exc)}"))]


def _named_kind(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith("."):
        return False
    return any(name.endswith(s + c) for s in PICKLE_SUFFIXES for c in COMPRESSION_SUFFIXES) or (
        path.suffix.lower() in (".npy", ".npz", ".png")
    )
