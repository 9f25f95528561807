"""The rules every map passes, one map at a time (wafer.data.maprules.check_map)."""

from __future__ import annotations

import numpy as np
import pytest

from wafer.core.errors import WaferInputError
from wafer.data.maprules import check_map


def test_check_map_reasons():
    assert check_map(np.array([[0, 1], [2, 0]], dtype=np.int64), "f").dtype == np.uint8
    assert check_map(np.array([[0.0, 1.0]]), "f").tolist() == [[0, 1]]
    for bad, reason in [
        (np.array([[0, 3]]), "values outside"),
        (np.array([1, 2]), "1 dimension"),
        (np.zeros((0, 0)), "empty"),
        (np.zeros((4, 4)), "no die"),
        (np.array([[0.5, 1]]), "values outside"),
    ]:
        with pytest.raises(WaferInputError, match=reason) as info:
            check_map(bad, "f.pkl", row=7)
        assert str(info.value).startswith("f.pkl, row 7: ")
