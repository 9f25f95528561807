"""Stage `evaluate` of the mixed-type pipeline: the served predictions (calibrated per label,
thresholded per label at both operating points, and at p >= 0.5 for reference) on validation and
test: per-label precision / recall / F1 / escapes / false alarms, macro- and micro-F1,
exact-match, Hamming loss, accuracy per pattern code, bootstrap intervals on test, per-label
AUPRC; the per-label confusion view and the per-pattern accuracy as plots; every map's
prediction as a CSV. Checks first that the served files belong to the logits' model."""

from pathlib import Path

import numpy as np
import typer
from sklearn.metrics import average_precision_score

from wafer.config.mixed import MIXED_OBJECTIVES
from wafer.config.params import load_section
from wafer.config.sections import EvaluateParams
from wafer.core.errors import one_line_errors
from wafer.core.io import write_csv, write_json
from wafer.data.files import EVAL_SPLITS, Logits
from wafer.mixed.calibration import sigmoid
from wafer.mixed.labels import MIXED_LABELS, NORMAL, codes_of
from wafer.mixed.metrics import (
    bootstrap,
    label_matrix,
    per_label,
    per_pattern,
    summary,
)
from wafer.mixed.served import MixedCalibration, MixedThresholds, check_mixed_binding
from wafer.mixed.thresholds import DEFAULT, predict
from wafer.report.plotting import bars_png, label_matrix_png

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    logits: Path = typer.Option(..., "--logits"),
    calibration: Path = typer.Option(..., "--calibration"),
    thresholds: Path = typer.Option(..., "--thresholds"),
    metrics: Path = typer.Option(..., "--metrics"),
    confusion_png: Path = typer.Option(..., "--confusion-png"),
    patterns_csv: Path = typer.Option(..., "--patterns-csv"),
    patterns_png: Path = typer.Option(..., "--patterns-png"),
    predictions: Path = typer.Option(..., "--predictions"),
) -> None:
    p = load_section(params, EvaluateParams)
    lg = Logits.load(logits)
    cal, thr = MixedCalibration.load(calibration), MixedThresholds.load(thresholds)
    check_mixed_binding("the logits' model", lg.model_sha256, calibration, cal, thresholds, thr)
    rules = {k: np.asarray(v) for k, v in thr.points.items()} | {
        "p0.5": np.full(len(MIXED_LABELS), DEFAULT)
    }
    report: dict = {"served": thr.objective, "cost_ratio": thr.cost_ratio}
    pred_rows = []
    for split in EVAL_SPLITS:
        y = lg.y[split]
        probs = sigmoid(lg.logits[split], cal.temperatures)
        report[split] = {"maps": len(y)}
        for name, t in rules.items():
            pred = predict(probs, t)
            entry = summary(y, pred) | {"per_label": per_label(y, pred)}
            if split == "test":
                entry["per_pattern"] = per_pattern(y, pred)
                if name in MIXED_OBJECTIVES:
                    entry["ci95"] = bootstrap(y, pred, p.bootstrap, p.seed)
            report[split][name] = entry
        report[split]["auprc"] = {
            name: float(average_precision_score(y[:, k], probs[:, k])) if y[:, k].any() else None
            for k, name in enumerate(MIXED_LABELS)
        }
        served = predict(probs, thr.served)
        true_codes, pred_codes = codes_of(y), codes_of(served)
        for i in range(len(y)):
            pred_rows.append(
                [split, int(lg.rows[split][i]), true_codes[i], pred_codes[i]]
                + [f"{v:.6f}" for v in probs[i]]
            )
        if split == "test":
            matrix = label_matrix(y, served)
            names = [*MIXED_LABELS, NORMAL]
            label_matrix_png(
                matrix,
                names,
                [*MIXED_LABELS, "(nothing)"],
                confusion_png,
                f"Test, served {thr.objective} point: diagonal = recall; off-diagonal = "
                "share of the row's maps without\nthat label predicted with it (false alarm); "
                "last column = predicted normal",
                "predicted label present",
                "true label present",
            )
            pats = report["test"][thr.objective]["per_pattern"]
            order = sorted(pats, key=lambda c: pats[c]["accuracy"])
            write_csv(
                patterns_csv,
                ["pattern", "accuracy", "maps"],
                [[c, round(pats[c]["accuracy"], 6), pats[c]["maps"]] for c in order],
            )
            bars_png(
                order,
                [pats[c]["accuracy"] for c in order],
                patterns_png,
                f"Exact-match accuracy per pattern code (test, {thr.objective} point)",
                "exact-match accuracy",
            )
    write_csv(
        predictions,
        ["split", "row", "true_code", "predicted_code", *[f"p_{n}" for n in MIXED_LABELS]],
        pred_rows,
    )
    write_json(metrics, report)
    t = report["test"][thr.objective]
    print(
        f"evaluate: test ({thr.objective}) macro-F1 {t['macro_f1']:.4f}, exact-match "
        f"{t['exact_match']:.4f}, Hamming {t['hamming_loss']:.4f}"
    )


if __name__ == "__main__":
    app()
