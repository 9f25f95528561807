"""Stage `thresholds`: fit the two operating points on validation, with the served rule
(wafer.serving.thresholds.decide) on the calibrated served probabilities, every count weighted to
the target class prior (the `prior` section, the one the headline reports under):

* `cost`: tau minimises (c * escapes + false alarms) / N (the screen: few escapes);
* `macro_f1`: tau maximises macro-F1 (the most accurate label; what the seed's 0.92 measures);

then, at each tau, the per-class thresholds that raise validation macro-F1 (floor, minimum
support and minimum gain: wafer.serving.thresholds). `thresholds.objective` picks the point that
`wafer predict` and the demo serve; `evaluate` reports both. Nothing here reads test data.
Writes the served thresholds file (wafer.serving.files.Thresholds), the metrics, and the sweep CSV
and PNG.
"""

from pathlib import Path

import typer

from wafer.config.params import load_params, section_values
from wafer.config.rules import OBJECTIVES
from wafer.config.sections import PriorParams, ThresholdsParams
from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import one_line_errors
from wafer.core.io import sha256_file, write_csv, write_json
from wafer.data.files import Logits
from wafer.report.evaluate import prior_from_list
from wafer.report.metrics import macro_f1, prevalence_weights
from wafer.report.plotting import sweep_png
from wafer.serving.calibration import softmax
from wafer.serving.decision import decide
from wafer.serving.files import Calibration, OperatingPoint, Thresholds
from wafer.serving.thresholds import fit_operating_point

app = typer.Typer(add_completion=False)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (sections thresholds, prior)"),
    logits: Path = typer.Option(..., "--logits"),
    calibration: Path = typer.Option(..., "--calibration"),
    out: Path = typer.Option(..., "--out"),
    metrics: Path = typer.Option(..., "--metrics"),
    curve: Path = typer.Option(..., "--curve"),
    png: Path = typer.Option(..., "--png"),
) -> None:
    raw = load_params(params)
    p = section_values(raw, ThresholdsParams)
    prior = prior_from_list(section_values(raw, PriorParams).target_prior)
    lg = Logits.load(logits)
    val_logits, y = lg.logits["val"], lg.y["val"]
    temperature = Calibration.load(calibration).temperature
    probs = softmax(val_logits, temperature)
    weights = prevalence_weights(y, prior)
    fits = {
        name: fit_operating_point(
            probs, y, name, p.cost_ratio, weights, p.min_threshold, p.min_support, p.min_gain
        )
        for name in OBJECTIVES
    }

    points, report = {}, {}
    for name, f in fits.items():
        pred = decide(probs, f["class_thresholds"], f["tau"])
        points[name] = OperatingPoint(f["tau"], tuple(map(float, f["class_thresholds"])))
        report[name] = points[name].to_dict() | {
            "val": f["chosen"] | {"macro_f1_with_class_thresholds": macro_f1(y, pred, weights)},
            "thresholds_fitted": [CLASS_NAMES[k] for k in f["fit"]["fitted"]],
            "too_few_val_maps": [CLASS_NAMES[k] for k in f["fit"]["too_few_maps"]],
        }
    total = sum(prior.values())
    shares = {c: v / total for c, v in prior.items()}
    Thresholds(
        objective=p.objective,
        cost_ratio=p.cost_ratio,
        prior=shares,  # every validation count was weighted to this class prior
        points=points,
        temperature=temperature,
        model_sha256=lg.model_sha256,
        logits_sha256=sha256_file(logits),
    ).save(out)
    write_json(
        metrics,
        {"objective": p.objective, "cost_ratio": p.cost_ratio, "prior": shares, "fit_on": "val"}
        | {"min_threshold": p.min_threshold, "min_support": p.min_support, "min_gain": p.min_gain}
        | report,
    )
    rows = fits[p.objective]["sweep"]  # the same tau sweep (floor thresholds) for both points
    write_csv(curve, list(rows[0]), ([round(float(v), 6) for v in r.values()] for r in rows))
    sweep_png(
        rows,
        {name: f["tau"] for name, f in fits.items()},
        p.cost_ratio,
        png,
        "Operating-point sweep on validation (weighted to the target prior)",
    )
    for name in OBJECTIVES:
        v = report[name]["val"]
        print(
            f"thresholds: {name} point tau={points[name].tau:.2f}: val (target prior) "
            f"macro-F1 {v['macro_f1']:.4f} -> {v['macro_f1_with_class_thresholds']:.4f} with "
            f"per-class thresholds, cost {v['cost']:.4f}"
            + (" [served]" if name == p.objective else "")
        )


if __name__ == "__main__":
    app()
