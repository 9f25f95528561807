"""Synthetic MixedWM38-like maps: the 9-class generator's patterns superposed on one wafer.

MixedWM38 has 38 pattern types: Normal, 8 single patterns and 29 mixtures, which follow one
rule (:func:`pattern_codes`): at most one of Center / Donut, at most one of Edge-Loc /
Edge-Ring, any of Loc and Scratch, and Near-full and Random only alone. Here every map is drawn
on a ``side`` x ``side`` die grid (52, as MixedWM38) with a small random edge exclusion: each
label present adds the failing dies of its own pattern draw
(:data:`wafer.data.synth.PATTERNS`, the same geometry as the 9-class data), and the background
failures of :func:`wafer.data.synth.background_field` come on top. The mask of each label is
kept as one bit of ``masks`` (bit k: label k of :data:`MIXED_LABELS` made this die fail), so
Grad-CAM per label can be scored against where each pattern really is.

The 38 types are drawn in equal shares except Near-full and Random, which get
``rare_share`` of a type's share each (MixedWM38: 77 and 442 maps against ~510). Deterministic
per seed; map i depends only on (seed, i) (``Generator.spawn``).
"""

from __future__ import annotations

import itertools

import numpy as np

from wafer.data.synth import PATTERNS, allocate, background_field, wafer_grid
from wafer.mixed.data import MixedSet
from wafer.mixed.labels import MIXED_LABELS, NORMAL, code_of, labels_of

ALONE = ("Near-full", "Random")  # patterns that occur only alone


def pattern_codes() -> list[str]:
    """The 38 MixedWM38 pattern types (module docstring), Normal first, in label order."""
    index = {name: i for i, name in enumerate(MIXED_LABELS)}
    codes = []
    for middle, edge, loc, scratch in itertools.product(
        (None, "Center", "Donut"), (None, "Edge-Loc", "Edge-Ring"), (False, True), (False, True)
    ):
        v = np.zeros(len(MIXED_LABELS), dtype=np.uint8)
        for name in (middle, edge, "Loc" if loc else None, "Scratch" if scratch else None):
            if name is not None:
                v[index[name]] = 1
        codes.append(code_of(v))
    for name in ALONE:
        v = np.zeros(len(MIXED_LABELS), dtype=np.uint8)
        v[index[name]] = 1
        codes.append(code_of(v))
    codes.sort(key=lambda c: (c != NORMAL, len(c.split("-")), c))
    return codes


def draw_mixed(
    labels: np.ndarray, side: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One map (uint8 0/1/2, ``side`` x ``side``) with the patterns of the multi-hot
    ``labels``, and its mask bit field."""
    g = wafer_grid(side, side, rng.uniform(0.0, 0.6))
    failing = np.zeros((side, side), dtype=bool)
    masks = np.zeros((side, side), dtype=np.uint8)
    for k in np.flatnonzero(labels):
        mask = (rng.random((side, side)) < PATTERNS[MIXED_LABELS[k]](g, rng)) & g.inside
        masks[mask] |= np.uint8(1 << k)
        failing |= mask
    failing |= (rng.random((side, side)) < background_field(g, rng)) & g.inside
    wafer_map = g.inside.astype(np.uint8)
    wafer_map[failing] = 2
    return wafer_map, masks


def generate_mixed(n_maps: int, side: int, rare_share: float, seed: int) -> MixedSet:
    """``n_maps`` synthetic mixed-type maps (module docstring), rows in shuffled type order."""
    codes = pattern_codes()
    mix = {c: rare_share if c in ("NF", "R") else 1.0 for c in codes}
    counts = allocate(n_maps, mix)
    rng = np.random.default_rng(seed)
    row_codes = np.repeat(np.array(list(counts), dtype=str), list(counts.values()))
    row_codes = row_codes[rng.permutation(n_maps)]
    labels = np.stack([labels_of(c) for c in row_codes]) if n_maps else np.zeros((0, 8), np.uint8)
    maps = np.zeros((n_maps, side, side), dtype=np.uint8)
    masks = np.zeros((n_maps, side, side), dtype=np.uint8)
    for i, child in enumerate(rng.spawn(n_maps)):
        maps[i], masks[i] = draw_mixed(labels[i], side, child)
    return MixedSet(
        maps,
        labels,
        row_codes,
        np.full(n_maps, "synthetic"),
        np.arange(n_maps, dtype=np.int64),
        masks,
    )
