"""What the demo serves, read once at start (:func:`load_assets`): the served pipeline, the
model's figures from the metrics files (and where they disagree with what is served), one test
example per class and the ingested maps that the neighbours are drawn from."""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wafer.apps.options import cam_settings, served_files
from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError
from wafer.core.io import read_json
from wafer.data.files import Ingested
from wafer.data.maprules import MAX_SIDE
from wafer.report.predictions import Predictions
from wafer.serving.predictor import Predictor

NEIGHBOURS = 6  # nearest training maps shown per analysed map


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
            "views": int(ev["views"]) if "views" in ev else None,
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
    if figures["views"] is not None and figures["views"] != s.views:
        notes.append(
            f"metrics were computed with {figures['views']} TTA views, served with {s.views}"
        )
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
    repo: str | os.PathLike = ".",
) -> DemoAssets:
    """Everything the demo serves, read once at start. Each file: as given, else the
    pipeline's (dvc.yaml's ``paths``; :func:`wafer.apps.options.served_files`, which also decides
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
        },
        repo,
    )
    cam_method, cam_layer = cam_settings(cam_method, cam_layer, needed=False, repo=repo)
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
