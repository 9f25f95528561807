"""The demo for a mixed-type model (``python -m wafer.apps.demo --pipeline pipelines/mixed``):
what ``wafer predict`` serves for it (:class:`wafer.mixed.predictor.MixedPredictor`: the same
input checks and resize, TTA as calibrated, a temperature and a threshold per label at the
served point), shown for one map at a time.

* Header: the served point and the model's test figures (macro-F1 and exact-match with their 95 %
  CIs, Hamming loss, mean per-label ECE after calibration), read at start from the mixed
  pipeline's evaluate and calibrate metrics; metrics fit at another operating point than the
  one served are flagged as stale.
* Examples: one test map per pattern code (MixedWM38's 38 types, those in the test split), the
  first whose served prediction was right, else the first; its true and served codes are shown.
* Upload: the same PNG / .npy readers and size cap as the 9-class demo (refused before the model
  lock is taken).
* Output: the labels present and the pattern code, every label's calibrated probability against
  its threshold, and one Grad-CAM per predicted label (output k as the target,
  :mod:`wafer.mixed.cam`) on the unrotated map.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wafer.apps.demo.analysis import Analysis, handle_upload
from wafer.apps.demo.ui import import_gradio, input_column, style
from wafer.apps.options import served_files
from wafer.config.pipeline import pipeline_params
from wafer.config.sections import GradcamParams
from wafer.core.errors import UsageError, WaferInputError
from wafer.core.io import read_json
from wafer.data.maprules import MAX_SIDE
from wafer.data.shard import resize_maps
from wafer.explain.cam import resolve_layer_name, upsample_to_grid
from wafer.explain.report import CamSpec, batched_cams
from wafer.mixed.cam import render_label_cams
from wafer.mixed.data import MixedSet
from wafer.mixed.labels import MIXED_LABELS
from wafer.mixed.predictor import MixedPredictor

FILES = ("model", "calibration", "thresholds", "evaluate_metrics", "calibrate_metrics")
FILES += ("predictions", "ingested")
POINTS = {
    "macro_f1": "per-label thresholds fit on validation for the best macro-F1",
    "cost": "per-label thresholds fit on validation to the escape : false-alarm cost (few "
    "present patterns missed)",
}


@dataclass(frozen=True)
class MixedExample:
    code: str  # true pattern code
    row: int  # row of the ingested file
    map: np.ndarray
    predicted: str  # the code the evaluate stage served
    correct: bool


@dataclass
class MixedDemoAssets:
    predictor: MixedPredictor
    figures: dict
    examples: list[MixedExample]
    paths: dict[str, Path]
    cam: CamSpec | None = None
    notes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    max_side: int = MAX_SIDE


def _need(path: Path) -> Path:
    if not Path(path).is_file():
        raise WaferInputError(path, "no such file (run `dvc repro` in the mixed pipeline first?)")
    return Path(path)


def mixed_figures(evaluate_json: Path, calibrate_json: Path) -> dict:
    """The figures the header shows, read from the mixed evaluate and calibrate metrics."""
    ev, cal = read_json(_need(evaluate_json)), read_json(_need(calibrate_json))
    try:
        point = str(ev["served"])
        t = ev["test"][point]
        return {
            "objective": point,
            "macro_f1": float(t["macro_f1"]),
            "macro_f1_ci95": [float(v) for v in t["ci95"]["macro_f1"]],
            "exact_match": float(t["exact_match"]),
            "exact_match_ci95": [float(v) for v in t["ci95"]["exact_match"]],
            "hamming_loss": float(t["hamming_loss"]),
            "n_test": int(ev["test"]["maps"]),
            "ece_after": float(cal["test"]["mean_label_ece_after"]),
            "ece_before": float(cal["test"]["mean_label_ece_before"]),
        }
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise WaferInputError(
            f"{evaluate_json} / {calibrate_json}", f"missing figure: {type(exc).__name__}: {exc}"
        ) from None


def load_mixed_examples(predictions_csv: Path, data: MixedSet) -> list[MixedExample]:
    """One test map per pattern code (see the module docstring), in the codes' sorted order."""
    path = _need(predictions_csv)
    first: dict[str, tuple[int, str]] = {}
    right: dict[str, tuple[int, str]] = {}
    with open(path, newline="") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            if r.get("split") != "test":
                continue
            try:
                row, true, pred = int(r["row"]), r["true_code"], r["predicted_code"]
            except (KeyError, TypeError, ValueError):
                raise WaferInputError(
                    path, "not the mixed evaluate stage's predictions", row=i
                ) from None
            if not 0 <= row < len(data):
                raise WaferInputError(path, f"row {row} is not in the ingested maps", row=i)
            first.setdefault(true, (row, pred))
            if pred == true:
                right.setdefault(true, (row, pred))
    out = []
    for code in sorted(first):
        row, pred = right.get(code, first[code])
        out.append(MixedExample(code, row, data.maps[row], pred, pred == code))
    return out


def cam_spec(predictor: MixedPredictor, pipeline: Path, device) -> CamSpec | None:
    """The mixed pipeline's Grad-CAM settings (its params.yaml's ``gradcam``), or None (no
    CAM) when that file is not there."""
    try:
        g = pipeline_params(GradcamParams, pipeline)
    except UsageError:
        return None
    ck = predictor.checkpoint
    layer = resolve_layer_name(g.layer, ck.config.stem, ck.input_size)
    return CamSpec(layer, g.method, 8, device)


def load_mixed_assets(
    pipeline: str | os.PathLike,
    given: dict[str, str | os.PathLike | None] | None = None,
    device: str = "auto",
    max_side: int = MAX_SIDE,
) -> MixedDemoAssets:
    """Everything the mixed demo serves, read once at start: each file as given, else the mixed
    pipeline's own (its dvc.yaml's ``paths``)."""
    pipeline = Path(pipeline)
    files, _ = served_files({k: (given or {}).get(k) for k in FILES}, pipeline)
    predictor = MixedPredictor.load(
        files["model"], files["calibration"], files["thresholds"], device
    )
    figures = mixed_figures(files["evaluate_metrics"], files["calibrate_metrics"])
    data = MixedSet.load(_need(files["ingested"]))
    examples = load_mixed_examples(files["predictions"], data)
    notes = []
    if figures["objective"] != predictor.objective:
        notes.append(
            f"metrics describe the {figures['objective']} operating point, the "
            f"{predictor.objective} point is served"
        )
    cam = cam_spec(predictor, pipeline, predictor.device)
    return MixedDemoAssets(predictor, figures, examples, files, cam, notes, max_side=max_side)


def mixed_header_markdown(assets: MixedDemoAssets) -> str:
    f, p = assets.figures, assets.predictor
    lo, hi = f["macro_f1_ci95"]
    elo, ehi = f["exact_match_ci95"]
    views = p.calibration.views
    lines = [
        "# MixedWM38 mixed-type wafer-map classifier (8 labels, several per map)",
        f"Serving `{assets.paths['model']}` + `{assets.paths['calibration']}` + "
        f"`{assets.paths['thresholds']}` — what the mixed pipeline's evaluate stage scored "
        f"({f'{views}-view TTA, ' if views > 1 else ''}a temperature and a threshold per label).",
        "",
        f"**Serving the `{p.objective}` operating point** ({POINTS.get(p.objective, '')}).",
        "",
        f"**Test macro-F1 {f['macro_f1']:.3f}** (95% CI {lo:.3f}–{hi:.3f}) · **exact match "
        f"{f['exact_match']:.3f}** ({elo:.3f}–{ehi:.3f}) · Hamming loss {f['hamming_loss']:.4f}"
        f" on {f['n_test']} test maps · mean per-label ECE after calibration "
        f"{f['ece_after']:.4f} (before {f['ece_before']:.4f})",
        "",
        "<small>Figures read at start from the mixed pipeline's evaluate and calibrate "
        "metrics.</small>",
    ]
    for note in assets.notes:
        lines.append(f"\n**⚠ Stale metrics:** {note}.")
    return "\n".join(lines)


def label_cams_png(assets: MixedDemoAssets, m: np.ndarray, present: list[str], title: str):
    """One Grad-CAM per present label on the unrotated map (PNG bytes), or None."""
    if assets.cam is None or not present:
        return None
    p = assets.predictor
    x = resize_maps([m], p.checkpoint.input_size)
    ks = np.array([MIXED_LABELS.index(name) for name in present])
    cams = batched_cams(p.model, assets.cam, x, np.zeros(len(ks), dtype=np.int64), ks)
    grids = {n: upsample_to_grid(c, m.shape) for n, c in zip(present, cams, strict=True)}
    return render_label_cams(m, grids, title, dpi=100)


def analyse_mixed(
    assets: MixedDemoAssets,
    m: np.ndarray,
    source: str,
    warning: str | None = None,
    example: MixedExample | None = None,
    cam: bool = True,
) -> Analysis:
    """One valid die map through the served mixed model (the caller holds the model lock)."""
    p = assets.predictor
    row = p.predict([m], [source])[0]
    present, probs = row["labels"], row["probabilities"]
    what = " + ".join(present) if present else "no pattern"
    lines = [
        f"### Present: {what} — pattern code `{row['pattern_code']}`",
        f"At the `{p.objective}` operating point: a label is present when its calibrated "
        "probability reaches its threshold.",
        "",
        "| label | probability | threshold | present |",
        "|---|---|---|---|",
    ]
    for k, name in enumerate(MIXED_LABELS):
        mark = "**yes**" if name in present else "no"
        lines.append(f"| {name} | {probs[name]:.3f} | {p.thresholds[k]:.2f} | {mark} |")
    lines += ["", f"Source: {source} ({m.shape[0]}×{m.shape[1]} dies)"]
    if example is not None:
        verdict = "correct" if example.correct else "wrong"
        lines.append(
            f"\nTest example, ingested row {example.row}: true code **{example.code}**; the "
            f"evaluate stage served {example.predicted} ({verdict})."
        )
    png = label_cams_png(assets, m, present, f"{source}: {row['pattern_code']}") if cam else None
    return Analysis(
        result_md="\n".join(lines),
        top3=dict(probs),
        mode_md="" if present else "*No label reached its threshold: no CAM to show.*",
        cam_png=png,
        warning_md=f"⚠ {source}: {warning}" if warning else "",
        row=row,
    )


def handle_mixed_upload(assets: MixedDemoAssets, path: object) -> Analysis:
    """The 9-class demo's upload handler (checked before the model lock, gradio's copy
    deleted afterwards) with this demo's analysis."""
    return handle_upload(assets, path, analyse_mixed)


def build_mixed_app(assets: MixedDemoAssets):
    """The gradio page of the mixed demo (gradio imported here)."""
    from PIL import Image

    gr = import_gradio()
    blocks_kw, _ = style(gr)
    examples = assets.examples

    def outputs_of(a: Analysis):
        cam = Image.open(io.BytesIO(a.cam_png)) if a.cam_png else None
        return a.warning_md, a.result_md, a.top3 or None, a.mode_md, cam

    def on_example(evt):
        ex = examples[int(evt.index)]
        with assets.lock:
            a = analyse_mixed(assets, ex.map, f"test example {ex.code} (row {ex.row})", None, ex)
        return outputs_of(a)

    on_example.__annotations__ = {"evt": gr.SelectData}

    def on_upload(path):
        return outputs_of(handle_mixed_upload(assets, path))

    with gr.Blocks(
        title="MixedWM38 mixed-type classifier", analytics_enabled=False, **blocks_kw
    ) as app:
        gr.Markdown(mixed_header_markdown(assets), elem_id="header")
        with gr.Row():
            with gr.Column(scale=2):
                gallery, upload = input_column(
                    gr, [(ex.map, ex.code) for ex in examples], "one per pattern code", columns=4
                )
            with gr.Column(scale=3):
                warning = gr.Markdown(elem_id="warning")
                result = gr.Markdown("*Click an example or upload a map.*", elem_id="prediction")
                probs = gr.Label(
                    num_top_classes=len(MIXED_LABELS), label="Per-label probability (calibrated)"
                )
                gr.Markdown("**Grad-CAM, one per present label** (unrotated map)")
                cam = gr.Image(show_label=False, type="pil", interactive=False, elem_id="cam")
                note = gr.Markdown(elem_id="cam-note")
        outs = [warning, result, probs, note, cam]
        gallery.select(on_example, None, outs)
        upload.upload(on_upload, upload, outs)
    return app
