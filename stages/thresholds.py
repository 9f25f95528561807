"""Stage `thresholds`: fit the operating points and the prediction-set rule on validation,
with the served rule (wafer.serving.decision.decide) on the calibrated served probabilities,
every count weighted to the target class prior (the `prior` section, the one the headline
reports under):

* `cost`: tau minimises (c * escapes + false alarms) / N (the screen: few escapes);
* `macro_f1`: tau maximises macro-F1 (the most accurate label; what the seed's 0.92 measures);
* `escape_budget`: the largest tau whose upper confidence bound on the escape rate is at most
  `thresholds.escape_budget` with probability `thresholds.confidence` (wafer.serving.screen);
  when validation cannot give that guarantee the point is recorded as refused, with why, and
  never served (serving it is then a one-line error here and in `wafer predict`);

then, at each tau, the per-class thresholds that raise validation macro-F1 (floor, minimum
support and minimum gain: wafer.serving.thresholds). Prediction sets: split-conformal at
coverage 1 - `thresholds.set_alpha`, the score chosen by cross-fitting on validation
(wafer.serving.conformal). `thresholds.objective` picks the point that `wafer predict` and the
demo serve; `evaluate` reports all. Nothing here reads test data. Writes the served thresholds
file (wafer.serving.files.Thresholds), the metrics, the sweep CSV and PNG, the screen's
operating curve and the prediction sets' coverage curve.
"""

import sys
from pathlib import Path

import numpy as np
import typer

from wafer.config.params import load_params, section_values
from wafer.config.sections import PriorParams, ThresholdsParams
from wafer.core.classes import CLASS_NAMES, NONE_INDEX
from wafer.core.errors import UsageError, one_line_errors
from wafer.core.io import sha256_file, write_csv, write_json
from wafer.core.probs import softmax
from wafer.data.files import Logits
from wafer.report.evaluate import prior_from_list
from wafer.report.metrics import macro_f1, prevalence_weights
from wafer.report.plotting import screen_png, sets_png, sweep_png
from wafer.serving import conformal
from wafer.serving.decision import decide
from wafer.serving.files import Calibration, OperatingPoint, Thresholds
from wafer.serving.screen import (
    class_bounds,
    class_conditional,
    defect_mix,
    fit_budget,
    upper_bound,
)
from wafer.serving.thresholds import CHOOSERS, fit_class_thresholds, fit_operating_point, sweep

app = typer.Typer(add_completion=False)

SET_ALPHAS = np.array([0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3])  # the coverage curve's points


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
    screen_png_out: Path = typer.Option(..., "--screen-png"),
    sets_curve: Path = typer.Option(..., "--sets-curve"),
    sets_png_out: Path = typer.Option(..., "--sets-png"),
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
        for name in CHOOSERS
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

    # the escape budget: a guaranteed escape rate, or a refusal that says why
    prior_vec = np.array([prior[c] for c in CLASS_NAMES], dtype=np.float64)
    delta = 1.0 - p.confidence
    p_defect = 1.0 - probs[:, NONE_INDEX]
    budget = fit_budget(p_defect, y, prior_vec, p.escape_budget, delta)
    if budget["attainable"]:
        tau = budget["tau"]
        t, rec = fit_class_thresholds(
            probs, y, tau, weights, p.min_threshold, p.min_support, p.min_gain
        )
        points["escape_budget"] = OperatingPoint(tau, tuple(map(float, t)))
        row = sweep(probs, y, np.array([tau]), p.cost_ratio, None, weights)[0]
        pred = decide(probs, t, tau)
        report["escape_budget"] = points["escape_budget"].to_dict() | {
            "val": row | {"macro_f1_with_class_thresholds": macro_f1(y, pred, weights)},
            "thresholds_fitted": [CLASS_NAMES[k] for k in rec["fitted"]],
            "too_few_val_maps": [CLASS_NAMES[k] for k in rec["too_few_maps"]],
        }
    elif p.objective == "escape_budget":
        raise UsageError(f"thresholds.objective: escape_budget cannot be served: {budget['why']}")
    report["budget"] = budget | {
        "per_class_at_budget": (
            class_bounds(p_defect, y, budget["tau"], p.escape_budget, delta)
            if budget["attainable"]
            else None
        ),
        "class_conditional": class_conditional(p_defect, y, p.escape_budget, delta),
    }

    # prediction sets: the score chosen on validation, cross-fitted; then fit on all of it
    rule, compared = conformal.choose(probs, y, p.set_alpha, p.set_score)
    report["prediction_sets"] = rule.to_dict() | compared
    why = conformal.uninformative(probs, y, p.set_alpha)
    if why:
        report["prediction_sets"]["uninformative"] = why
        print(f"warning: prediction sets: {why}", file=sys.stderr)
    set_rows = conformal.curve(probs, y, rule.method, SET_ALPHAS)
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
        budget=budget,
        sets=rule,
    ).save(out)
    write_json(
        metrics,
        {"objective": p.objective, "cost_ratio": p.cost_ratio, "prior": shares, "fit_on": "val"}
        | {"min_threshold": p.min_threshold, "min_support": p.min_support, "min_gain": p.min_gain}
        | report,
    )
    rows = fits["cost"]["sweep"]  # the same tau sweep (floor thresholds) for every point
    w = defect_mix(prior_vec)
    for r in rows:  # the bound the budget point is held to, at every tau of the sweep
        r["escape_bound"] = upper_bound(p_defect, y, r["tau"], w, delta)
    write_csv(curve, list(rows[0]), ([round(float(v), 6) for v in r.values()] for r in rows))
    taus = {name: pt.tau for name, pt in points.items()}
    sweep_png(rows, taus, p.cost_ratio, png, "Operating-point sweep on validation (target prior)")
    marks = {
        name: (report[name]["val"]["false_alarm_rate"], report[name]["val"]["escape_rate"])
        for name in points
    }
    screen_png(rows, marks, p.escape_budget, screen_png_out)
    write_csv(sets_curve, list(set_rows[0]), ([round(v, 6) for v in r.values()] for r in set_rows))
    sets_png(set_rows, p.set_alpha, sets_png_out)
    if not budget["attainable"]:
        print(f"thresholds: escape_budget point refused: {budget['why']}")
    for name in points:
        v = report[name]["val"]
        print(
            f"thresholds: {name} point tau={points[name].tau:.2f}: val (target prior) "
            f"macro-F1 {v['macro_f1']:.4f} -> {v['macro_f1_with_class_thresholds']:.4f} with "
            f"per-class thresholds, cost {v['cost']:.4f}"
            + (" [served]" if name == p.objective else "")
        )


if __name__ == "__main__":
    app()
