"""Stage `thresholds`: choose the operating point tau and the per-class thresholds on
validation, with the served rule (wafer.thresholds.decide) on calibrated served probabilities.

tau minimises the cost (c * escapes + false alarms) / N over tau in [0.05, 0.99]; the per-class
thresholds then maximise validation macro-F1 at that tau. Nothing here reads test data.
Writes models/thresholds.json, metrics/thresholds.json, plots/sweep.csv and plots/sweep.png.
"""

import csv
import io
from pathlib import Path

import numpy as np
import typer

from wafer.calibration import softmax
from wafer.classes import CLASS_NAMES
from wafer.cli_util import one_line_errors
from wafer.io import read_json, write_json, write_text
from wafer.metrics import macro_f1
from wafer.params import check_args
from wafer.plotting import sweep_png
from wafer.thresholds import choose_tau, decide, default_taus, fit_class_thresholds, sweep

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    cost_ratio: float = typer.Option(
        10.0, "--cost_ratio", "--cost-ratio", help="cost of an escape : cost of a false alarm"
    ),
    logits: Path = typer.Option(Path("data/logits.npz"), "--logits"),
    calibration: Path = typer.Option(Path("models/calibration.json"), "--calibration"),
    out: Path = typer.Option(Path("models/thresholds.json"), "--out"),
    metrics: Path = typer.Option(Path("metrics/thresholds.json"), "--metrics"),
    curve: Path = typer.Option(Path("plots/sweep.csv"), "--curve"),
    png: Path = typer.Option(Path("plots/sweep.png"), "--png"),
) -> None:
    check_args("thresholds", locals())
    with np.load(logits) as z:
        val_logits, y = z["val_logits"], z["val_y"]
    probs = softmax(val_logits, read_json(calibration)["temperature"])
    rows = sweep(probs, y, default_taus(), cost_ratio)
    best = choose_tau(rows)
    tau = float(best["tau"])
    thresholds = fit_class_thresholds(probs, y, tau)
    pred = decide(probs, thresholds, tau)
    chosen = {name: float(t) for name, t in zip(CLASS_NAMES, thresholds, strict=True)}
    write_json(
        out, {"tau": tau, "class_thresholds": chosen, "cost_ratio": cost_ratio, "fit_on": "val"}
    )
    write_json(
        metrics,
        {
            "tau": tau,
            "cost_ratio": cost_ratio,
            "class_thresholds": chosen,
            "val": best | {"macro_f1_with_class_thresholds": macro_f1(y, pred)},
        },
    )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: round(float(v), 6) for k, v in r.items()})
    write_text(curve, buf.getvalue())
    sweep_png(rows, tau, cost_ratio, png)
    print(
        f"thresholds: tau={tau:.2f} (val cost {best['cost']:.4f}), val macro-F1 "
        f"{best['macro_f1']:.4f} -> {macro_f1(y, pred):.4f} with per-class thresholds"
    )


if __name__ == "__main__":
    app()
