"""Predicting a stream of maps in bounded memory: :func:`predict_stream` takes the items of the
input readers (:func:`wafer.inputs.read.read_maps`: each with its source and either a valid map
or an error, and maybe a warning), predicts them ``chunk`` maps at a time with the served
pipeline and yields one row per item, in input order, as soon as its chunk is done. However
many maps there are (the full LSWMD.pkl has 811,457), at most one chunk of maps and rows is
held at a time. ``wafer predict``, the demo and the memory benchmark (through ``wafer
predict``) use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import numpy as np

from wafer.serving.predictor import Predictor

CHUNK = 2048  # maps read, resized and predicted at a time


class MapItem(Protocol):
    """What the stream needs of an input item (:class:`wafer.inputs.read.Item` is one)."""

    source: str
    map: np.ndarray | None
    error: Exception | None
    warning: str | None


def predict_stream(
    predictor: Predictor,
    items: Iterable[MapItem],
    batch_size: int = 256,
    neighbours: int = 0,
    chunk: int | None = None,
) -> Iterator[tuple[Any, dict]]:
    """``(item, row)`` for every item, in input order. An item with an error gives the row
    ``{"source", "error"}`` (nothing predicted); any other, :meth:`Predictor.predict`'s row
    with ``"warning"`` (the reader's warning, or None). ``chunk``: maps per forward pass
    group (default :data:`CHUNK`; never fewer than ``batch_size``)."""
    chunk = max(CHUNK if chunk is None else chunk, batch_size, 1)
    pending: list[Any] = []
    for item in items:
        pending.append(item)
        if len(pending) >= chunk:
            yield from _predict_chunk(predictor, pending, batch_size, neighbours)
            pending = []
    yield from _predict_chunk(predictor, pending, batch_size, neighbours)


def _predict_chunk(
    predictor: Predictor, pending: list[Any], batch_size: int, neighbours: int
) -> Iterator[tuple[Any, dict]]:
    good = [it for it in pending if it.error is None]
    rows = iter(
        predictor.predict(
            [it.map for it in good], [it.source for it in good], batch_size, neighbours
        )
        if good
        else []
    )
    for it in pending:
        if it.error is not None:
            yield it, {"source": it.source, "error": str(it.error)}
        else:
            yield it, next(rows) | {"warning": it.warning}
