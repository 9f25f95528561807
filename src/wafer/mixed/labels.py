"""MixedWM38's 8 labels and its pattern codes.

A map's target is a multi-hot vector over :data:`MIXED_LABELS` (all zero: a normal wafer).
The *pattern code* names the set of labels present, e.g. ``C-EL-S`` (Center + Edge-Loc +
Scratch); ``Normal`` for none. MixedWM38's own files do not order the parts of a code in one
way (``C-L-EL-S`` beside ``C-EL-L``); :func:`code_of` writes every code in label order, so one
set of labels has one code, and :func:`codes_of` does it for a whole array.
"""

from __future__ import annotations

import numpy as np

from wafer.core.classes import MIXED_LABELS

ABBREVIATIONS: dict[str, str] = {
    "Center": "C",
    "Donut": "D",
    "Edge-Loc": "EL",
    "Edge-Ring": "ER",
    "Loc": "L",
    "Near-full": "NF",
    "Scratch": "S",
    "Random": "R",
}
NORMAL = "Normal"
N_LABELS = len(MIXED_LABELS)


def code_of(multi_hot: np.ndarray) -> str:
    """The pattern code of one multi-hot vector, its parts in label order."""
    parts = [ABBREVIATIONS[n] for n, v in zip(MIXED_LABELS, multi_hot, strict=True) if v]
    return "-".join(parts) if parts else NORMAL


def codes_of(labels: np.ndarray) -> np.ndarray:
    """Pattern codes (str array) of an ``(N, 8)`` multi-hot array."""
    return np.array([code_of(row) for row in np.asarray(labels)], dtype=str)


def labels_of(code: str) -> np.ndarray:
    """The multi-hot vector (uint8) of a pattern code in any part order; ValueError when a part
    is not one of the 8 abbreviations or appears twice."""
    out = np.zeros(N_LABELS, dtype=np.uint8)
    if code == NORMAL:
        return out
    index = {a: i for i, a in enumerate(ABBREVIATIONS.values())}
    for part in code.split("-"):
        if part not in index:
            raise ValueError(f"pattern code {code!r}: {part!r} is not one of {', '.join(index)}")
        if out[index[part]]:
            raise ValueError(f"pattern code {code!r}: {part!r} appears twice")
        out[index[part]] = 1
    return out
