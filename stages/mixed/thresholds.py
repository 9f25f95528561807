"""Stage `thresholds` of the mixed-type pipeline: per-label thresholds on the calibrated
validation probabilities at the `cost` point (`thresholds.cost_ratio` escapes : false alarms,
label level) and at the `macro_f1` point (wafer.mixed.thresholds); `thresholds.objective`
names the served one. Fit on validation only; bound to the model, the logits and the
temperatures (wafer.mixed.served.MixedThresholds)."""

from pathlib import Path

import typer

from wafer.config.mixed import MIXED_OBJECTIVES, MixedThresholdsParams
from wafer.config.params import load_section
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import sha256_file, write_json
from wafer.data.files import Logits
from wafer.mixed.calibration import sigmoid
from wafer.mixed.labels import MIXED_LABELS
from wafer.mixed.metrics import summary
from wafer.mixed.served import MixedCalibration, MixedThresholds
from wafer.mixed.thresholds import fit_thresholds, predict

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    logits: Path = typer.Option(..., "--logits"),
    calibration: Path = typer.Option(..., "--calibration"),
    out: Path = typer.Option(..., "--out"),
    metrics: Path = typer.Option(..., "--metrics"),
) -> None:
    p = load_section(params, MixedThresholdsParams)
    lg, cal = Logits.load(logits), MixedCalibration.load(calibration)
    if cal.logits_sha256 != sha256_file(logits):
        raise WaferInputError(calibration, f"fit on other logits than {logits}")
    probs, y = sigmoid(lg.logits["val"], cal.temperatures), lg.y["val"]
    points, report = {}, {"objective": p.objective, "cost_ratio": p.cost_ratio}
    for objective in MIXED_OBJECTIVES:
        t, unfit = fit_thresholds(probs, y, objective, p.cost_ratio, p.min_support)
        points[objective] = [float(v) for v in t]
        report[objective] = {
            "thresholds": dict(zip(MIXED_LABELS, points[objective], strict=True)),
            "left_at_0.5_too_few_val_positives": unfit,
            "val": summary(y, predict(probs, t)),
        }
    MixedThresholds(
        p.objective, p.cost_ratio, points, cal.temperatures, lg.model_sha256, cal.logits_sha256
    ).save(out)
    write_json(metrics, report)
    v = report[p.objective]["val"]
    print(
        f"thresholds: served {p.objective}: val macro-F1 {v['macro_f1']:.4f}, "
        f"exact-match {v['exact_match']:.4f}"
    )


if __name__ == "__main__":
    app()
