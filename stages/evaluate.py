"""Stage `evaluate`: report once on test, on exactly the served predictions (TTA logits ->
temperature -> per-class thresholds -> operating point, via wafer.serve).

Writes metrics/evaluate.json, plots/confusion.csv (DVC `confusion` template: one row per test
map), plots/confusion.png, and data/predictions.csv (per-map calibrated probabilities).
"""

import csv
import io
from pathlib import Path

import numpy as np
import typer

from wafer.classes import CLASS_NAMES
from wafer.cli_util import one_line_errors
from wafer.evaluate import evaluate, prior_from_list
from wafer.io import write_json, write_text
from wafer.metrics import confusion, prevalence_weights
from wafer.params import check_args
from wafer.plotting import confusion_png
from wafer.serve import ServingConfig

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    bootstrap: int = typer.Option(1000, "--bootstrap", help="bootstrap resamples for 95% CIs"),
    seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
    target_prior: list[float] = typer.Option(
        ...,
        "--target_prior",
        "--target-prior",
        help="class counts or shares in CLASS_NAMES order (repeat 9 times)",
    ),
    logits: Path = typer.Option(Path("data/logits.npz"), "--logits"),
    calibration: Path = typer.Option(Path("models/calibration.json"), "--calibration"),
    thresholds: Path = typer.Option(Path("models/thresholds.json"), "--thresholds"),
    metrics: Path = typer.Option(Path("metrics/evaluate.json"), "--metrics"),
    confusion_csv: Path = typer.Option(Path("plots/confusion.csv"), "--confusion-csv"),
    confusion_image: Path = typer.Option(Path("plots/confusion.png"), "--confusion-png"),
    predictions: Path = typer.Option(Path("data/predictions.csv"), "--predictions"),
) -> None:
    check_args("evaluate", locals())
    try:
        prior = prior_from_list(target_prior)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with np.load(logits) as z:
        test_logits, y, rows = z["test_logits"], z["test_y"], z["test_rows"]
    served = ServingConfig.load(calibration, thresholds)
    decision = served.decide(test_logits)
    argmax_pred = decision.probs.argmax(axis=1)
    weights = prevalence_weights(y, prior)
    report = evaluate(
        y,
        decision.pred,
        decision.probs,
        served.cost_ratio,
        weights,
        n_boot=bootstrap,
        seed=seed,
        argmax_pred=argmax_pred,
    )
    report["operating_point"] = {
        "tau": served.tau,
        "temperature": served.temperature,
        "tta": served.tta,
    }
    write_json(metrics, report)

    names = np.array(CLASS_NAMES)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["actual", "predicted"])
    w.writerows(zip(names[y], names[decision.pred], strict=True))
    write_text(confusion_csv, buf.getvalue())
    confusion_png(
        confusion(y, decision.pred), CLASS_NAMES, confusion_image, "Test, served predictions"
    )

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["row", "actual", "predicted", "confidence", "defect", *[f"p_{c}" for c in CLASS_NAMES]]
    )
    for i in range(len(y)):
        p = decision.probs[i]
        w.writerow(
            [
                int(rows[i]),
                names[y[i]],
                names[decision.pred[i]],
                f"{p[decision.pred[i]]:.6f}",
                int(decision.defect[i]),
                *[f"{v:.6f}" for v in p],
            ]
        )
    write_text(predictions, buf.getvalue())
    pc = report["prevalence_corrected"]
    print(
        f"evaluate: test macro-F1 {report['macro_f1']:.4f} "
        f"[{report['macro_f1_ci95']['low']:.4f}, {report['macro_f1_ci95']['high']:.4f}], "
        f"balanced acc {report['balanced_accuracy']:.4f}, prevalence-corrected macro-F1 "
        f"{pc['macro_f1']:.4f}; escapes {report['escapes']:.0f}, "
        f"false alarms {report['false_alarms']:.0f}"
    )


if __name__ == "__main__":
    app()
