"""Predicting a stream of maps in bounded chunks (wafer.serving.stream.predict_stream),
without the command line: rows in input order, errors in their places, the same rows whatever
the chunk size, and no more than one chunk read ahead of the rows given back."""

from __future__ import annotations

import numpy as np

from wafer.core.errors import WaferInputError
from wafer.inputs.read import Item
from wafer.serving.predictor import Predictor
from wafer.serving.stream import predict_stream

from conftest import good_maps, wafer


def _items() -> list[Item]:
    maps = good_maps() + [wafer(20, 18, (3, 9)), wafer(16, 16, None)]
    items = [Item(f"m{i}", m) for i, m in enumerate(maps)]
    items.insert(3, Item("bad", None, WaferInputError("bad.npy", "not 2-D")))
    items[1] = items[1]._replace(warning="does not look like a wafer map: odd")
    return items


def _predictor(files) -> Predictor:
    return Predictor.load(files["model"], files["calibration"], files["thresholds"], "cpu")


def test_rows_in_order_with_errors_in_place_whatever_the_chunk(tiny_pipeline):
    p, items = _predictor(tiny_pipeline), _items()
    runs = [list(predict_stream(p, items, batch_size=1, chunk=c)) for c in (1, 3, 1000)]
    for run in runs:
        assert [it.source for it, _ in run] == [it.source for it in items]
        assert [row["source"] for _, row in run] == [it.source for it in items]
        assert run[3][1] == {"source": "bad", "error": "bad.npy: not 2-D"}
        assert run[1][1]["warning"] == "does not look like a wafer map: odd"
        assert run[0][1]["warning"] is None
    assert runs[0] == runs[1] == runs[2]
    one_by_one = [p.predict([it.map], [it.source])[0] for it in items if it.error is None]
    got = [row for it, row in runs[0] if it.error is None]
    for a, b in zip(got, one_by_one, strict=True):
        assert a["predicted"] == b["predicted"]
        assert np.isclose(a["confidence"], b["confidence"], atol=1e-5)


def test_reads_at_most_one_chunk_ahead(tiny_pipeline):
    p, items = _predictor(tiny_pipeline), _items()
    taken = []

    def lazily():
        for it in items:
            taken.append(it.source)
            yield it

    stream = predict_stream(p, lazily(), batch_size=1, chunk=2)
    first = next(stream)
    assert first[0].source == "m0" and len(taken) == 2
