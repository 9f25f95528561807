"""Grad-CAM report of a trained model on the test set: which examples are shown, how well the
CAMs localise the defect, the PNG of one example and the self-contained HTML page (PNGs embedded
as base64). The CAM math itself is :mod:`wafer.explain.cam`; the stage is ``stages/gradcam.py``.

Examples (per class, from the evaluate stage's predictions file)
    confident_correct, unsure_correct and confident_mistake, chosen by the rule of
    :meth:`wafer.report.predictions.Predictions.examples` (the demo's examples use the same rule).
    The CAM of an example is that of the PREDICTED class: it shows what the model based its
    answer on. Confidence is the calibrated probability from predictions.csv.

Localisation (up to ``max_maps`` test maps per true class, drawn with ``seed``)
    The CAM target is the TRUE class ("where is the evidence for the right class"), upsampled to
    each map's own die grid (wafer.explain.cam.upsample_to_grid). The reference region is the
    synthetic ground-truth pattern mask when the ingested file has masks ('none' is skipped: its
    mask is
    empty; so is any map whose mask came out empty), else the failing dies (all classes, 'none'
    included). Per class: mean energy share on the region, pointing-game hit rate and chance
    level (mean area share of the region on the wafer). Maps whose CAM is zero on the whole wafer
    have no share and no pointer: they are left out of the means and counted as `zero_cam`.
    The stage scores the same maps with an untrained model (build_model(checkpoint config) after
    torch.manual_seed(seed)) as a reference. mean_* are macro-averages over the classes with
    data.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from wafer.core.classes import CLASS_INDEX, CLASS_NAMES
from wafer.data.files import Ingested, Shard
from wafer.data.maprules import check_map
from wafer.explain.cam import (
    area_share,
    compute_cam,
    energy_share,
    pointing_hit,
    resolve_layer_name,
    target_layer,
    upsample_to_grid,
)
from wafer.model.net import one_hot
from wafer.report.predictions import Predictions

SLOTS = {
    "confident_correct": "most confident correct",
    "unsure_correct": "least confident correct",
    "confident_mistake": "most confident mistake (true class is this one)",
}
MAP_COLOURS = ListedColormap(["#f2f2f2", "#a6bddb", "#d7301f"])  # outside, pass, fail
GREY_COLOURS = ListedColormap(["#ffffff", "#d9d9d9", "#4d4d4d"])


@dataclass(frozen=True)
class CamSpec:
    """Which CAM to compute and how: target layer (dotted name), method, batch size, device."""

    layer: str
    method: str
    batch_size: int
    device: torch.device


@dataclass(frozen=True)
class Example:
    """One rendered example: class, slot (a key of SLOTS), PNG bytes, alt text and caption."""

    cls: str
    slot: str
    png: bytes
    alt: str
    caption: str

    @property
    def filename(self) -> str:
        return f"{self.cls}_{self.slot}.png"


# --------------------------------------------------------------------------- inputs, selection


def read_predictions(path: Path, rows: np.ndarray, y: np.ndarray) -> Predictions:
    """predictions.csv, checked against the test shard (same maps, same order, same truth)."""
    return Predictions.load(path).check(path, rows, y)


def select_examples(pred: Predictions) -> dict[str, list[tuple[str, int]]]:
    """Per class, [(slot, test position)] by the rule of :meth:`Predictions.examples`."""
    return {cls: pred.examples(cls) for cls in CLASS_NAMES}


def localisation_positions(
    y: np.ndarray, max_maps: int, seed: int
) -> tuple[np.ndarray, dict[str, int]]:
    """Up to ``max_maps`` test positions per true class (seeded draw, kept in test order), and
    the number of test maps per class."""
    rng = np.random.default_rng(seed)
    chosen, available = [], {}
    for ci, cls in enumerate(CLASS_NAMES):
        pos = np.flatnonzero(y == ci)
        available[cls] = len(pos)
        if len(pos) > max_maps:
            pos = np.sort(rng.choice(pos, max_maps, replace=False))
        chosen.append(pos)
    return np.concatenate(chosen).astype(np.int64), available


# --------------------------------------------------------------------------- CAMs, scores


def batched_cams(
    model: torch.nn.Module,
    spec: CamSpec,
    x_all: np.ndarray,
    positions: np.ndarray,
    targets: np.ndarray,
) -> list[np.ndarray]:
    """CAMs (at the layer's own resolution) of ``x_all[positions]`` for class ``targets``."""
    layer = target_layer(model, spec.layer)
    targets = np.asarray(targets, dtype=np.int64)
    cams: list[np.ndarray] = []
    for k in range(0, len(positions), spec.batch_size):
        pos = positions[k : k + spec.batch_size]
        x = one_hot(torch.from_numpy(np.ascontiguousarray(x_all[pos])).to(spec.device))
        t = torch.from_numpy(targets[k : k + spec.batch_size]).to(spec.device)
        cams.extend(compute_cam(model, x, t, layer, spec.method))
    return cams


def region_of(ing: Ingested, row: int, use_masks: bool) -> tuple[np.ndarray, np.ndarray]:
    """(die map, reference region): the pattern mask (synthetic) or the failing dies (real)."""
    m = ing.map(row)
    return m, (ing.mask(row) if use_masks else m == 2)


def localisation(
    model: torch.nn.Module,
    spec: CamSpec,
    ing: Ingested,
    test: Shard,
    positions: np.ndarray,
    use_masks: bool,
) -> tuple[dict, tuple[int, ...]]:
    """Per-class and macro energy share, pointing hit rate and chance on ``positions`` (CAM of
    the true class); and the CAM's own size (h, w), () when nothing was scored."""
    cams = batched_cams(model, spec, test.x, positions, test.y[positions])
    acc: dict[str, dict[str, list[float]]] = {}
    for pos, cam in zip(positions, cams, strict=True):
        cls = CLASS_NAMES[int(test.y[pos])]
        m, region = region_of(ing, int(test.rows[pos]), use_masks)
        inside = m > 0
        if use_masks and not (region & inside).any():
            continue
        grid = upsample_to_grid(cam, m.shape)
        a = acc.setdefault(cls, {"share": [], "hit": [], "chance": []})
        a["share"].append(energy_share(grid, region, inside))
        a["hit"].append(pointing_hit(grid, region, inside))
        a["chance"].append(area_share(region, inside))
    per_class: dict[str, dict] = {}
    for cls in CLASS_NAMES:
        if cls not in acc:
            continue
        share = np.array(acc[cls]["share"])
        hit = np.array(acc[cls]["hit"])
        ok = np.isfinite(share)
        per_class[cls] = {
            "energy_share": float(share[ok].mean()) if ok.any() else None,
            "pointing_hit": float(hit[ok].mean()) if ok.any() else None,
            "chance": float(np.mean(acc[cls]["chance"])),
            "n": int(ok.sum()),
            "zero_cam": int((~ok).sum()),
        }

    def macro(key: str) -> float | None:
        vals = [v[key] for v in per_class.values() if v["n"] > 0 and v[key] is not None]
        return float(np.mean(vals)) if vals else None

    summary = {
        "mean_energy_share": macro("energy_share"),
        "mean_pointing_hit": macro("pointing_hit"),
        "mean_chance": macro("chance"),
        "per_class": per_class,
    }
    return summary, (tuple(int(v) for v in cams[0].shape) if cams else ())


def localisation_report(
    models: dict[str, torch.nn.Module],
    spec: CamSpec,
    ing: Ingested,
    test: Shard,
    positions: np.ndarray,
) -> dict:
    """The metrics of the stage: settings, then :func:`localisation` of each named model (e.g.
    trained and untrained) on the same ``positions``. Pattern masks are the reference region when
    ``ing`` has them, else the failing dies."""
    use_masks = ing.has_masks
    scores, cam_size = {}, ()
    for name, net in models.items():
        scores[name], cam_size = localisation(net, spec, ing, test, positions, use_masks)
    return {
        "method": spec.method,
        "layer": spec.layer,
        "cam_size": list(cam_size),
        "reference": "pattern_mask" if use_masks else "failing_dies",
        "cam_target": "true_class",
        "maps_scored": int(len(positions)),
        **scores,
    }


# --------------------------------------------------------------------------- rendering


def fmt(v: float | None, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals; None and NaN as a dash."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def render_example(m: np.ndarray, grid: np.ndarray, title: str, dpi: int = 80) -> bytes:
    """PNG bytes: die map | CAM on the die grid (scaled to its max) | overlay."""
    inside = m > 0
    peak = float(grid[inside].max()) if inside.any() else 0.0
    scaled = np.ma.masked_where(~inside, grid / peak if peak > 0 else np.zeros_like(grid))
    fig = Figure(figsize=(6, 2.15), dpi=dpi)  # no pyplot: no GUI backend, no global state
    axes = fig.subplots(1, 3)
    axes[0].imshow(m, cmap=MAP_COLOURS, vmin=0, vmax=2, interpolation="nearest")
    axes[0].set_title("map (red: fail)", fontsize=7)
    cam_cmap = matplotlib.colormaps["jet"].with_extremes(bad="#ffffff")
    axes[1].imshow(scaled, cmap=cam_cmap, vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("CAM (scaled to max)" if peak > 0 else "CAM (all zero)", fontsize=7)
    axes[2].imshow(m, cmap=GREY_COLOURS, vmin=0, vmax=2, interpolation="nearest")
    axes[2].imshow(scaled, cmap=cam_cmap, vmin=0, vmax=1, alpha=0.5, interpolation="nearest")
    axes[2].set_title("overlay", fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92), pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def served_cam(predictor: Any, m: np.ndarray, target: str | int) -> np.ndarray:
    """Grad-CAM(++) of class ``target`` for one map (the unrotated view) through a
    :class:`wafer.serving.predictor.Predictor` (its model, input size, device, ``cam_method`` at
    ``cam_layer``, as the `gradcam` stage computes it), upsampled to the map's own die grid."""
    if predictor.cam_layer is None or predictor.cam_method is None:
        raise ValueError("no Grad-CAM method and layer given (params.yaml's gradcam section)")
    m = check_map(m, "map", max_side=None)
    k = CLASS_NAMES.index(target) if isinstance(target, str) else int(target)
    x = one_hot(torch.from_numpy(predictor.prepare([m])).to(predictor.device))
    t = torch.tensor([k], device=predictor.device)
    ckpt = predictor.checkpoint
    name = resolve_layer_name(predictor.cam_layer, ckpt.config.stem, ckpt.input_size)
    layer = target_layer(predictor.model, name)
    cam = compute_cam(predictor.model, x, t, layer, predictor.cam_method)[0]
    return upsample_to_grid(cam, m.shape)


def served_cam_png(predictor: Any, m: np.ndarray, row: dict, dpi: int = 80) -> bytes:
    """PNG (map | CAM | overlay, :func:`render_example`) of the CAM of the predicted class of
    ``row`` (a :meth:`wafer.serving.predictor.Predictor.predict` row)."""
    grid = served_cam(predictor, m, row["predicted"])
    title = f"predicted {row['predicted']} ({row['confidence']:.2f}) | {row['source']}"
    return render_example(np.asarray(m, dtype=np.uint8), grid, title[:90], dpi=dpi)


def render_examples(
    model: torch.nn.Module,
    spec: CamSpec,
    ing: Ingested,
    test: Shard,
    pred: Predictions,
    per_class: int,
) -> list[Example]:
    """The first ``per_class`` slots of :func:`select_examples` per class, rendered with the CAM
    of the predicted class, in CLASS_NAMES then slot order."""
    use_masks = ing.has_masks
    picks = {c: p[:per_class] for c, p in select_examples(pred).items()}
    flat = [(c, slot, pos) for c, p in picks.items() for slot, pos in p]
    positions = np.array([pos for _, _, pos in flat], dtype=np.int64)
    predicted = pred.predicted
    targets = np.array([CLASS_INDEX[predicted[p]] for p in positions], dtype=np.int64)
    cams = batched_cams(model, spec, test.x, positions, targets)
    ref_name = "pattern mask" if use_masks else "failing dies"
    out: list[Example] = []
    for (cls, slot, pos), cam in zip(flat, cams, strict=True):
        row = int(test.rows[pos])
        m, region = region_of(ing, row, use_masks)
        grid = upsample_to_grid(cam, m.shape)
        p_cls, conf = predicted[pos], float(pred.confidence[pos])
        title = f"predicted {p_cls} ({conf:.2f}) | true {cls} | row {row}"
        inside = m > 0
        if (region & inside).any():
            hit = pointing_hit(grid, region, inside)
            loc = (
                f"CAM energy on the {ref_name}: {fmt(energy_share(grid, region, inside), 2)} "
                f"(chance {area_share(region, inside):.2f}), pointing: "
                + ("–" if math.isnan(hit) else "hit" if hit else "miss")
            )
        else:
            loc = f"no {ref_name} on this map"
        caption = (
            f"{SLOTS[slot]}: predicted {p_cls} with confidence {conf:.3f}, true {cls}, "
            f"ingested row {row}, {m.shape[0]}x{m.shape[1]} dies. CAM of {p_cls}. {loc}."
        )
        out.append(Example(cls, slot, render_example(m, grid, title), title, caption))
    return out


# --------------------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px}
td{text-align:right}td:first-child{text-align:left}th{background:#f3f3f3}
figure{display:inline-block;margin:0.4em;vertical-align:top}
figcaption{font-size:0.8em;max-width:480px}.note{color:#777;font-style:italic}
"""


def build_html(
    metrics: dict,
    examples: list[Example],
    model_path: Path,
    n_test: int,
    counts: dict[str, int],
    max_maps: int,
) -> str:
    """The self-contained report page: method, example rule, localisation table (from the
    :func:`localisation_report` dict) and the examples per class, PNGs inlined as base64."""
    ref = "ground-truth pattern mask" if metrics["reference"] == "pattern_mask" else "failing dies"
    method = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}[metrics["method"]]
    layer = html.escape(metrics["layer"])
    h = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{method} - wafer-map classifier</title><style>{CSS}</style></head><body>",
        f"<h1>{method} of the test set</h1>",
        f"<p>Model <code>{html.escape(str(model_path))}</code>, target layer "
        f"<code>{layer}</code> (with CBAM, <code>layer4</code> is after CBAM, "
        f"<code>layer4.stage</code> before it), {n_test} test maps. The CAM is "
        f"{' x '.join(map(str, metrics['cam_size'])) or '?'} cells, upsampled bilinearly to "
        "each map's own die grid.</p>",
        "<h2>How the examples are chosen</h2><ul>",
        "<li><b>most confident correct</b>: the correct prediction of the class with the highest "
        "confidence;</li>",
        "<li><b>least confident correct</b>: the correct prediction of the class with the lowest "
        "confidence;</li>",
        "<li><b>most confident mistake</b>: among the maps whose <i>true</i> class is this one but "
        "that were misclassified, the one whose wrong prediction is the most confident.</li></ul>",
        "<p>A slot without a candidate is left out. Confidence is the calibrated probability of "
        "the predicted class (from predictions.csv). Each example shows the CAM of the "
        "<b>predicted</b> class: what the model based its answer on.</p>",
        "<h2>Localisation</h2>",
        f"<p>Up to {max_maps} test maps per class; CAM of the <b>true</b> class; reference "
        f"region: the {ref}. <i>Energy share</i>: share of the CAM's mass on the wafer that lies "
        "on the region; <i>pointing</i>: how often the CAM's maximum lies on the region; "
        "<i>chance</i>: the region's share of the wafer dies (what a uniform CAM scores). The "
        "untrained model (same architecture, random weights) is a reference. Maps whose CAM is "
        "zero on the whole wafer are left out and counted as 'zero CAM'.</p>",
        "<table><tr><th>class</th><th>maps</th><th>energy share<br>trained</th>"
        "<th>energy share<br>untrained</th><th>chance</th><th>pointing<br>trained</th>"
        "<th>pointing<br>untrained</th><th>zero CAM<br>trained / untrained</th></tr>",
    ]
    tr, un = metrics["trained"], metrics["untrained"]
    for cls in CLASS_NAMES:
        t, u = tr["per_class"].get(cls), un["per_class"].get(cls)
        if t is None:
            why = (
                "no test map"
                if counts[cls] == 0
                else "empty pattern masks: not scored"
                if metrics["reference"] == "pattern_mask"
                else "not scored"
            )
            h.append(f'<tr><td>{cls}</td><td colspan="7" class="note">{why}</td></tr>')
            continue
        h.append(
            f"<tr><td>{cls}</td><td>{t['n']}</td><td>{fmt(t['energy_share'])}</td>"
            f"<td>{fmt(u['energy_share'])}</td><td>{fmt(t['chance'])}</td>"
            f"<td>{fmt(t['pointing_hit'])}</td><td>{fmt(u['pointing_hit'])}</td>"
            f"<td>{t['zero_cam']} / {u['zero_cam']}</td></tr>"
        )
    h.append(
        f"<tr><th>macro mean</th><th></th><th>{fmt(tr['mean_energy_share'])}</th>"
        f"<th>{fmt(un['mean_energy_share'])}</th><th>{fmt(tr['mean_chance'])}</th>"
        f"<th>{fmt(tr['mean_pointing_hit'])}</th><th>{fmt(un['mean_pointing_hit'])}</th>"
        "<th></th></tr></table>"
    )
    h.append("<p>Classes: " + " · ".join(f'<a href="#{c}">{c}</a>' for c in CLASS_NAMES) + "</p>")
    for cls in CLASS_NAMES:
        n = f"{counts[cls]} test map" + ("" if counts[cls] == 1 else "s")
        h.append(f'<h2 id="{cls}">{cls} <small>({n})</small></h2>')
        if counts[cls] == 0:
            h.append('<p class="note">No test example of this class.</p>')
            continue
        mine = [ex for ex in examples if ex.cls == cls]
        if not mine:
            h.append('<p class="note">No example to show.</p>')
        for ex in mine:
            b64 = base64.b64encode(ex.png).decode("ascii")
            h.append(
                f'<figure><img alt="{html.escape(ex.alt)}" '
                f'src="data:image/png;base64,{b64}">'
                f"<figcaption>{html.escape(ex.caption)}</figcaption></figure>"
            )
    h.append("</body></html>\n")
    return "\n".join(h)
