"""The rules every wafer map passes, written once: the ``ingest`` stage applies them to a whole
pickle at a time (vectorised over one concatenated buffer), ``wafer predict`` and the demo to
one map at a time (:func:`check_map`, with the map-size cap); both name the same reasons.

A valid map is a 2-D, non-empty array of numbers whose values are integers in {0, 1, 2}
(outside the wafer, passing die, failing die) with at least one die (a value > 0).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from wafer.core.errors import WaferInputError

# reason key (ingest's metrics/ingest.json counts rows by these) -> what it means
REASONS = {
    "not_an_array": "not convertible to an array",
    "not_2d": "not 2-D",
    "empty": "no cells",
    "bad_values": "not numbers, or values outside {0, 1, 2}",
    "no_dies": "every cell is 0 (outside the wafer)",
    "too_large": "more dies a side than the map-size cap",
}


class MapProblem(ValueError):
    """A map breaks a rule: ``key`` (one of :data:`REASONS`) and a one-line ``detail`` that
    starts with ``subject`` ("map", or "waferMap" for a pickle's column)."""

    def __init__(self, key: str, detail: str):
        super().__init__(detail)
        self.key, self.detail = key, detail


def as_candidate(m: object, subject: str = "map") -> np.ndarray:
    """The map as an array that passed the per-map rules (array, numbers, 2-D, non-empty), or
    :class:`MapProblem`. Values are checked by :func:`value_problems`."""
    if not isinstance(m, np.ndarray):
        try:
            m = np.asarray(m)
        except Exception:  # noqa: BLE001 - anything unconvertible is invalid input
            raise MapProblem("not_an_array", f"{subject} is a {type(m).__name__}") from None
    if m.dtype.hasobject:
        raise MapProblem("bad_values", f"{subject} is an object array, not numbers")
    if m.ndim != 2:
        raise MapProblem("not_2d", f"{subject} has {m.ndim} dimension(s), shape {m.shape}")
    if m.size == 0:
        raise MapProblem("empty", f"{subject} is empty, shape {m.shape}")
    if m.dtype.kind not in "iufb":
        raise MapProblem("bad_values", f"{subject} has non-numeric dtype {m.dtype}")
    return m


def value_problems(
    candidates: Sequence[np.ndarray], subject: str = "map"
) -> list[MapProblem | None]:
    """Per candidate (see :func:`as_candidate`), its value problem or None: values outside
    {0, 1, 2} (or not integers), or no die. Vectorised over one concatenated buffer."""
    if not len(candidates):
        return []
    sizes = np.fromiter((m.size for m in candidates), dtype=np.int64, count=len(candidates))
    starts = np.zeros(len(candidates), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    allv = np.concatenate([m.ravel() for m in candidates])  # common dtype, uint8 for LSWMD
    bad = allv > 2
    if allv.dtype.kind in "if":
        bad |= allv < 0
    if allv.dtype.kind == "f":
        bad |= allv != np.floor(allv)
    n_bad = np.add.reduceat(bad.astype(np.int64), starts)
    n_dies = np.add.reduceat((allv > 0).astype(np.int64), starts)
    out: list[MapProblem | None] = []
    for j, m in enumerate(candidates):
        if n_bad[j]:
            odd = np.unique(m.ravel()[~np.isin(m.ravel(), (0, 1, 2))])[:3]
            out.append(
                MapProblem(
                    "bad_values", f"{subject} has values outside {{0, 1, 2}}: {odd.tolist()}"
                )
            )
        elif n_dies[j] == 0:
            out.append(MapProblem("no_dies", f"{subject} has no die (all cells are 0)"))
        else:
            out.append(None)
    return out


# The map-size cap: maps larger than this many dies a side are refused, checked from the file
# header before anything is decoded (the largest real WM-811K map is 212 dies across).
# ``wafer predict --max-side`` and the demo's ``--max-side`` change it.
MAX_SIDE = 1024


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
    the rules above (the ones ``ingest`` applies) and the map-size cap of
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
