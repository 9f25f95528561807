"""Stage `calibrate`: temperature scaling fit on the served validation logits (the mean over
infer.views TTA views), reported before/after on validation and test.

Writes the served calibration file (wafer.serving.files.Calibration: what `wafer predict` applies;
it records the SHA-256 of the model, from the logits file, and of the logits it was fit on), the
metrics, the reliability bins per curve as CSV (DVC plot) and a PNG.
"""

from pathlib import Path

import typer

from wafer.config.params import load_section
from wafer.config.sections import CalibrateParams
from wafer.core.errors import one_line_errors
from wafer.core.io import sha256_file, write_csv, write_json
from wafer.core.probs import softmax
from wafer.data.files import Logits
from wafer.report.plotting import reliability_png
from wafer.serving.calibration import calibration_report, fit_temperature, reliability_bins
from wafer.serving.files import Calibration

app = typer.Typer(add_completion=False)


BIN_COLUMNS = ["confidence", "accuracy", "count"]


def _bin_rows(bins: list[dict]) -> list[list[float]]:
    return [[round(float(b[c]), 6) for c in BIN_COLUMNS] for b in bins]


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section calibrate)"),
    logits: Path = typer.Option(..., "--logits"),
    out: Path = typer.Option(..., "--out"),
    metrics: Path = typer.Option(..., "--metrics"),
    plots_dir: Path = typer.Option(..., "--plots-dir"),
    png: Path = typer.Option(..., "--png"),
) -> None:
    n_bins = load_section(params, CalibrateParams).n_bins  # equal-width confidence bins
    lg = Logits.load(logits)
    temperature = fit_temperature(lg.logits["val"], lg.y["val"])  # validation only
    report: dict = {
        "temperature": temperature,
        "views": lg.views,
        "runtime": lg.runtime,
        "n_bins": n_bins,
    }
    curves = {}
    for split in ("val", "test"):
        before, after = softmax(lg.logits[split]), softmax(lg.logits[split], temperature)
        y = lg.y[split]
        report[split] = {
            "before": calibration_report(before, y, n_bins),
            "after": calibration_report(after, y, n_bins),
        }
        if split == "test":
            for name, p in (("before", before), ("after", after)):
                curves[f"test, {name} (T={1.0 if name == 'before' else temperature:.3f})"] = (
                    reliability_bins(p, y, n_bins)
                )
                write_csv(
                    plots_dir / f"test_{name}.csv",
                    BIN_COLUMNS,
                    _bin_rows(reliability_bins(p, y, n_bins)),
                )
    Calibration(
        temperature=temperature,
        views=lg.views,
        runtime=lg.runtime,
        n_val=int(len(lg.y["val"])),
        model_sha256=lg.model_sha256,
        logits_sha256=sha256_file(logits),
        quantization=lg.quantization,
    ).save(out)
    write_json(metrics, report)
    reliability_png(curves, png, "Reliability on test (T fit on validation)")
    t = report["test"]
    print(
        f"calibrate: T={temperature:.4f}; test ECE {t['before']['ece']:.4f} -> "
        f"{t['after']['ece']:.4f}"
    )


if __name__ == "__main__":
    app()
