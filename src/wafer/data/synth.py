"""Synthetic WM-811K-like wafer maps in the Kaggle ``LSWMD.pkl`` layout, with pattern masks.

The real WM-811K cannot be shipped with the project, so the pipeline can run on maps drawn here.
They follow the conventions of ``LSWMD.pkl`` (columns ``waferMap``, ``dieSize``, ``lotName``,
``waferIndex``, ``trianTestLabel``, ``failureType``; die values 0 = off the wafer, 1 = passing,
2 = failing) and come with a ground-truth mask per map, which the real data lacks, so that class
activation maps can be scored against where the pattern really is.

Geometry (realism knobs)
    Every lot of about 25 wafers (``WAFERS_PER_LOT``) is one product: one die grid and one edge
    exclusion for all its wafers, as in the real data. Grid sizes (``sample_grid_shape``) are
    log-uniform in 20-60 dies across for 85 % of the lots, 60-100 for 12 % and 100-150 for 3 %;
    60 % of the grids are non-square with an aspect ratio of 1.0-1.3 (e.g. 26 x 30). The wafer is
    the set of cells whose centre lies in the ellipse inscribed in the grid, shrunk by an edge
    exclusion of 0-0.6 die. Pattern geometry is drawn in normalised wafer coordinates (the rim is
    at radius 1), so a circle on the wafer stays a circle on a non-square die grid.

Background
    Every map, 'none' included, gets independently failing dies at a per-wafer rate of
    0.5 % + Gamma(1.6, 2.5 %) (median ~4 %, 90th percentile ~9 %, capped at 20 %), raised by up to
    2x towards the rim, and with probability 0.2 a speck of 1-6 failing dies somewhere. Background
    failures are never part of a mask.

Patterns (each with a random density, mostly 0.7-1.0 but down to 0.35 for faint patterns)
    Center     an irregular blob (radius 0.10-0.45, aspect 1-1.35, wobbly outline, soft edge of
               1-3 dies) at most 0.1 from the centre.
    Donut      an annulus round (or near) the centre, inner radius 0.2-0.42 (at least 2 dies),
               thickness 0.1-0.3 (at least 2 dies); 35 % are partial (50-85 % of the circle).
    Edge-Loc   a blob centred on the rim (0.88-1.02), radius 0.12-0.35, elongated along the rim
               (aspect 1-2.5), at a random angle; only its part on the wafer shows.
    Edge-Ring  the outer 1-4+ dies (width 1 + Gamma(1.5, 0.8) dies, at most a quarter of the
               radius); 35 % have a gap of 17-100 degrees; density varies along the ring.
    Loc        one blob, or two touching ones, of radius 0.07-0.22 (at least 1.6 dies) centred
               anywhere at radius 0.12-0.78: it can sit near the centre (like Center) or near the
               rim (like Edge-Loc), which is where the classes overlap in the real data too.
    Random     a scatter over the whole wafer at 15-50 % (skewed low), modulated by a smooth wave
               of +-25 %, so that a sparse Random and a noisy 'none' differ only statistically.
    Near-full  72-98 % of the dies failing, modulated by a smooth wave (+-8 %); 40 % keep a passing
               patch near the rim.
    Scratch    a line 1 die wide (20 %: 2 dies) and 0.4-1.6 wafer radii long through a point within
               0.65 of the centre: straight (45 %), or an arc (radius 0.7-3 wafer radii) and/or a
               polyline with 1-3 kinks of ~20 degrees; 40 % have gaps of 1-2.5 dies every 3-10.
    none       the background only.

Masks
    A mask is True on the failing dies *of the pattern*: the dies that failed because of the
    pattern draw (for Random: the dies of the scatter; for Near-full: the failing dies of the
    pattern). Background failures that happen to fall in the pattern region are left out, so a
    mask is always a subset of the failing dies (value 2) and never outside the wafer. Masks of
    'none' are empty. These are the dies a class activation map should point at.

Generation is vectorised per map (``np.ogrid`` grids, no per-die loops) and deterministic per seed:
one ``np.random.default_rng(seed)`` draws the class order, the lots and the split, and each map
gets its own child generator (``Generator.spawn``), so map i depends only on (seed, i).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wafer.core.classes import CLASS_NAMES, WM811K_FULL_COUNTS

WAFERS_PER_LOT = 25
TEST_SHARE = 0.3
COLUMNS = ("waferMap", "dieSize", "lotName", "waferIndex", "trianTestLabel", "failureType")
TAU = 2.0 * np.pi


# --------------------------------------------------------------------------- class mix


def class_mix(
    floor: float, counts: Mapping[str, int | float] = WM811K_FULL_COUNTS
) -> dict[str, float]:
    """Class proportions from ``counts``, every class floored at a ``floor`` share.

    Classes below the floor get exactly ``floor``; the others share the rest in proportion to
    their counts (repeated until no class falls below the floor), so the dominant 'none' shrinks.
    """
    names = list(counts)
    values = np.array([float(counts[n]) for n in names])
    if not names or (values < 0).any() or values.sum() <= 0:
        raise ValueError("counts must be non-negative with a positive total")
    if not 0.0 <= floor <= 1.0 / len(names):
        raise ValueError(f"floor must be in [0, 1/{len(names)}], got {floor}")
    floored = np.zeros(len(names), dtype=bool)
    while True:
        free = ~floored
        rest = 1.0 - floor * floored.sum()
        share = np.full(len(names), floor)
        total = values[free].sum()
        share[free] = values[free] / total * rest if total > 0 else rest / free.sum()
        below = free & (share < floor)
        if not below.any():
            return {n: float(s) for n, s in zip(names, share, strict=True)}
        floored |= below


def allocate(n_maps: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Integer counts per class summing exactly to ``n_maps`` (largest-remainder method)."""
    if n_maps < 0:
        raise ValueError(f"n_maps must be >= 0, got {n_maps}")
    names = list(mix)
    weights = np.array([float(mix[n]) for n in names])
    if not names or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("mix must be non-negative with a positive total")
    raw = weights / weights.sum() * n_maps
    counts = np.floor(raw).astype(np.int64)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n_maps - int(counts.sum())]] += 1
    return {n: int(c) for n, c in zip(names, counts, strict=True)}


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class WaferGrid:
    """A die grid with the wafer inscribed; coordinates are normalised so the rim is at r = 1."""

    h: int
    w: int
    ry: float  # wafer radius along rows, in dies
    rx: float  # wafer radius along columns, in dies
    y: np.ndarray  # (h, 1) normalised row coordinate, 0 at the centre
    x: np.ndarray  # (1, w) normalised column coordinate
    r: np.ndarray  # (h, w) normalised radius
    theta: np.ndarray  # (h, w) polar angle
    inside: np.ndarray  # (h, w) bool, the wafer
    die: float  # one die pitch in normalised units

    @property
    def cy(self) -> float:
        return (self.h - 1) / 2

    @property
    def cx(self) -> float:
        return (self.w - 1) / 2


def wafer_grid(h: int, w: int, exclusion: float = 0.0) -> WaferGrid:
    """The wafer on an h x w grid: cells in the inscribed ellipse shrunk by ``exclusion`` dies."""
    ry, rx = h / 2 - exclusion, w / 2 - exclusion
    yy, xx = np.ogrid[:h, :w]
    y = (yy - (h - 1) / 2) / ry
    x = (xx - (w - 1) / 2) / rx
    r = np.sqrt(y * y + x * x)
    return WaferGrid(
        h=h,
        w=w,
        ry=ry,
        rx=rx,
        y=y,
        x=x,
        r=r,
        theta=np.arctan2(y, x),
        inside=r <= 1.0,
        die=0.5 * (1 / ry + 1 / rx),
    )


def sample_grid_shape(rng: np.random.Generator) -> tuple[int, int]:
    """A WM-811K-like die grid: mostly 20-60 across, rarely up to 150, often slightly oblong."""
    u = rng.random()
    if u < 0.85:
        size = np.exp(rng.uniform(np.log(20), np.log(60)))
    elif u < 0.97:
        size = rng.uniform(60, 100)
    else:
        size = rng.uniform(100, 150)
    ratio = rng.uniform(1.0, 1.3) if rng.random() < 0.6 else 1.0
    long_side, short_side = int(round(size * ratio)), int(round(size))
    return (short_side, long_side) if rng.random() < 0.5 else (long_side, short_side)


# --------------------------------------------------------------------------- pattern helpers


def _ramp(signed: np.ndarray, soft: float) -> np.ndarray:
    """0 outside, 1 inside, linear across a border ``soft`` wide (``signed`` > 0 is inside)."""
    return np.clip(signed / soft + 0.5, 0.0, 1.0)


def _blob(
    g: WaferGrid,
    rng: np.random.Generator,
    cy: float,
    cx: float,
    radius: float,
    aspect: float = 1.0,
    phi: float | None = None,
    soft: float | None = None,
    wobble: float = 0.15,
) -> np.ndarray:
    """Fill level (0..1) of an elliptical blob with a wobbly outline, in normalised units."""
    phi = rng.uniform(0, np.pi) if phi is None else phi
    soft = g.die if soft is None else soft
    a, b = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    dy, dx = g.y - cy, g.x - cx
    c, s = np.cos(phi), np.sin(phi)
    u, v = (dx * c + dy * s) / a, (dy * c - dx * s) / b
    dist = np.sqrt(u * u + v * v)
    if wobble > 0:
        ang = np.arctan2(v, u)
        w2, w3 = rng.uniform(0, wobble, size=2)
        p2, p3 = rng.uniform(0, TAU, size=2)
        dist = dist / (1 + w2 * np.cos(2 * ang + p2) + w3 * np.cos(3 * ang + p3))
    return _ramp((1 - dist) * radius, soft)


def _wave(g: WaferGrid, rng: np.random.Generator, amp: float) -> np.ndarray:
    """A smooth multiplicative modulation 1 +- amp across the wafer."""
    k, alpha, phase = rng.uniform(1.0, 3.5), rng.uniform(0, TAU), rng.uniform(0, TAU)
    return 1 + amp * np.cos(k * (g.x * np.cos(alpha) + g.y * np.sin(alpha)) + phase)


def _density(rng: np.random.Generator) -> float:
    """Pattern fail density: mostly 0.7-1.0, sometimes faint (down to 0.35)."""
    return 0.35 + 0.65 * rng.beta(2.5, 1.2)


def _polar_point(rng: np.random.Generator, rho: float) -> tuple[float, float]:
    t = rng.uniform(0, TAU)
    return rho * np.sin(t), rho * np.cos(t)


# --------------------------------------------------------------------------- pattern generators
# Each returns the probability (0..1) that a die fails because of the pattern.


def _center(g: WaferGrid, rng: np.random.Generator) -> np.ndarray:
    cy, cx = _polar_point(rng, rng.uniform(0, 0.1))
    radius = max(0.1 + 0.35 * rng.beta(1.5, 2.0), 2 * g.die)
    soft = g.die * rng.uniform(1, 3)
    return _density(rng) * _blob(g, rng, cy, cx, radius, rng.uniform(1, 1.35), soft=soft)


def _donut(g: WaferGrid, rng: np.random.Generator) -> np.ndarray:
    cy, cx = _polar_point(rng, rng.uniform(0, 0.05))
    inner = max(rng.uniform(0.2, 0.42), 2 * g.die)
    outer = min(inner + max(rng.uniform(0.1, 0.3), 2 * g.die), 0.9)
    aspect, phi = rng.uniform(1, 1.2), rng.uniform(0, np.pi)
    dy, dx = g.y - cy, g.x - cx
    c, s = np.cos(phi), np.sin(phi)
    u, v = (dx * c + dy * s) / np.sqrt(aspect), (dy * c - dx * s) * np.sqrt(aspect)
    dist = np.sqrt(u * u + v * v)
    ring = _ramp(dist - inner, g.die) * _ramp(outer - dist, g.die)
    if rng.random() < 0.35:  # partial donut
        start, cover = rng.uniform(0, TAU), rng.uniform(0.5, 0.85) * TAU
        ring = ring * (np.mod(np.arctan2(dy, dx) - start, TAU) < cover)
    return _density(rng) * ring


def _edge_loc(g: WaferGrid, rng: np.random.Generator) -> np.ndarray:
    t0 = rng.uniform(0, TAU)
    rho = rng.uniform(0.88, 1.02)
    radius = max(rng.uniform(0.12, 0.35), 2 * g.die)
    phi = t0 + np.pi / 2 + rng.normal(0, 0.2)  # long axis along the rim
    blob = _blob(g, rng, rho * np.sin(t0), rho * np.cos(t0), radius, rng.uniform(1, 2.5), phi)
    return _density(rng) * blob


def _edge_ring(g: WaferGrid, rng: np.random.Generator) -> np.ndarray:
    width = min(1 + rng.gamma(1.5, 0.8), 0.25 / g.die)  # in dies
    ring = _ramp(g.r - (1 - (width + 0.5) * g.die), g.die)
    if rng.random() < 0.35:  # a gap in the ring
        gap = rng.uniform(0.3, 1.75)
        off = np.abs(np.angle(np.exp(1j * (g.theta - rng.uniform(0, TAU)))))
        ring = ring * (off > gap / 2)
    fade = rng.uniform(0, 0.4) * (0.5 + 0.5 * np.cos(g.theta - rng.uniform(0, TAU)))
    return _density(rng) * ring * (1 - fade)


def _loc(g: WaferGrid, rng: np.random.Generator) -> np.ndarray:
    cy, cx = _polar_point(rng, rng.uniform(0.12, 0.78))
    radius = max(rng.uniform(0.07, 0.22), 1.6 * g.die)
    blob = _blob(g, rng, cy, cx, radius, rng.uniform(1, 2))
    if rng.random() < 0.35:  # a second lobe touching the first
        oy, ox = _polar_point(rng, radius * rng.uniform(0.7, 1.2))
        lobe = _blob(g, rng, cy + oy, cx + ox, radius * rng.uniform(0.5, 0.9))
        blob = np.maximum(blob, lobe)
    return _density(rng) * blob


def _random(g: WaferGrid, rng: np.random.Generator) -> np.ndarray:
    rate = 0.15 + 0.35 * rng.beta(1.2, 2.0)
    return np.broadcast_to(rate * _wave(g, rng, 0.25), (g.h, g.w))


def _near_full(g: WaferGrid, rng: np.random.Generator) -> np.ndarray:
    rate = rng.uniform(0.72, 0.98)
    p = np.broadcast_to(np.clip(rate * _wave(g, rng, 0.08), 0, 1), (g.h, g.w))
    if rng.random() < 0.4:  # a patch of passing dies left near the rim
        cy, cx = _polar_point(rng, rng.uniform(0.7, 1.0))
        p = p * (1 - 0.9 * _blob(g, rng, cy, cx, rng.uniform(0.1, 0.25)))
    return p


def _scratch(g: WaferGrid, rng: np.random.Generator) -> np.ndarray:
    step = 0.4  # dies between points along the line
    length = max(min(g.ry, g.rx) * rng.uniform(0.4, 1.6), 6.0)
    s = np.arange(int(length / step) + 1) * step
    heading = rng.uniform(0, TAU) + np.zeros_like(s)
    kind = rng.random()
    if kind >= 0.45:  # curved: an arc, a polyline or both
        if kind < 0.8:
            bend = rng.choice([-1, 1]) / (min(g.ry, g.rx) * rng.uniform(0.7, 3.0))
            heading += bend * s
        if kind >= 0.7:
            kinks = np.sort(rng.uniform(0, length, size=rng.integers(1, 4)))
            turns = np.concatenate([[0.0], np.cumsum(rng.normal(0, 0.35, size=len(kinks)))])
            heading += turns[np.searchsorted(kinks, s)]
    py, px = np.cumsum(step * np.sin(heading)), np.cumsum(step * np.cos(heading))
    my, mx = _polar_point(rng, 0.65 * np.sqrt(rng.random()))
    mid = len(s) // 2
    py += g.cy + my * g.ry - py[mid]
    px += g.cx + mx * g.rx - px[mid]
    if rng.random() < 0.4:  # gaps: on for 3-10 dies, off for 1-2.5 dies
        n_seg = int(length / 2) + 2
        seg = np.where(
            np.arange(n_seg) % 2 == 0, rng.uniform(3, 10, n_seg), rng.uniform(1, 2.5, n_seg)
        )
        keep = np.searchsorted(np.cumsum(seg), s, side="right") % 2 == 0
        py, px, heading = py[keep], px[keep], heading[keep]
    if rng.random() < 0.2:  # 2 dies wide
        py = np.concatenate([py, py + np.cos(heading)])
        px = np.concatenate([px, px - np.sin(heading)])
    iy, ix = np.rint(py).astype(np.int64), np.rint(px).astype(np.int64)
    ok = (iy >= 0) & (iy < g.h) & (ix >= 0) & (ix < g.w)
    p = np.zeros((g.h, g.w))
    p[iy[ok], ix[ok]] = rng.uniform(0.55, 1.0)
    return p


def _none(g: WaferGrid, rng: np.random.Generator) -> np.ndarray:
    return np.zeros((g.h, g.w))


PATTERNS: dict[str, Callable[[WaferGrid, np.random.Generator], np.ndarray]] = {
    "Center": _center,
    "Donut": _donut,
    "Edge-Loc": _edge_loc,
    "Edge-Ring": _edge_ring,
    "Loc": _loc,
    "Near-full": _near_full,
    "Random": _random,
    "Scratch": _scratch,
    "none": _none,
}
assert set(PATTERNS) == set(CLASS_NAMES)


def background_field(g: WaferGrid, rng: np.random.Generator) -> np.ndarray:
    """Per-die probability of a background failure (independent of the class)."""
    rate = min(0.005 + rng.gamma(1.6, 0.025), 0.2)
    p = rate * (1 + rng.uniform(0, 1) * g.r**8)
    if rng.random() < 0.2:  # a speck of a few failing dies
        cy, cx = _polar_point(rng, 0.9 * np.sqrt(rng.random()))
        speck = _blob(g, rng, cy, cx, g.die * rng.uniform(0.6, 1.3), wobble=0, soft=g.die / 2)
        p = np.maximum(p, rng.uniform(0.5, 0.9) * speck)
    return p


def draw_map(g: WaferGrid, label: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One wafer map (uint8, 0/1/2) of class ``label`` on grid ``g`` and its pattern mask."""
    pattern = PATTERNS[label](g, rng)
    mask = (rng.random((g.h, g.w)) < pattern) & g.inside
    failing = mask | ((rng.random((g.h, g.w)) < background_field(g, rng)) & g.inside)
    wafer_map = g.inside.astype(np.uint8)
    wafer_map[failing] = 2
    return wafer_map, mask


# --------------------------------------------------------------------------- data set


def _object_column(values: Sequence[object]) -> np.ndarray:
    column = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):  # element-wise: same-shape arrays must not be stacked
        column[i] = v
    return column


def _cell(value: str, hidden: bool) -> np.ndarray:
    """A label cell of LSWMD.pkl: ``array([['Center']])``, or the empty array when unlabeled."""
    return np.zeros((0, 0), dtype=object) if hidden else np.array([[value]], dtype=object)


def _lot_sizes(n_maps: int, rng: np.random.Generator) -> list[int]:
    sizes: list[int] = []
    total = 0  # a running total: re-summing the list made 811k maps (32k lots) quadratic
    while total < n_maps:
        size = WAFERS_PER_LOT if rng.random() < 0.8 else int(rng.integers(5, WAFERS_PER_LOT))
        sizes.append(min(size, n_maps - total))
        total += sizes[-1]
    return sizes


def generate(
    n_maps: int, mix: Mapping[str, float], seed: int, unlabeled: int = 0
) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """``n_maps`` wafer maps in the LSWMD.pkl layout, and their pattern masks.

    Rows come in lot order with the classes shuffled; the class counts are ``allocate(n_maps,
    mix)``. ``unlabeled`` of the maps, drawn at random, then lose their label as in WM-811K
    (638,507 of its 811,457 maps): ``failureType`` and ``trianTestLabel`` are empty arrays; the
    map (and its mask) still shows the pattern it was drawn with, so the labeled maps keep the
    mix. Same seed, same data; the maps do not depend on ``unlabeled``.
    """
    unknown = set(mix) - set(CLASS_NAMES)
    if unknown:
        raise ValueError(f"unknown classes in mix: {sorted(unknown)}")
    if not 0 <= unlabeled <= n_maps:
        raise ValueError(f"unlabeled must be in [0, n_maps={n_maps}], got {unlabeled}")
    counts = allocate(n_maps, mix)
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array(list(counts), dtype=object), list(counts.values()))
    labels = labels[rng.permutation(n_maps)]
    test = rng.random(n_maps) < TEST_SHARE
    lots = []
    for lot, size in enumerate(_lot_sizes(n_maps, rng), start=1):
        h, w = sample_grid_shape(rng)
        exclusion = rng.uniform(0, 0.6)
        if size == WAFERS_PER_LOT:
            index = np.arange(1, WAFERS_PER_LOT + 1)
        else:
            index = np.sort(rng.choice(WAFERS_PER_LOT, size, replace=False)) + 1
        lots.append((f"lot{lot}", index, h, w, exclusion))
    # Map i draws from the i-th child of the seed (what Generator.spawn(n_maps) would give),
    # spawned one lot at a time: SeedSequences are spawned in order, so the children are the
    # same, without holding 811k generators at once.
    seeds = rng.bit_generator.seed_seq

    maps: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    lot_names: list[str] = []
    wafer_index: list[int] = []
    for name, index, h, w, exclusion in lots:
        g = wafer_grid(h, w, exclusion)
        children = seeds.spawn(len(index))
        for k, child in zip(index, children, strict=True):
            i = len(maps)
            wafer_map, mask = draw_map(g, labels[i], np.random.default_rng(child))
            maps.append(wafer_map)
            masks.append(mask)
            lot_names.append(name)
            wafer_index.append(int(k))

    # The next child of the seed picks the unlabeled maps: the maps above never see it.
    hidden = np.zeros(n_maps, dtype=bool)
    if unlabeled:
        pick = np.random.default_rng(seeds.spawn(1)[0])
        hidden[pick.choice(n_maps, size=unlabeled, replace=False)] = True
    split = ["Test" if t else "Training" for t in test]
    df = pd.DataFrame(
        {
            "waferMap": _object_column(maps),
            "dieSize": np.array([np.count_nonzero(m) for m in maps], dtype=np.float64),
            "lotName": pd.Series(lot_names, dtype=object),  # object, as in LSWMD.pkl
            "waferIndex": np.array(wafer_index, dtype=np.float64),
            "trianTestLabel": _object_column(list(map(_cell, split, hidden))),
            "failureType": _object_column(list(map(_cell, labels, hidden))),
        },
        columns=list(COLUMNS),
    )
    return df, masks
