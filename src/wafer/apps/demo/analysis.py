"""One map through the demo: its served prediction, the defect decision, the novelty verdict,
the nearest training maps, the Grad-CAM and the texts shown (:func:`analyse`), and the upload
handler that refuses a bad or oversized upload before taking the model lock."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wafer.apps.demo.assets import DemoAssets, DemoExample
from wafer.apps.process_modes import interpretation_markdown
from wafer.core.errors import WaferInputError
from wafer.data.files import Ingested
from wafer.data.maprules import MAX_SIDE
from wafer.explain.report import served_cam_png
from wafer.inputs.read import Item, read_maps
from wafer.serving.predictor import Predictor
from wafer.serving.stream import predict_stream


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
        f"({f'{s.views}-view TTA, ' if s.views > 1 else ''}temperature, per-class thresholds, "
        "operating point).",
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
    _, row = next(predict_stream(predictor, [Item(source, m, None, warning)], neighbours=k))
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
    if "prediction_set" in row and s.sets is not None:
        members = ", ".join(row["prediction_set"])
        lines[4:4] = [
            f"**Prediction set** ({1 - s.sets.alpha:.0%} coverage, {s.sets.method}): {members}"
            + (" — the model hesitates: review" if len(row["prediction_set"]) > 1 else ""),
            "",
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


def upload_dir() -> Path:
    """Where gradio keeps uploaded files (its ``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def discard_upload(path: Path) -> None:
    """Delete an upload gradio stored in its temporary folder, once it has been analysed or
    refused (with the per-upload folder gradio made for it, when empty): the server keeps no
    user's file. Files elsewhere (a path given by a caller) are left alone."""
    try:
        path = path.resolve()
        root = upload_dir().resolve()
        if root not in path.parents or not path.is_file():
            return
        path.unlink()
        if path.parent != root and not any(path.parent.iterdir()):
            path.parent.rmdir()
    except OSError:
        pass  # already gone, or not ours to delete


def handle_upload(assets, path: object, analyse_map=None) -> Analysis:
    """The demo's upload handler: read and size-check the upload (:func:`read_upload`) before
    taking the model lock, so an oversized or broken upload is refused without making anyone
    wait; only a valid map is predicted under the lock, by ``analyse_map(assets, map, name,
    warning)`` (:func:`analyse_in`; the mixed demo passes its own). The upload is deleted
    afterwards, refused or not (:func:`discard_upload`). ``assets`` needs ``max_side`` and
    ``lock``."""
    analyse_map = analyse_map or analyse_in
    if not path:
        return error_analysis("nothing uploaded")
    path = Path(path if isinstance(path, str | os.PathLike) else path.name)
    try:
        got = read_upload(path, path.name, assets.max_side)
        if isinstance(got, Analysis):
            return got
        with assets.lock:
            try:
                return analyse_map(assets, got[0], path.name, got[1])
            except WaferInputError as exc:
                return error_analysis(str(exc).replace(str(path), path.name))
    finally:
        discard_upload(path)
