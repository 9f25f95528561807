"""The label-noise audit's review page (the `audit` stage of pipelines/crossfit): one card per
suspect training map, most suspect first: the map with the Grad-CAM of its suggested class by
the member that never trained on it (map | CAM | overlay,
:func:`wafer.explain.report.render_example`), its nearest training maps by the ensemble's
features with their given labels, and the three
labels: given, suggested by confident learning (out of fold), and the ensemble's. One
self-contained HTML file (PNGs inlined as base64): the maps appear only as small rendered
figures."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from wafer.explain.report import CSS, MAP_COLOURS, fmt


@dataclass(frozen=True)
class Suspect:
    rank: int
    row: int  # ingested row
    given: str
    suggested: str
    ensemble: str
    quality: float  # out-of-fold probability of the given label
    p_suggested: float
    fold: int
    png: bytes  # map | CAM of the suggested class | overlay
    neighbours: bytes  # the nearest training maps, each titled with its given label


def neighbours_png(maps: list[np.ndarray], labels: list[str], dpi: int = 80) -> bytes:
    """PNG: the maps side by side, each titled with its label."""
    fig = Figure(figsize=(1.4 * max(1, len(maps)), 1.6), dpi=dpi)
    axes = fig.subplots(1, max(1, len(maps)), squeeze=False)[0]
    for ax, m, label in zip(axes, maps, labels, strict=False):
        ax.imshow(m, cmap=MAP_COLOURS, vmin=0, vmax=2, interpolation="nearest")
        ax.set_title(label, fontsize=7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _img(png: bytes, alt: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def build_page(
    suspects: list[Suspect], per_class: dict[str, dict], n_maps: int, n_flagged: int, method: str
) -> str:
    """The review page: how the list was made, the per-class noise estimate, then the cards."""
    h = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Label-noise audit</title><style>{CSS}</style></head><body>",
        "<h1>Label-noise audit of the training maps</h1>",
        f"<p>{n_flagged} of {n_maps} training maps flagged by {html.escape(method)} on the "
        "out-of-fold probabilities of the cross-fitted members (each map scored by the member "
        f"that never trained on it); the {len(suspects)} most suspect are shown below. "
        "<b>This is the model's opinion, not ground truth</b>: a flagged map is one a person "
        "should look at; the estimated noise rates include the model's own errors on hard "
        "classes.</p>",
        "<h2>Estimated label noise per given class</h2>",
        "<table><tr><th>given class</th><th>maps</th><th>flagged</th>"
        "<th>estimated noise rate</th><th>estimated true class of the mislabelled</th></tr>",
    ]
    for cls, v in per_class.items():
        where = ", ".join(
            f"{c} {s:.3f}"
            for c, s in sorted(v["estimated_true_class"].items(), key=lambda kv: -kv[1])
        )
        h.append(
            f"<tr><td>{cls}</td><td>{v['maps']}</td><td>{v['flagged']}</td>"
            f"<td>{fmt(v['estimated_noise_rate'])}</td><td>{html.escape(where) or '–'}</td></tr>"
        )
    h.append("</table><h2>The most suspect maps</h2>")
    h.append(
        "<p>Each card: the map, the Grad-CAM of the <b>suggested</b> class by the member that "
        "never trained on it (what it sees of that class), and the nearest training maps by the "
        "ensemble's features, titled with their given labels. Labels: <i>given</i> (the data "
        "set's), <i>suggested</i> (out of fold: the most likely other class), <i>ensemble</i> "
        "(all members; all but one of them trained on this map with its given label).</p>"
    )
    for s in suspects:
        h.append(
            f'<figure id="rank{s.rank}"><figcaption><b>#{s.rank}</b> row {s.row} · given '
            f"<b>{html.escape(s.given)}</b> (p {s.quality:.3f}) · suggested "
            f"<b>{html.escape(s.suggested)}</b> (p {s.p_suggested:.3f}) · ensemble "
            f"<b>{html.escape(s.ensemble)}</b> · fold {s.fold}</figcaption>"
            f"{_img(s.png, f'row {s.row}: map and CAM')}<br>"
            f"{_img(s.neighbours, f'row {s.row}: nearest training maps')}</figure>"
        )
    h.append("</body></html>")
    return "\n".join(h)
