"""Tests of the synthetic WM-811K generator (wafer.data.synth) and its stage script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wafer.core.classes import CLASS_NAMES, WM811K_FULL_COUNTS
from wafer.data.ingest import read_ragged_npz
from wafer.data.synth import COLUMNS, allocate, class_mix, generate, sample_grid_shape, wafer_grid

PER_CLASS = 30
UNIFORM = {c: 1.0 for c in CLASS_NAMES}
from conftest import params_file  # noqa: E402

STAGE = Path(__file__).resolve().parents[2] / "stages" / "synthesize.py"


def _label(cell: np.ndarray) -> str:
    return str(cell[0, 0])


@pytest.fixture(scope="module")
def per_class() -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """(map, mask) pairs, PER_CLASS of each class."""
    df, masks = generate(PER_CLASS * len(CLASS_NAMES), UNIFORM, seed=11)
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {c: [] for c in CLASS_NAMES}
    for wafer_map, label, mask in zip(df["waferMap"], df["failureType"], masks, strict=True):
        out[_label(label)].append((wafer_map, mask))
    return out


def _radius(wafer_map: np.ndarray) -> np.ndarray:
    return wafer_grid(*wafer_map.shape).r


def _pooled_mask_radius(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    return np.concatenate([_radius(m)[k] for m, k in pairs])


# --------------------------------------------------------------------------- mix and counts


def test_class_mix_floors_and_sums_to_one() -> None:
    mix = class_mix(0.03)
    assert list(mix) == list(WM811K_FULL_COUNTS)
    assert sum(mix.values()) == pytest.approx(1.0)
    assert min(mix.values()) >= 0.03 - 1e-12
    assert mix["none"] < WM811K_FULL_COUNTS["none"] / sum(WM811K_FULL_COUNTS.values())
    assert mix["Edge-Ring"] > 0.03  # above the floor: keeps its proportion to 'none'
    assert class_mix(floor=0.0)["none"] == pytest.approx(147431 / 172950)
    with pytest.raises(ValueError):
        class_mix(floor=0.2)


def test_allocate_sums_exactly_and_respects_floor() -> None:
    mix = class_mix(floor=0.05)
    for n in (0, 1, 7, 101, 5000):
        counts = allocate(n, mix)
        assert sum(counts.values()) == n
        for c, k in counts.items():
            assert abs(k - n * mix[c]) < 1
    assert min(allocate(5000, mix).values()) >= 250
    with pytest.raises(ValueError):
        allocate(-1, mix)


# --------------------------------------------------------------------------- determinism, layout


def _same(a: tuple[pd.DataFrame, list], b: tuple[pd.DataFrame, list]) -> bool:
    (da, ma), (db, mb) = a, b
    return (
        all(np.array_equal(x, y) for x, y in zip(da["waferMap"], db["waferMap"], strict=True))
        and [_label(x) for x in da["failureType"]] == [_label(x) for x in db["failureType"]]
        and all(np.array_equal(x, y) for x, y in zip(ma, mb, strict=True))
        and da["lotName"].tolist() == db["lotName"].tolist()
    )


def test_deterministic_per_seed() -> None:
    first = generate(40, UNIFORM, seed=3)
    assert _same(first, generate(40, UNIFORM, seed=3))
    assert not _same(first, generate(40, UNIFORM, seed=4))


def test_unlabeled_maps_keep_their_maps_and_lose_their_labels() -> None:
    """WM-811K's layout at full size: some maps carry no label (empty failureType and
    trianTestLabel cells, as in LSWMD.pkl); the maps themselves do not depend on how many."""
    (labeled, masks), (mixed, masks_mixed) = (
        generate(50, UNIFORM, seed=5, unlabeled=k) for k in (0, 20)
    )
    for a, b in zip(labeled["waferMap"], mixed["waferMap"], strict=True):
        assert np.array_equal(a, b)
    assert all(np.array_equal(a, b) for a, b in zip(masks, masks_mixed, strict=True))
    empty = [cell.size == 0 for cell in mixed["failureType"]]
    assert sum(empty) == 20
    assert empty == [cell.size == 0 for cell in mixed["trianTestLabel"]]
    kept = [_label(x) for x, e in zip(labeled["failureType"], empty, strict=True) if not e]
    assert kept == [_label(x) for x in mixed["failureType"] if x.size]
    with pytest.raises(ValueError, match="unlabeled must be in"):
        generate(10, UNIFORM, seed=5, unlabeled=11)


def test_lswmd_layout() -> None:
    df, masks = generate(60, class_mix(0.03), seed=2)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == len(masks) == 60
    labels = [_label(x) for x in df["failureType"]]
    assert {c: labels.count(c) for c in CLASS_NAMES} == allocate(60, class_mix(0.03))
    assert sum(a != b for a, b in zip(labels, labels[1:], strict=False)) > 10  # shuffled
    for row in df.itertuples(index=False):
        m = row.waferMap
        assert isinstance(m, np.ndarray) and m.dtype == np.uint8 and m.ndim == 2
        assert set(np.unique(m)) <= {0, 1, 2}
        assert isinstance(row.dieSize, float) and row.dieSize == np.count_nonzero(m)
        assert isinstance(row.lotName, str) and row.lotName.startswith("lot")
        assert isinstance(row.waferIndex, float) and 1 <= row.waferIndex <= 25
        for cell in (row.failureType, row.trianTestLabel):
            assert isinstance(cell, np.ndarray) and cell.shape == (1, 1) and cell.dtype == object
            assert isinstance(cell[0, 0], str)
        assert row.trianTestLabel[0, 0] in ("Training", "Test")
    assert 0.1 < np.mean([_label(x) == "Test" for x in df["trianTestLabel"]]) < 0.5
    lots = df.groupby("lotName")
    assert lots.size().max() <= 25
    assert lots["waferIndex"].nunique().equals(lots.size())  # wafer indices unique in a lot


def test_grid_shapes_span_wm811k_range() -> None:
    rng = np.random.default_rng(0)
    shapes = np.array([sample_grid_shape(rng) for _ in range(2000)])
    long_side, short_side = shapes.max(axis=1), shapes.min(axis=1)
    assert short_side.min() >= 20 and long_side.max() <= 200
    assert 0.75 < np.mean((short_side >= 20) & (long_side <= 60)) < 0.95
    assert np.mean(short_side > 100) > 0.005
    ratio = long_side / short_side
    assert np.mean(ratio > 1.1) > 0.2 and ratio.max() <= 1.35


def test_generated_grids_vary(per_class) -> None:
    shapes = {m.shape for pairs in per_class.values() for m, _ in pairs}
    assert len(shapes) >= 5
    assert any(h != w for h, w in shapes)


# --------------------------------------------------------------------------- per-class realism


def test_masks_inside_wafer_and_on_failing_dies(per_class) -> None:
    for c, pairs in per_class.items():
        assert len(pairs) == PER_CLASS
        for m, k in pairs:
            assert k.dtype == bool and k.shape == m.shape
            assert np.all(m[k] == 2), c
        if c != "none":
            assert np.mean([k.any() for _, k in pairs]) > 0.9, c


def test_background_on_every_class(per_class) -> None:
    rates = [np.mean(m[m > 0] == 2) for m, _ in per_class["none"]]
    assert all(k.sum() == 0 for _, k in per_class["none"])
    assert np.mean(np.array(rates) > 0) > 0.8 and np.std(rates) > 0.01
    assert max(rates) < 0.3
    for c in ("Center", "Scratch", "Loc"):  # failing dies off the pattern too
        assert np.mean([((m == 2) & ~k).any() for m, k in per_class[c]]) > 0.8


def test_edge_patterns_near_rim_center_near_centre(per_class) -> None:
    assert _pooled_mask_radius(per_class["Edge-Ring"]).mean() > 0.75
    assert _pooled_mask_radius(per_class["Edge-Loc"]).mean() > 0.75
    assert _pooled_mask_radius(per_class["Center"]).mean() < 0.4
    loc = np.array([_radius(m)[k].mean() for m, k in per_class["Loc"] if k.any()])
    assert loc.min() < 0.4 and loc.max() > 0.6  # Loc overlaps both


def test_donut_has_a_hole(per_class) -> None:
    r = _pooled_mask_radius(per_class["Donut"])
    assert np.mean(r < 0.1) < 0.01
    assert np.quantile(r, 0.05) > 0.15


def test_near_full_mostly_failing_random_in_between(per_class) -> None:
    def share(pairs):
        return np.array([np.mean(m[m > 0] == 2) for m, _ in pairs])

    assert share(per_class["Near-full"]).min() > 0.6
    assert np.median(share(per_class["none"])) < np.median(share(per_class["Random"])) < 0.6


def test_scratches_are_thin(per_class) -> None:
    thin, compact = [], []
    for _, k in per_class["Scratch"]:
        if not k.any():
            continue
        blocks = k[:-2, :-2].copy()
        for dy in range(3):
            for dx in range(3):
                blocks &= k[dy : dy + k.shape[0] - 2, dx : dx + k.shape[1] - 2]
        thin.append(not blocks.any())
        ys, xs = np.nonzero(k)
        extent = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
        compact.append(k.sum() <= 2.5 * extent)
    assert np.mean(thin) > 0.9 and np.mean(compact) > 0.9


# --------------------------------------------------------------------------- storage, stage


def test_stage_script(tmp_path) -> None:
    from typer.testing import CliRunner

    spec = importlib.util.spec_from_file_location("synthesize_stage", STAGE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    runner = CliRunner()
    assert runner.invoke(module.app, ["--help"]).exit_code == 0
    out = tmp_path / "raw" / "s.npz"
    params = params_file(
        tmp_path, {"synthesize.n_maps": 30, "synthesize.seed": 1, "synthesize.unlabeled": 4}
    )
    args = ["--params", str(params), "--out", str(out)]
    result = runner.invoke(module.app, args)
    assert result.exit_code == 0, result.output
    df, _ = read_ragged_npz(out)  # the maps and masks as a frame, read without unpickling
    assert len(df) == 30 and set(df.columns) >= {"waferMap", "failureType", "patternMask"}
    for m, mask in zip(df["waferMap"], df["patternMask"], strict=True):
        assert mask.shape == m.shape and not np.any(mask.astype(bool) & (m != 2))
    assert "none=" in result.output and "4 unlabeled" in result.output
    assert (df["failureType"] == "").sum() == 4  # read back as strings, "" = unlabeled
