"""Stage `calibrate` of the mixed-type pipeline: a temperature per label fit on the served
validation logits (wafer.mixed.calibration), bound to the model and the logits by SHA-256
(wafer.mixed.served.MixedCalibration); per-label ECE and BCE before and after, on validation
and test; reliability curves pooled over the labels (test)."""

from pathlib import Path

import typer

from wafer.config.params import load_section
from wafer.config.sections import CalibrateParams
from wafer.core.errors import one_line_errors
from wafer.core.io import sha256_file, write_csv, write_json
from wafer.data.files import EVAL_SPLITS, Logits
from wafer.mixed.calibration import bce, fit_temperatures, label_ece, reliability_rows, sigmoid
from wafer.mixed.labels import MIXED_LABELS
from wafer.mixed.served import MixedCalibration
from wafer.report.plotting import reliability_png

app = typer.Typer(add_completion=False)
CURVE_COLUMNS = ["bin", "confidence", "accuracy", "count"]


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    logits: Path = typer.Option(..., "--logits"),
    out: Path = typer.Option(..., "--out"),
    metrics: Path = typer.Option(..., "--metrics"),
    plots_dir: Path = typer.Option(..., "--plots-dir"),
    png: Path = typer.Option(..., "--png"),
) -> None:
    n_bins = load_section(params, CalibrateParams).n_bins
    lg = Logits.load(logits)
    temps = fit_temperatures(lg.logits["val"], lg.y["val"])
    MixedCalibration(
        [float(t) for t in temps],
        lg.views,
        lg.runtime,
        len(lg.y["val"]),
        lg.model_sha256,
        sha256_file(logits),
    ).save(out)
    report: dict = {"temperatures": dict(zip(MIXED_LABELS, map(float, temps), strict=True))}
    curves = {}
    for split in EVAL_SPLITS:
        z, y = lg.logits[split], lg.y[split]
        before, after = sigmoid(z), sigmoid(z, temps)
        ece_b, ece_a = label_ece(before, y, n_bins), label_ece(after, y, n_bins)
        report[split] = {
            "mean_label_ece_before": float(ece_b.mean()),
            "mean_label_ece_after": float(ece_a.mean()),
            "bce_before": bce(z, y),
            "bce_after": bce(z / temps, y),
            "label_ece_after": dict(zip(MIXED_LABELS, map(float, ece_a), strict=True)),
        }
        if split == "test":
            for name, probs in (("before", before), ("after", after)):
                rows = reliability_rows(probs, y, n_bins)
                write_csv(
                    plots_dir / f"test_{name}.csv",
                    CURVE_COLUMNS,
                    [[r[c] for c in CURVE_COLUMNS] for r in rows],
                )
                curves[f"{name} per-label temperatures"] = rows
    write_json(metrics, report)
    reliability_png(curves, png, "Reliability, all 8 labels pooled (test)")
    t = report["test"]
    print(
        f"calibrate: mean per-label ECE on test {t['mean_label_ece_before']:.4f} -> "
        f"{t['mean_label_ece_after']:.4f}"
    )


if __name__ == "__main__":
    app()
