"""Any LSWMD-format input (a trusted pickle, read by :mod:`wafer.data.lswmd`, or the ragged-maps
.npz that ``wafer convert`` writes) into a compact, validated, pickle-free intermediate.

Rows are unwrapped (``array([['Center']])`` -> ``'Center'``; an empty array means unlabeled),
validated by the map rules (:mod:`wafer.data.maprules`) and packed with
:mod:`wafer.core.ragged`. Validation is vectorised over one concatenated buffer, so the
811,457-row file costs one pass of Python over the rows (to collect the arrays) and numpy for
the rest; there is no per-row ``DataFrame.apply``.

Security: unpickling runs code. Only read pickles from a trusted source. :func:`convert_pickle`
(``wafer convert``) turns a trusted pickle, once, into a **ragged-maps .npz** that runs no code
when read: every row whose map is valid, labeled or not, packed like the intermediate
(``flat``/``shapes``/``offsets`` + ``failure_type``, ``orig_split``, ``lot``, ``wafer_index``,
``mask_flat`` and ``source_row``, the row in the pickle). :func:`ingest_file` reads either
kind, so ``ingest.input`` may name the .npz; ``wafer predict`` reads it without
``--trust-pickle``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from wafer.core import ragged
from wafer.core.classes import CLASS_INDEX, CLASS_NAMES
from wafer.core.errors import WaferInputError
from wafer.core.io import save_npz
from wafer.core.io import sha256_file as io_sha256
from wafer.data.arrays import check_member, clean_reason, member_array, read_array
from wafer.data.files import Ingested
from wafer.data.lswmd import read_lswmd, unwrap_label
from wafer.data.maprules import REASONS, MapProblem, as_candidate, check_map, value_problems

DROP_REASONS = ("unlabeled", "unknown_label", *REASONS)  # counted in metrics/ingest.json


def _column(df: pd.DataFrame, name: str) -> list | None:
    return df[name].tolist() if name in df.columns else None


def validate_frame(
    df: pd.DataFrame, path: str | Path, on_invalid: str, max_side: int | None = None
) -> Ingested:
    """Keep the labeled, valid rows of an LSWMD frame.

    on_invalid: ``"drop"`` counts invalid rows by reason and goes on; ``"fail"`` raises
    :class:`WaferInputError` at the first invalid row. Unlabeled rows are always dropped
    (counted as ``unlabeled``): they are not errors, WM-811K has 638,507 of them. A map over
    ``max_side`` dies a side is invalid (``too_large``), like one that breaks a map rule.
    """
    if on_invalid not in ("drop", "fail"):
        raise ValueError(f"on_invalid must be 'drop' or 'fail', not {on_invalid!r}")
    for col in ("waferMap", "failureType"):
        if col not in df.columns:
            raise WaferInputError(
                path, f"missing column '{col}' (columns: {', '.join(map(str, df.columns))})"
            )
    maps = df["waferMap"].tolist()
    raw_labels = df["failureType"].tolist()
    n = len(maps)
    reason = np.full(n, "", dtype=object)

    def reject(i: int, why: str, detail: str) -> None:
        if on_invalid == "fail":
            raise WaferInputError(path, f"{why}: {detail}", row=i)
        reason[i] = why

    labels = np.full(n, -1, dtype=np.int16)
    candidates: list[np.ndarray] = []
    cand_rows: list[int] = []
    for i in range(n):
        label = unwrap_label(raw_labels[i])
        if label is None:
            reason[i] = "unlabeled"
            continue
        if label not in CLASS_INDEX:
            reject(i, "unknown_label", f"unknown label {label!r} (expected one of {CLASS_NAMES})")
            continue
        labels[i] = CLASS_INDEX[label]
        try:
            m = maps[i] if isinstance(maps[i], Oversized) else as_candidate(maps[i], "waferMap")
        except MapProblem as exc:
            reject(i, exc.key, exc.detail)
            continue
        if max_side is not None and max(m.shape) > max_side:
            h, w = m.shape
            reject(i, "too_large", f"map is {h}x{w} dies, over ingest.max_side = {max_side}")
            continue
        candidates.append(m)
        cand_rows.append(i)

    # the value rules, vectorised over one concatenated buffer
    keep_idx: list[int] = []
    for j, problem in enumerate(value_problems(candidates, "waferMap")):
        if problem is not None:
            reject(cand_rows[j], problem.key, problem.detail)
        else:
            keep_idx.append(j)

    kept_maps = [candidates[j].astype(np.uint8, copy=False) for j in keep_idx]
    rows = np.array([cand_rows[j] for j in keep_idx], dtype=np.int64)
    flat, shapes, offsets = ragged.pack(kept_maps)

    split_col = _column(df, "trianTestLabel")
    lot_col = _column(df, "lotName")
    idx_col = _column(df, "waferIndex")
    orig_split = np.array(
        [(unwrap_label(split_col[i]) or "") if split_col else "" for i in rows], dtype=str
    ).astype("<U16")
    lot = np.array([str(lot_col[i]) if lot_col else "" for i in rows], dtype=str)
    wafer_index = np.array(
        [float(idx_col[i]) if idx_col else np.nan for i in rows], dtype=np.float64
    )
    mask_flat = np.zeros(0, dtype=np.uint8)
    if "patternMask" in df.columns:  # ground truth of the synthetic data
        mask_col = df["patternMask"].tolist()
        kept_masks = [np.asarray(mask_col[i], dtype=np.uint8) for i in rows]
        for i, m, mk in zip(rows, kept_maps, kept_masks, strict=True):
            if mk.shape != m.shape:
                raise WaferInputError(
                    path, f"patternMask shape {mk.shape} differs from waferMap {m.shape}", row=i
                )
        mask_flat = ragged.pack(kept_masks)[0]
    dropped = {r: int(np.sum(reason == r)) for r in DROP_REASONS}
    first = {r: int(np.argmax(reason == r)) for r in DROP_REASONS if dropped[r]}
    return Ingested(
        flat=flat,
        shapes=shapes,
        offsets=offsets,
        labels=labels[rows].astype(np.int8),
        source_row=rows,
        orig_split=orig_split if len(rows) else np.zeros(0, dtype="<U16"),
        lot=lot if len(rows) else np.zeros(0, dtype="<U1"),
        wafer_index=wafer_index,
        mask_flat=mask_flat,
        rows_read=n,
        dropped=dropped,
        first_dropped=first,
    )


def sha256_file(path: str | Path) -> str:
    """:func:`wafer.core.io.sha256_file`, with a one-line error for a missing file."""
    if not Path(path).is_file():
        raise WaferInputError(path, "no such file")
    return io_sha256(path)


# --------------------------------------------------------------------------- ragged-maps .npz

RAGGED_KEYS = ("flat", "shapes", "offsets")


def ragged_npz_arrays(df: pd.DataFrame, path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """An LSWMD-layout frame as the arrays of a ragged-maps .npz (module docstring): every row
    whose map is valid, labeled or not; rows whose map is invalid (not 2-D numeric {0, 1, 2}
    with a die) are left out and counted. Returns (arrays, counts)."""
    if "waferMap" not in df.columns:
        cols = ", ".join(map(str, df.columns))
        raise WaferInputError(path, f"missing column 'waferMap' (columns: {cols})")
    maps = df["waferMap"].tolist()
    labels = _column(df, "failureType")
    kept, rows, reasons = [], [], {}
    for i, m in enumerate(maps):
        try:
            kept.append(check_map(m, path, i, max_side=None))
            rows.append(i)
        except WaferInputError as exc:
            key = exc.reason.split(":")[0]
            reasons.setdefault(key, [0, i])[0] += 1
    flat, shapes, offsets = ragged.pack(kept)
    split_col, lot_col, idx_col = (
        _column(df, c) for c in ("trianTestLabel", "lotName", "waferIndex")
    )
    failure = [(unwrap_label(labels[i]) or "") if labels else "" for i in rows]
    arrays = {
        "flat": flat,
        "shapes": shapes,
        "offsets": offsets,
        "source_row": np.array(rows, dtype=np.int64),
        "failure_type": np.array(failure, dtype=str).astype("<U32"),
        "orig_split": np.array(
            [(unwrap_label(split_col[i]) or "") if split_col else "" for i in rows], dtype=str
        ).astype("<U16"),
        "lot": np.array([str(lot_col[i]) if lot_col else "" for i in rows], dtype=str),
        "wafer_index": np.array(
            [float(idx_col[i]) if idx_col else np.nan for i in rows], dtype=np.float64
        ),
        "mask_flat": np.zeros(0, dtype=np.uint8),
    }
    if "patternMask" in df.columns:
        col = df["patternMask"].tolist()
        masks = [np.asarray(col[i], dtype=np.uint8) for i in rows]
        if all(mk.shape == m.shape for mk, m in zip(masks, kept, strict=True)):
            arrays["mask_flat"] = ragged.pack(masks)[0]
    counts = {
        "rows_read": len(maps),
        "rows_kept": len(rows),
        "labeled": int(sum(1 for f in failure if f)),
        "dropped": {k: v[0] for k, v in reasons.items()},
        "first_dropped": {k: v[1] for k, v in reasons.items()},
    }
    return arrays, counts


def convert_pickle(path: str | Path, out: str | Path) -> dict:
    """Unpickle a TRUSTED LSWMD-format pickle and write it as a ragged-maps .npz
    (:func:`ragged_npz_arrays`). Returns the counts."""
    arrays, counts = ragged_npz_arrays(read_lswmd(path), path)
    save_npz(out, **arrays)
    return counts


def is_ragged_npz(path: str | Path) -> bool:
    """Whether ``path`` is a zip (.npz) holding the ragged-maps members."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False
    return all(f"{k}.npy" in names for k in RAGGED_KEYS)


class Oversized:
    """A map over the ingest map-size cap, known by its shape alone: its dies are never read."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape


def read_ragged_npz(
    path: str | Path, max_side: int | None = None, labeled_only: bool = False
) -> tuple[pd.DataFrame, np.ndarray]:
    """A ragged-maps .npz (``wafer convert``'s, or an ingested intermediate) as an LSWMD-layout
    frame, and each frame row's row in the original pickle; never unpickles. The shapes are
    read and checked first; a map over ``max_side`` dies a side stays an :class:`Oversized`
    (its dies unread); the die buffers are read map by map (:func:`wafer.data.arrays.member_array`:
    in place when stored, streamed when compressed, decompression bombs refused), so memory
    holds the maps kept and never a whole compressed member at once.

    ``labeled_only``: rows without a label get no frame row at all (their maps and masks are
    never copied out of the buffers; WM-811K's 638,507 unlabeled maps made ingest's peak memory
    several times the labeled maps'); ``frame.attrs["unlabeled_rows"]`` holds their rows in the
    original pickle, for the drop counts."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise WaferInputError(
            path, f"not a readable ragged-maps .npz: {clean_reason(exc)}"
        ) from None
    with zf:
        members = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}

        def load(name: str, kinds: str = "iufb") -> np.ndarray:
            where = f"{path}[{name}]"
            check_member(zf.getinfo(members[name]), where)
            return read_array(lambda: zf.open(members[name]), where, None, None, kinds)

        def buffer(name: str):
            where = f"{path}[{name}]"
            arr = member_array(path, zf, members[name], where, None, (1,))
            return load(name) if arr is None else arr

        missing = [k for k in RAGGED_KEYS if k not in members]
        if missing:
            raise WaferInputError(path, f"not a ragged-maps .npz (no {', '.join(missing)})")
        shapes, offsets = load("shapes").astype(np.int64), load("offsets").astype(np.int64)
        n = len(shapes)
        if shapes.shape != (n, 2) or offsets.shape != (n + 1,) or (shapes < 0).any():
            raise WaferInputError(path, "ragged maps: shapes must be (N, 2) and offsets (N + 1,)")
        if (np.diff(offsets) != shapes.prod(axis=1)).any() or (n and offsets[0] != 0):
            raise WaferInputError(path, "ragged maps: offsets do not match the shapes")
        flat = buffer("flat")
        if len(flat) != (offsets[-1] if n else 0):
            raise WaferInputError(path, "ragged maps: flat does not hold sum(h*w) dies")
        has_masks = "mask_flat" in members and zf.getinfo(members["mask_flat"]).file_size > 128
        mask = buffer("mask_flat") if has_masks else None
        if mask is not None and len(mask) != len(flat):
            mask = None  # no masks (an empty member), or not one per die: none kept

        if "failure_type" in members:
            failure = [str(v) for v in load("failure_type", "U")]
        elif "labels" in members:  # an ingested intermediate: every row is labeled
            failure = [CLASS_NAMES[int(k)] for k in load("labels")]
        else:
            failure = [""] * n
        rows = load("source_row") if "source_row" in members else np.arange(n)
        if len(rows) != n or len(failure) != n:
            raise WaferInputError(path, "ragged maps: source_row / labels do not match the shapes")
        keep = np.array([not labeled_only or f != "" for f in failure], dtype=bool)
        positions = np.flatnonzero(keep)

        def column(name: str, default: object) -> list:
            if name not in members:
                return [default] * len(positions)
            values = load(name, "iufbU")
            if len(values) != n:
                return [default] * len(positions)
            return values[positions].tolist()

        def maps(buf) -> list:
            out = []
            for i in positions:
                h, w = (int(v) for v in shapes[i])
                if max_side is not None and max(h, w) > max_side:
                    out.append(Oversized((h, w)))
                else:
                    out.append(np.array(buf[offsets[i] : offsets[i + 1]]).reshape(h, w))
            return out

        frame = pd.DataFrame(
            {
                "waferMap": maps(flat),
                "lotName": column("lot", ""),
                "waferIndex": column("wafer_index", np.nan),
                "trianTestLabel": column("orig_split", ""),
                "failureType": [failure[i] for i in positions],
            }
        )
        if mask is not None:
            frame["patternMask"] = maps(mask)
        if labeled_only:
            frame.attrs["unlabeled_rows"] = np.asarray(rows, dtype=np.int64)[~keep]
    return frame, np.asarray(rows, dtype=np.int64)[positions]


PICKLE_OPT_IN = (
    "is not a ragged-maps .npz, so it would be read as an LSWMD pickle, and unpickling runs "
    "any code the file holds: set ingest.trust_pickle: true (-S ingest.trust_pickle=true) for a "
    "pickle from a source you trust, or convert it once with `wafer convert --trust-pickle`"
)


def check_input(path: str | Path, trust_pickle: bool) -> str:
    """What ``ingest.input`` is ('npz' or 'pickle'), after checking that it can be read as
    configured: an existing, readable file, and a pickle only with ``trust_pickle``; else one
    line naming the file. The validate_params stage calls it before any stage runs."""
    path = Path(path)
    if path.is_dir():
        raise WaferInputError(path, "is a folder, not a data file")
    if not path.is_file():
        raise WaferInputError(path, "no such file")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise WaferInputError(path, f"cannot be read: {exc.strerror or exc}") from None
    if is_ragged_npz(path):
        return "npz"
    if not trust_pickle:
        raise WaferInputError(path, PICKLE_OPT_IN)
    return "pickle"


def ingest_file(
    path: str | Path, on_invalid: str, max_side: int | None = None, trust_pickle: bool = False
) -> Ingested:
    """``ingest.input`` -> :class:`Ingested`: a ragged-maps .npz (read without unpickling) or,
    with ``trust_pickle``, an LSWMD-format pickle (unpickled: trusted files only). Maps over
    ``max_side`` dies a side are invalid (``too_large``; in an .npz their dies are never read).
    Row numbers (``source_row``, drop reports) are those of the original pickle either way."""
    if check_input(path, trust_pickle) == "pickle":
        return validate_frame(read_lswmd(path), path, on_invalid, max_side)
    frame, rows = read_ragged_npz(path, max_side, labeled_only=True)
    unlabeled = frame.attrs.pop("unlabeled_rows")
    try:
        ing = validate_frame(frame, path, on_invalid, max_side)
    except WaferInputError as exc:  # name the original row, not the position in the .npz
        if exc.row is None:
            raise
        raise WaferInputError(path, exc.reason, int(rows[exc.row])) from None
    ing.source_row = rows[ing.source_row]
    ing.first_dropped = {k: int(rows[v]) for k, v in ing.first_dropped.items()}
    # the unlabeled rows were counted, not read: the same counts as reading them
    ing.rows_read += len(unlabeled)
    ing.dropped["unlabeled"] += len(unlabeled)
    first = dict(ing.first_dropped)
    if len(unlabeled):
        first["unlabeled"] = min(int(unlabeled[0]), first.get("unlabeled", int(unlabeled[0])))
    ing.first_dropped = {r: first[r] for r in DROP_REASONS if r in first}  # validate_frame's order
    return ing
