"""Grad-CAM per label for the mixed-type model: one map per pattern, and the check that each
pattern's CAM lands on its own region.

The CAM of label k is the 9-class pipeline's Grad-CAM(++) (:func:`wafer.explain.cam.compute_cam`)
with output k as the target: a sigmoid output's logit is a score like a class logit, so nothing
changes but the target. On synthetic maps the generator's masks say where each pattern is
(:mod:`wafer.mixed.synth`: bit k of ``masks``); on a map with several patterns,
:func:`own_vs_other` measures the share of label k's CAM mass on label k's own failing dies and on
the *other* patterns' dies, against the chance levels (the regions' shares of the wafer). A CAM
that explains label k puts more of its mass on k's region than on the others'. Real maps have no
masks: only the pictures are made.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.figure import Figure

from wafer.explain.cam import area_share, energy_share, pointing_hit, upsample_to_grid
from wafer.explain.report import GREY_COLOURS, MAP_COLOURS


def own_vs_other(cam: np.ndarray, m: np.ndarray, masks: np.ndarray, k: int) -> dict[str, float]:
    """For label k's CAM ``cam`` (layer resolution) of map ``m`` with mask bit field ``masks``:
    energy share on k's dies and on the other patterns' dies, their chance levels, and whether
    the CAM's peak lies on k's dies (pointing game)."""
    grid = upsample_to_grid(cam, m.shape)
    inside = m > 0
    own = (masks & (1 << k)) > 0
    other = (masks & ~np.uint8(1 << k)) > 0
    other &= ~own
    out = {
        "own_energy": energy_share(grid, own, inside),
        "other_energy": energy_share(grid, other, inside),
        "own_area": area_share(own, inside),
        "other_area": area_share(other, inside),
        "own_hit": pointing_hit(grid, own, inside),
    }
    for side in ("own", "other"):
        area = out[f"{side}_area"]
        out[f"{side}_lift"] = out[f"{side}_energy"] / area if area > 0 else math.nan
    return out


def summarise(rows: list[dict[str, float]]) -> dict:
    """Means over the scored maps (NaNs left out) and the share of maps whose CAM lifts its own
    pattern's region more than the other patterns' (``own_beats_other``)."""
    if not rows:
        return {"maps": 0}
    out: dict = {"maps": len(rows)}
    for key in rows[0]:
        vals = np.array([r[key] for r in rows], dtype=np.float64)
        out[key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else None
    wins = [
        r["own_lift"] > r["other_lift"]
        for r in rows
        if not (math.isnan(r["own_lift"]) or math.isnan(r["other_lift"]))
    ]
    out["own_beats_other"] = float(np.mean(wins)) if wins else None
    return out


def render_label_cams(
    m: np.ndarray, grids: dict[str, np.ndarray], title: str, dpi: int = 80
) -> bytes:
    """PNG bytes: the die map, then one overlay per label (its CAM on the die grid, scaled to
    its own maximum)."""
    inside = m > 0
    fig = Figure(figsize=(2.0 * (1 + len(grids)), 2.3), dpi=dpi)
    axes = np.atleast_1d(fig.subplots(1, 1 + len(grids)))
    axes[0].imshow(m, cmap=MAP_COLOURS, vmin=0, vmax=2, interpolation="nearest")
    axes[0].set_title("map (red: fail)", fontsize=7)
    for ax, (name, grid) in zip(axes[1:], grids.items(), strict=True):
        peak = float(grid[inside].max()) if inside.any() else 0.0
        scaled = np.ma.masked_where(~inside, grid / peak if peak > 0 else np.zeros_like(grid))
        ax.imshow(m, cmap=GREY_COLOURS, vmin=0, vmax=2, interpolation="nearest")
        ax.imshow(scaled, cmap="jet", vmin=0, vmax=1, alpha=0.5, interpolation="nearest")
        ax.set_title(f"CAM: {name}", fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9), pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
