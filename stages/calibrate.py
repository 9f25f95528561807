"""Stage `calibrate`: temperature scaling fit on the served validation logits (TTA-combined when
infer.tta is on), reported before/after on validation and test.

Writes models/calibration.json (what `wafer predict` applies), metrics/calibrate.json,
plots/reliability/*.csv (DVC plot) and plots/reliability.png. calibration.json records the
SHA-256 of the model (from the logits file) and of the logits it was fit on (wafer.serve).
"""

from pathlib import Path

import numpy as np
import typer

from wafer.calibration import calibration_report, fit_temperature, reliability_bins, softmax
from wafer.cli_util import one_line_errors
from wafer.io import sha256_file, write_csv, write_json
from wafer.params import check_args
from wafer.plotting import reliability_png

app = typer.Typer(add_completion=False)


BIN_COLUMNS = ["confidence", "accuracy", "count"]


def _bin_rows(bins: list[dict]) -> list[list[float]]:
    return [[round(float(b[c]), 6) for c in BIN_COLUMNS] for b in bins]


@app.command()
@one_line_errors
def main(
    n_bins: int = typer.Option(15, "--n_bins", "--n-bins", help="equal-width confidence bins"),
    logits: Path = typer.Option(Path("data/logits.npz"), "--logits"),
    out: Path = typer.Option(Path("models/calibration.json"), "--out"),
    metrics: Path = typer.Option(Path("metrics/calibrate.json"), "--metrics"),
    plots_dir: Path = typer.Option(Path("plots/reliability"), "--plots-dir"),
    png: Path = typer.Option(Path("plots/reliability.png"), "--png"),
) -> None:
    check_args("calibrate", locals())
    with np.load(logits) as z:
        d = {k: z[k] for k in z.files}
    tta = bool(d["tta"])
    temperature = fit_temperature(d["val_logits"], d["val_y"])  # validation only
    report: dict = {"temperature": temperature, "tta": tta, "n_bins": n_bins}
    curves = {}
    for split in ("val", "test"):
        lg, y = d[f"{split}_logits"], d[f"{split}_y"]
        before, after = softmax(lg), softmax(lg, temperature)
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
    write_json(
        out,
        {
            "temperature": temperature,
            "tta": tta,
            "fit_on": "val",
            "n_val": int(len(d["val_y"])),
            "model_sha256": str(d["model_sha256"]),  # the served files belong to this model
            "logits_sha256": sha256_file(logits),
        },
    )
    write_json(metrics, report)
    reliability_png(curves, png, "Reliability on test (T fit on validation)")
    t = report["test"]
    print(
        f"calibrate: T={temperature:.4f}; test ECE {t['before']['ece']:.4f} -> "
        f"{t['after']['ece']:.4f}"
    )


if __name__ == "__main__":
    app()
