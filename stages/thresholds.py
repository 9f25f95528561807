"""Stage `thresholds`: fit the two operating points on validation, with the served rule
(wafer.thresholds.decide) on the calibrated served probabilities, every count weighted to the
target class prior (the `prior` section, the one the headline reports under):

* `cost`: tau minimises (c * escapes + false alarms) / N (the screen: few escapes);
* `macro_f1`: tau maximises macro-F1 (the most accurate label; what the seed's 0.92 measures);

then, at each tau, the per-class thresholds that raise validation macro-F1 (floor, minimum
support and minimum gain: wafer.thresholds). `--objective` picks the point that `wafer predict`
and the demo serve; `evaluate` reports both. Nothing here reads test data.
Writes models/thresholds.json, metrics/thresholds.json, plots/sweep.csv and plots/sweep.png.
"""

from pathlib import Path

import numpy as np
import typer

from wafer.calibration import softmax
from wafer.classes import CLASS_NAMES
from wafer.cli_util import one_line_errors
from wafer.evaluate import prior_from_list
from wafer.io import read_json, sha256_file, write_csv, write_json
from wafer.metrics import macro_f1, prevalence_weights
from wafer.params import check_args
from wafer.plotting import sweep_png
from wafer.thresholds import OBJECTIVES, decide, fit_operating_point

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    cost_ratio: float = typer.Option(
        10.0, "--cost_ratio", "--cost-ratio", help="cost of an escape : cost of a false alarm"
    ),
    objective: str = typer.Option("cost", "--objective", help="served point: cost | macro_f1"),
    min_threshold: float = typer.Option(0.2, "--min_threshold", "--min-threshold"),
    min_support: int = typer.Option(30, "--min_support", "--min-support"),
    min_gain: float = typer.Option(0.002, "--min_gain", "--min-gain"),
    target_prior: list[float] = typer.Option(
        ..., "--target_prior", "--target-prior", help="class counts in CLASS_NAMES order (x9)"
    ),
    logits: Path = typer.Option(Path("data/logits.npz"), "--logits"),
    calibration: Path = typer.Option(Path("models/calibration.json"), "--calibration"),
    out: Path = typer.Option(Path("models/thresholds.json"), "--out"),
    metrics: Path = typer.Option(Path("metrics/thresholds.json"), "--metrics"),
    curve: Path = typer.Option(Path("plots/sweep.csv"), "--curve"),
    png: Path = typer.Option(Path("plots/sweep.png"), "--png"),
) -> None:
    check_args("thresholds", locals())
    check_args("prior", locals())
    prior = prior_from_list(target_prior)
    with np.load(logits) as z:
        val_logits, y, model_sha = z["val_logits"], z["val_y"], str(z["model_sha256"])
    temperature = read_json(calibration)["temperature"]
    probs = softmax(val_logits, temperature)
    weights = prevalence_weights(y, prior)
    fits = {
        name: fit_operating_point(
            probs, y, name, cost_ratio, weights, min_threshold, min_support, min_gain
        )
        for name in OBJECTIVES
    }

    def named(t: np.ndarray) -> dict[str, float]:
        return {c: float(v) for c, v in zip(CLASS_NAMES, t, strict=True)}

    points, report = {}, {}
    for name, f in fits.items():
        pred = decide(probs, f["class_thresholds"], f["tau"])
        points[name] = {"tau": f["tau"], "class_thresholds": named(f["class_thresholds"])}
        report[name] = points[name] | {
            "val": f["chosen"] | {"macro_f1_with_class_thresholds": macro_f1(y, pred, weights)},
            "thresholds_fitted": [CLASS_NAMES[k] for k in f["fit"]["fitted"]],
            "too_few_val_maps": [CLASS_NAMES[k] for k in f["fit"]["too_few_maps"]],
        }
    total = sum(prior.values())
    shares = {c: v / total for c, v in prior.items()}
    common = {
        "objective": objective,
        "cost_ratio": cost_ratio,
        "prior": shares,  # every validation count was weighted to this class prior
        "fit_on": "val",
    }
    write_json(
        out,
        common
        | {
            "operating_points": points,
            "temperature": temperature,
            "model_sha256": model_sha,
            "logits_sha256": sha256_file(logits),
        },
    )
    write_json(
        metrics,
        common
        | {"min_threshold": min_threshold, "min_support": min_support, "min_gain": min_gain}
        | report,
    )
    rows = fits[objective]["sweep"]  # the same tau sweep (floor thresholds) for both points
    write_csv(curve, list(rows[0]), ([round(float(v), 6) for v in r.values()] for r in rows))
    sweep_png(
        rows,
        {name: f["tau"] for name, f in fits.items()},
        cost_ratio,
        png,
        "Operating-point sweep on validation (weighted to the target prior)",
    )
    for name in OBJECTIVES:
        v = report[name]["val"]
        print(
            f"thresholds: {name} point tau={points[name]['tau']:.2f}: val (target prior) "
            f"macro-F1 {v['macro_f1']:.4f} -> {v['macro_f1_with_class_thresholds']:.4f} with "
            f"per-class thresholds, cost {v['cost']:.4f}"
            + (" [served]" if name == objective else "")
        )


if __name__ == "__main__":
    app()
