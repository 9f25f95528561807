"""Gradio demo of the served pipeline: ``python -m wafer.demo`` (``pip install -e '.[demo]'``).

It serves exactly what the `evaluate` stage reported on (:class:`wafer.serve.Predictor`:
block-max resize, TTA logits, temperature, per-class thresholds, operating point), loaded from
the pipeline's outputs: the paths given, else dvc.yaml's ``paths`` (as for ``wafer predict``).
It binds to 127.0.0.1 unless ``--host`` says otherwise.

* The model's figures in the header (test macro-F1 with its 95% CI, balanced accuracy, ECE after
  calibration, temperature, tau) are read at start from the evaluate and calibrate stages'
  metrics; a mismatch between those and the served calibration/thresholds files
  (stale metrics) is shown as a warning.
* Examples: one test map per class (from the served test predictions + the ingested maps): its
  ``confident_correct`` example (:meth:`wafer.predictions.Predictions.examples`), else the
  first test map of that class; classes without a test map are left out. Click one to run it.
* Upload: a PNG (8-bit grey, 0 outside / 128 pass / 255 fail, one pixel per die; see
  :mod:`wafer.readers`) or a .npy die map (``allow_pickle=False``; a 3-D stack shows its first
  map). An image that does not look like a wafer map is still predicted, with a visible warning.
  An upload larger than ``--max-side`` dies a side is refused from its header, before the
  global model lock is taken, so one oversized upload never makes the other users wait; errors
  name the upload by its own file name, never by the server's temporary path.
* Output: predicted class, calibrated confidence, top 3, the defect decision at the operating
  point, an illustrative process-mode reading (:mod:`wafer.process_modes`) and the Grad-CAM
  (map | CAM | overlay) of the predicted class on the unrotated map.
* Novelty (with the `index` stage's index and novelty.json, defaults as for
  ``wafer predict``; without the pipeline's index the demo runs without it and says so in the
  header): at the top of the result, a map whose novelty score is above the threshold set on
  validation is flagged in a warning block ("Unlike every known pattern — review", with score,
  threshold and method); otherwise a quiet "Known pattern" line.
* Nearest historical maps: a gallery of the ``--neighbours`` (6) nearest training maps of the
  index, drawn from the ingested maps by row id, captioned "label · row · distance". At start
  every index row must be an ingested row with the index's label (else the files are
  from different runs and the demo refuses to start).

The module imports without gradio; :func:`build_app` imports it.
"""

from __future__ import annotations

import io
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wafer.classes import CLASS_NAMES
from wafer.cli_util import cam_settings, served_files
from wafer.gradcam_report import served_cam_png
from wafer.ingest import Ingested
from wafer.io import UsageError, WaferInputError, read_json
from wafer.predictions import Predictions
from wafer.process_modes import CAVEAT, PROCESS_MODES, interpretation_markdown
from wafer.readers import MAX_SIDE, read_maps
from wafer.serve import Predictor

__all__ = [
    "PROCESS_MODES",
    "DemoAssets",
    "DemoExample",
    "Analysis",
    "analyse",
    "analyse_file",
    "analyse_in",
    "handle_upload",
    "read_upload",
    "build_app",
    "launch",
    "load_assets",
    "load_examples",
    "model_figures",
]

GRADIO_MISSING = "the demo needs gradio: pip install -e '.[demo]' (or pip install 'gradio>=4.44')"
MAP_RGB = np.array([[242, 242, 242], [166, 189, 219], [215, 48, 31]], dtype=np.uint8)
CSS = (
    "#prediction h3{margin-top:0} #warning p{color:#b45309;font-weight:600} "
    "#novelty.novel{border:3px solid #b91c1c;background:#fef2f2;border-radius:8px;"
    "padding:10px 14px} #novelty.novel h3{color:#b91c1c;margin:0 0 4px} "
    "#novelty.novel p{color:#7f1d1d} #novelty.known p{color:#4b5563} "
    "#neighbours .caption-label{white-space:normal;max-width:100%;opacity:.85}"
)
NEIGHBOURS = 6  # nearest training maps shown per analysed map
NEIGHBOUR_COLUMNS = 3


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DemoExample:
    cls: str  # true class
    row: int  # row of the ingested file
    map: np.ndarray
    predicted: str  # what the evaluate stage served (its predictions file)
    confidence: float
    correct: bool


@dataclass
class DemoAssets:
    predictor: Predictor
    figures: dict
    examples: list[DemoExample]
    notes: list[str] = field(default_factory=list)  # e.g. stale metrics
    lock: threading.Lock = field(default_factory=threading.Lock)
    max_side: int = MAX_SIDE  # uploads larger than this many dies a side are refused
    ingested: Ingested | None = None  # examples' and neighbours' maps
    neighbours: int = NEIGHBOURS  # nearest training maps shown (with the novelty index)
    novelty_note: str = ""  # why there is no novelty check, when there is none


def _need(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise WaferInputError(path, "no such file (run `dvc repro` first?)")
    return path


def model_figures(evaluate_json: str | os.PathLike, calibrate_json: str | os.PathLike) -> dict:
    """The figures the demo shows, read from the metrics files (never typed in the code)."""
    ev = read_json(_need(evaluate_json))
    cal = read_json(_need(calibrate_json))
    try:
        objective = str(ev["objective"])
        t = ev["test"][objective]  # the served point's test figures
        op = t["operating_point"]
        return {
            "objective": objective,
            "macro_f1": float(t["macro_f1"]),
            "macro_f1_ci95": [float(v) for v in t.get("macro_f1_ci95", {}).values()],
            "macro_f1_pc": float(t["prevalence_corrected"]["macro_f1"]),
            "balanced_accuracy": float(t["balanced_accuracy"]),
            "n_test": int(t["n"]) if "n" in t else None,
            "ece_after": float(cal["test"]["after"]["ece"]),
            "ece_before": float(cal["test"]["before"]["ece"]) if "before" in cal["test"] else None,
            "temperature": float(cal["temperature"]),
            "tau": float(op["tau"]),
            "tta": bool(ev["tta"]) if "tta" in ev else None,
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise WaferInputError(
            f"{evaluate_json} / {calibrate_json}", f"missing figure: {type(exc).__name__}: {exc}"
        ) from None


def stale_notes(figures: dict, predictor: Predictor) -> list[str]:
    """Where the metrics files disagree with what is served (e.g. metrics from another run)."""
    s = predictor.serving
    notes = []
    if not math.isclose(figures["temperature"], s.temperature, rel_tol=0, abs_tol=1e-6):
        notes.append(
            f"metrics were computed at temperature {figures['temperature']:g}, the served "
            f"calibration has {s.temperature:g}"
        )
    if figures["objective"] != s.objective:
        notes.append(
            f"metrics describe the {figures['objective']} operating point, the {s.objective} "
            "point is served"
        )
    if figures["tau"] is not None and not math.isclose(figures["tau"], s.tau, abs_tol=1e-6):
        notes.append(f"metrics were computed at tau {figures['tau']:g}, served tau is {s.tau:g}")
    if figures["tta"] is not None and figures["tta"] != s.tta:
        notes.append(f"metrics were computed with TTA {figures['tta']}, served TTA is {s.tta}")
    return notes


def load_examples(
    predictions_csv: str | os.PathLike,
    ingested_npz: str | os.PathLike,
    ingested: Ingested | None = None,
) -> list[DemoExample]:
    """One test map per class (rule in the module docstring), in CLASS_NAMES order; the maps
    from ``ingested`` when given (already loaded from ``ingested_npz``)."""
    path = _need(predictions_csv)
    pred = Predictions.load(path)
    ing = ingested if ingested is not None else Ingested.load(_need(ingested_npz))
    n_rows = len(ing.labels)
    actual, predicted, conf, rows = pred.actual, pred.predicted, pred.confidence, pred.row
    out = []
    for cls in CLASS_NAMES:
        mine = np.flatnonzero(actual == cls)
        if not len(mine):
            continue
        best = dict(pred.examples(cls)).get("confident_correct")
        pos = best if best is not None else int(mine[0])
        row = int(rows[pos])
        if not 0 <= row < n_rows:
            raise WaferInputError(path, f"row {row} is not in {ingested_npz}", row=pos)
        out.append(
            DemoExample(
                cls=cls,
                row=row,
                map=ing.map(row),
                predicted=str(predicted[pos]),
                confidence=float(conf[pos]),
                correct=bool(predicted[pos] == cls),
            )
        )
    return out


def check_index_rows(predictor: Predictor, ing: Ingested, ingested_npz: str | os.PathLike):
    """Every row of the novelty index must be a row of the ingested file with the same label:
    else the neighbour maps shown would be other maps (files from different runs)."""
    if predictor.novelty is None:
        return
    idx, where = predictor.novelty.index, predictor.paths.get("index", "index")
    rows, n = idx.rows, len(ing.labels)
    outside = (rows < 0) | (rows >= n)
    if outside.any():
        raise WaferInputError(
            where,
            f"row {int(rows[outside][0])} is not in {ingested_npz} ({n} rows): re-run `dvc repro`",
        )
    differ = np.flatnonzero(ing.labels[rows] != idx.labels)
    if len(differ):
        i = int(differ[0])
        theirs = int(ing.labels[rows[i]])
        theirs_name = CLASS_NAMES[theirs] if 0 <= theirs < len(CLASS_NAMES) else "unlabelled"
        raise WaferInputError(
            where,
            f"row {int(rows[i])} is {CLASS_NAMES[int(idx.labels[i])]} in the index but "
            f"{theirs_name} in {ingested_npz}: files from different runs; re-run `dvc repro`",
        )


def load_assets(
    model: str | os.PathLike | None = None,
    calibration: str | os.PathLike | None = None,
    thresholds: str | os.PathLike | None = None,
    evaluate_json: str | os.PathLike | None = None,
    calibrate_json: str | os.PathLike | None = None,
    predictions_csv: str | os.PathLike | None = None,
    ingested_npz: str | os.PathLike | None = None,
    device: str = "auto",
    max_side: int = MAX_SIDE,
    index: str | os.PathLike | None = None,
    novelty: str | os.PathLike | None = None,
    neighbours: int = NEIGHBOURS,
    cam_method: str | None = None,
    cam_layer: str | None = None,
) -> DemoAssets:
    """Everything the demo serves, read once at start. Each file: as given, else the
    pipeline's (dvc.yaml's ``paths``; :func:`wafer.cli_util.served_files`, which also decides
    whether the novelty index is served); CAM method and layer as given, else params.yaml's
    ``gradcam`` section."""
    files, novelty_note = served_files(
        {
            "model": model,
            "calibration": calibration,
            "thresholds": thresholds,
            "evaluate_metrics": evaluate_json,
            "calibrate_metrics": calibrate_json,
            "predictions": predictions_csv,
            "ingested": ingested_npz,
            "index": index,
            "novelty": novelty,
        }
    )
    cam_method, cam_layer = cam_settings(cam_method, cam_layer, needed=False)
    predictor = Predictor.load(
        files["model"],
        files["calibration"],
        files["thresholds"],
        device,
        cam_layer,
        cam_method,
        files["index"],
        files["novelty"],
    )
    evaluate_json, calibrate_json = files["evaluate_metrics"], files["calibrate_metrics"]
    predictions_csv, ingested_npz = files["predictions"], files["ingested"]
    figures = model_figures(evaluate_json, calibrate_json)
    ing = Ingested.load(_need(ingested_npz))
    check_index_rows(predictor, ing, ingested_npz)
    examples = load_examples(predictions_csv, ingested_npz, ing)
    notes = stale_notes(figures, predictor)
    return DemoAssets(
        predictor,
        figures,
        examples,
        notes,
        max_side=max_side,
        ingested=ing,
        neighbours=neighbours,
        novelty_note=novelty_note,
    )


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class Analysis:
    """What the demo shows for one map."""

    result_md: str  # predicted class, confidence, decision, top 3, source
    top3: dict[str, float]  # for gr.Label
    mode_md: str  # process-mode interpretation
    cam_png: bytes | None
    warning_md: str  # "" when none
    row: dict | None  # the Predictor row
    novelty_md: str = ""  # the novelty verdict ("" without the novelty index)
    novel: bool | None = None  # flagged as unlike every known pattern (None: not scored)
    # the nearest training maps: (die map from the ingested file, "label · row · d=distance")
    neighbours: tuple[tuple[np.ndarray, str], ...] = ()


OPERATING_POINTS = {
    "cost": "a screen fit on validation to the escape : false-alarm cost: few defects escape",
    "macro_f1": "fit on validation for the most accurate label (macro-F1)",
}


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def header_markdown(assets: DemoAssets) -> str:
    f, s, p = assets.figures, assets.predictor.serving, assets.predictor
    ci = f["macro_f1_ci95"]
    ci_txt = f" (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if len(ci) == 2 else ""
    n_txt = f" on {f['n_test']} test maps" if f["n_test"] else ""
    lines = [
        "# WM-811K wafer-map defect classifier",
        f"Serving `{p.paths.get('model', '?')}` + `{p.paths.get('calibration', '?')}` + "
        f"`{p.paths.get('thresholds', '?')}` — the pipeline the evaluate stage reported on "
        f"({'8-view TTA, ' if s.tta else ''}temperature, per-class thresholds, operating point).",
        "",
        f"**Serving the `{s.objective}` operating point** "
        f"({OPERATING_POINTS.get(s.objective, s.objective)}).",
        "",
        f"**Test macro-F1 {f['macro_f1']:.3f}**{ci_txt} (prevalence-corrected "
        f"{f['macro_f1_pc']:.3f}) · **balanced accuracy "
        f"{f['balanced_accuracy']:.3f}**{n_txt} · **ECE after calibration "
        f"{f['ece_after']:.3f}** (before {_fmt(f['ece_before'])}) · temperature "
        f"{f['temperature']:.3f} · operating point τ = {_fmt(f['tau'], 2)} "
        f"(defect if P(defect) ≥ τ; escape : false-alarm cost {s.cost_ratio:g} : 1)",
        "",
        "<small>Figures read at start from the evaluate and calibrate stages' metrics.</small>",
    ]
    nov = p.novelty
    if nov is not None:
        c = nov.config
        lines += [
            "",
            f"**Novelty check:** {_method(c.method, c.k)} score; a map above {_num(c.threshold)} "
            f"is flagged as unlike every known pattern (threshold set on validation to flag "
            f"about {c.false_flag_rate:.0%} of known maps; index of {len(nov.index)} training "
            "maps).",
        ]
    elif assets.novelty_note:
        lines.append(f"\n*No novelty check: {assets.novelty_note}.*")
    for note in assets.notes:
        lines.append(f"\n**⚠ Stale metrics:** {note}.")
    return "\n".join(lines)


def _num(v: float) -> str:
    return f"{v:.4g}"


def _method(method: str, k: int) -> str:
    return f"{method}, k = {k}" if method == "knn" else method


def novelty_markdown(predictor: Predictor, row: dict) -> str:
    """The novelty verdict of one Predictor row ("" when it was not scored)."""
    if "novelty_score" not in row or predictor.novelty is None:
        return ""
    c = predictor.novelty.config
    score, method = row["novelty_score"], _method(row["novelty_method"], c.k)
    if row["novel"]:
        return (
            "### ⚠ Unlike every known pattern — review\n"
            f"Novelty score {_num(score)} > threshold {_num(c.threshold)} ({method}): this map "
            "is unlike the training maps of every class; the predicted class below is only the "
            "nearest known one."
        )
    return f"Known pattern: novelty score {_num(score)} ≤ threshold {_num(c.threshold)} ({method})"


def neighbour_caption(n: dict) -> str:
    return f"{n['label']} · row {n['row']} · d={n['distance']:.3f}"


def analyse(
    predictor: Predictor,
    m: np.ndarray,
    source: str,
    warning: str | None = None,
    example: DemoExample | None = None,
    cam: bool = True,
    neighbours: int = 0,
    ingested: Ingested | None = None,
) -> Analysis:
    """Predict one valid die map and assemble the demo's outputs; with the novelty index its
    verdict and, with ``neighbours`` K, the K nearest training maps (their maps taken from
    ``ingested``)."""
    k = neighbours if predictor.novelty is not None else 0
    if k and ingested is None:
        raise ValueError("the neighbour maps need the ingested maps (ingested)")
    row = predictor.predict([m], [source], neighbours=k)[0]
    s = predictor.serving
    p_def = row["p_defect"]
    if row["defect"]:
        decision = (
            f"**DEFECT** at the `{s.objective}` operating point: P(defect) = {p_def:.3f} "
            f"≥ τ = {s.tau:.2f}"
        )
    else:
        decision = (
            f"**no defect** at the `{s.objective}` operating point: P(defect) = {p_def:.3f} "
            f"< τ = {s.tau:.2f}"
        )
    top = " · ".join(f"{c} {p:.3f}" for c, p in row["top3"])
    lines = [
        f"### Predicted: {row['predicted']} — calibrated confidence {row['confidence']:.3f}",
        decision,
        "",
        f"Top 3: {top}",
        "",
        f"Source: {source} ({m.shape[0]}×{m.shape[1]} dies)",
    ]
    if example is not None:
        verdict = "correct" if example.correct else "wrong"
        lines.append(
            f"\nTest example, ingested row {example.row}: true class **{example.cls}**; the "
            f"evaluate stage served {example.predicted} ({example.confidence:.3f}, {verdict})."
        )
    warning_md = f"⚠ {source}: {warning}" if warning else ""
    png = served_cam_png(predictor, m, row, dpi=100) if cam and predictor.cam_method else None
    return Analysis(
        result_md="\n".join(lines),
        top3={c: p for c, p in row["top3"]},
        mode_md=interpretation_markdown(row["predicted"]),
        cam_png=png,
        warning_md=warning_md,
        row=row,
        novelty_md=novelty_markdown(predictor, row),
        novel=row.get("novel"),
        neighbours=tuple(
            (ingested.map(n["row"]), neighbour_caption(n)) for n in row.get("neighbours", [])
        ),
    )


def analyse_in(
    assets: DemoAssets,
    m: np.ndarray,
    source: str,
    warning: str | None = None,
    example: DemoExample | None = None,
    cam: bool = True,
) -> Analysis:
    """:func:`analyse` as the app runs it: with the assets' neighbour count and ingested maps
    (the caller holds the model lock)."""
    return analyse(
        assets.predictor, m, source, warning, example, cam, assets.neighbours, assets.ingested
    )


def error_analysis(message: str) -> Analysis:
    return Analysis("### No prediction", {}, "", None, f"⚠ {message}", None)


def read_upload(
    path: str | os.PathLike, name: str | None = None, max_side: int = MAX_SIDE
) -> tuple[np.ndarray, str | None] | Analysis:
    """An uploaded .png or .npy -> (its first map, warning), or the error :class:`Analysis`.
    Cheap and bounded (the size cap is checked from the header): run it before taking the
    model lock. Messages name the upload by ``name``, never by the server's temporary path."""
    path = Path(path)
    name = name or path.name
    if path.suffix.lower() not in (".png", ".npy"):
        return error_analysis(f"{name}: upload a .png or a .npy die map")
    items = read_maps(path, max_side=max_side)
    first = items[0]
    if first.error is not None:
        msg = str(first.error).replace(str(path), name).replace(str(path.parent), "")
        return error_analysis(msg)
    warning = first.warning
    if len(items) > 1:
        extra = f"a stack of {len(items)} maps: showing the first"
        warning = f"{warning}; {extra}" if warning else extra
    return first.map, warning


def analyse_file(
    predictor: Predictor,
    path: str | os.PathLike,
    name: str | None = None,
    max_side: int = MAX_SIDE,
) -> Analysis:
    """An uploaded .png or .npy (read by :func:`read_upload`; first map of a stack)."""
    name = name or Path(path).name
    got = read_upload(path, name, max_side)
    if isinstance(got, Analysis):
        return got
    return analyse(predictor, got[0], name, got[1])


def handle_upload(assets: DemoAssets, path: object) -> Analysis:
    """The demo's upload handler: read and size-check the upload (:func:`read_upload`) before
    taking the model lock, so an oversized or broken upload is refused without making anyone
    wait; only a valid map is predicted under the lock."""
    if not path:
        return error_analysis("nothing uploaded")
    path = Path(path if isinstance(path, str | os.PathLike) else path.name)
    got = read_upload(path, path.name, assets.max_side)
    if isinstance(got, Analysis):
        return got
    with assets.lock:
        try:
            return analyse_in(assets, got[0], path.name, got[1])
        except WaferInputError as exc:
            return error_analysis(str(exc).replace(str(path), path.name))


def map_thumbnail(m: np.ndarray, size: int = 160):
    """RGB PIL image of a die map (grey outside, blue pass, red fail), nearest-upscaled."""
    from PIL import Image

    h, w = m.shape
    scale = max(1, size // max(h, w))
    return Image.fromarray(MAP_RGB[m]).resize((w * scale, h * scale), Image.NEAREST)


# --------------------------------------------------------------------------- gradio


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home
    try:
        import gradio as gr
    except ImportError:
        raise SystemExit(f"error: {GRADIO_MISSING}") from None
    return gr


def _style(gr) -> tuple[dict, dict]:
    """(Blocks kwargs, launch kwargs) for theme and CSS: gradio >= 6 takes them in launch(),
    older versions in Blocks(). System fonts: the page loads nothing from the internet."""
    import inspect

    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )
    style = {"theme": theme, "css": CSS}
    if "theme" in inspect.signature(gr.Blocks.launch).parameters:
        return {}, style
    return style, {}


def build_app(assets: DemoAssets):
    """The gradio Blocks app (gradio imported here)."""
    gr = _import_gradio()
    from PIL import Image

    examples = assets.examples
    blocks_kw, _ = _style(gr)
    show_neighbours = assets.predictor.novelty is not None and assets.neighbours > 0

    def outputs_of(a: Analysis):
        cam = Image.open(io.BytesIO(a.cam_png)) if a.cam_png else None
        verdict = {True: ["novel"], False: ["known"]}.get(a.novel, [])
        near = [(map_thumbnail(m), caption) for m, caption in a.neighbours]
        return (
            gr.update(value=a.novelty_md, elem_classes=verdict),
            a.warning_md,
            a.result_md,
            a.top3 or None,
            a.mode_md,
            cam,
            near or None,
        )

    def on_example(evt):
        ex = examples[int(evt.index)]
        with assets.lock:
            a = analyse_in(assets, ex.map, f"test example {ex.cls} (row {ex.row})", None, ex)
        return outputs_of(a)

    # gradio finds the event-data argument by its annotation; set it as a class, not as the
    # string that `from __future__ import annotations` makes of it.
    on_example.__annotations__ = {"evt": gr.SelectData}

    def on_upload(path):
        return outputs_of(handle_upload(assets, path))

    title = "WM-811K wafer-map classifier"
    with gr.Blocks(title=title, analytics_enabled=False, **blocks_kw) as app:
        gr.Markdown(header_markdown(assets), elem_id="header")
        with gr.Row():
            with gr.Column(scale=2):
                gallery = gr.Gallery(
                    value=[(map_thumbnail(ex.map), ex.cls) for ex in examples],
                    label="Test examples, one per class: click one",
                    columns=3,
                    height=540,
                    allow_preview=False,
                    interactive=False,
                    format="png",
                    object_fit="contain",
                    elem_id="examples",
                )
                upload = gr.File(
                    label="…or upload a wafer map: PNG (8-bit grey: 0 outside, 128 pass, "
                    "255 fail; one pixel per die) or .npy",
                    file_types=[".png", ".npy"],
                    type="filepath",
                    elem_id="upload",
                )
            with gr.Column(scale=3):
                novelty = gr.Markdown(elem_id="novelty")
                warning = gr.Markdown(elem_id="warning")
                result = gr.Markdown("*Click an example or upload a map.*", elem_id="prediction")
                top3 = gr.Label(num_top_classes=3, label="Top 3 (calibrated)", elem_id="top3")
                near = gr.Gallery(
                    label=f"The {assets.neighbours} nearest historical (training) maps: "
                    "label · ingested row · distance",
                    columns=NEIGHBOUR_COLUMNS,
                    height=None,
                    allow_preview=False,
                    interactive=False,
                    format="png",
                    object_fit="contain",
                    visible=show_neighbours,
                    elem_id="neighbours",
                )
                gr.Markdown(
                    "**Grad-CAM** of the predicted class (unrotated map): map | CAM | overlay"
                )
                cam = gr.Image(
                    label="Grad-CAM",
                    show_label=False,
                    type="pil",
                    interactive=False,
                    elem_id="cam",
                )
                mode = gr.Markdown(f"*{CAVEAT}*", elem_id="process-mode")
        outs = [novelty, warning, result, top3, mode, cam, near]
        gallery.select(on_example, None, outs)
        upload.upload(on_upload, upload, outs)
    return app


def launch(app, host: str = "127.0.0.1", port: int = 7860, block: bool = True, **kw):
    """Start the server (bound to ``host``, 127.0.0.1 by default)."""
    import inspect

    gr = _import_gradio()
    _, launch_kw = _style(gr)
    if "max_file_size" in inspect.signature(app.launch).parameters:
        launch_kw["max_file_size"] = "20mb"  # die maps are kilobytes
    return app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        share=False,
        inbrowser=False,
        **launch_kw,
        **kw,
    )


def main(
    host: str = "127.0.0.1",
    port: int = 7860,
    model: Path | None = None,
    calibration: Path | None = None,
    thresholds: Path | None = None,
    evaluate_metrics: Path | None = None,
    calibrate_metrics: Path | None = None,
    predictions: Path | None = None,
    ingested: Path | None = None,
    device: str = "auto",
    max_side: int = MAX_SIDE,
    index: Path | None = None,
    novelty: Path | None = None,
    neighbours: int = NEIGHBOURS,
) -> None:
    """Serve the demo of the trained pipeline (binds to 127.0.0.1 unless --host says so;
    uploads larger than --max-side dies a side are refused). Every file defaults to the
    pipeline's own (dvc.yaml's paths, in the current directory); the index and novelty.json
    are used when the index exists (novelty flag and the --neighbours nearest training maps)."""
    from wafer.cli_util import check_device

    _import_gradio()  # fail fast, before loading anything
    device = check_device(device)
    if max_side < 1:
        raise UsageError(f"--max-side {max_side}: must be at least 1")
    if neighbours < 0:
        raise UsageError(f"--neighbours {neighbours}: must be at least 0")
    assets = load_assets(
        model,
        calibration,
        thresholds,
        evaluate_metrics,
        calibrate_metrics,
        predictions,
        ingested,
        device,
        max_side,
        index,
        novelty,
        neighbours,
    )
    for note in assets.notes:
        print(f"warning: stale metrics: {note}")
    if assets.novelty_note:
        print(f"warning: {assets.novelty_note}")
    print(
        f"demo: serving {assets.predictor.paths['model']} on http://{host}:{port} (Ctrl-C to stop)"
    )
    launch(build_app(assets), host, port, block=True)


def _cli() -> None:
    import typer

    from wafer.cli_util import one_line_errors

    cli = typer.Typer(add_completion=False)
    cli.command(help=main.__doc__)(one_line_errors(main))
    cli()


if __name__ == "__main__":
    _cli()
