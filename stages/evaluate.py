"""Stage `evaluate`: the served pipeline's figures, with one code path for validation and test
(TTA logits -> temperature -> per-class thresholds -> operating point, via wafer.serving.predictor).

Validation figures are what choices between runs, input sizes and recipes are made on; test
figures are reported once. For each split, the metrics file holds both operating points
(`cost` and `macro_f1`, full report each) and, to show what each part of the rule buys, plain
argmax and tau only (each point's tau, every threshold at the floor):

    {"objective": <served>, "val": {...}, "test": {"cost": {...}, "macro_f1": {...},
     "argmax": {...}}}

Also writes, for the served point on test: the confusion CSV (DVC `confusion` template) and PNG,
and the predictions file (per-map calibrated probabilities, wafer.report.predictions).
"""

from pathlib import Path

import numpy as np
import typer

from wafer.config.params import load_params, section_values
from wafer.config.sections import EvaluateParams, PriorParams
from wafer.core.classes import CLASS_NAMES, NONE_INDEX
from wafer.core.errors import one_line_errors
from wafer.core.io import write_csv, write_json
from wafer.data.files import Logits
from wafer.report.evaluate import compact, evaluate, prior_from_list
from wafer.report.metrics import confusion, prevalence_weights
from wafer.report.plotting import confusion_png
from wafer.report.predictions import Predictions
from wafer.serving.conformal import coverage_report
from wafer.serving.decision import ServingConfig, decide
from wafer.serving.screen import defect_mix, escape_rate, escapes_per_class, false_alarm_rate
from wafer.serving.thresholds import floor_thresholds

app = typer.Typer(add_completion=False)


def split_report(
    logits: np.ndarray, y: np.ndarray, served: ServingConfig, prior: dict, n_boot: int, seed: int
) -> dict:
    """Every fitted operating point, argmax and tau-only figures, the screen's escape and
    false-alarm rates (target prior, per defect class) and the prediction sets of one split."""
    weights = prevalence_weights(y, prior)
    w = defect_mix(np.array([prior[c] for c in CLASS_NAMES], dtype=np.float64))
    out: dict = {}
    for name, _ in served.points:
        point = served.at(name)
        d = point.decide(logits)
        p_defect = 1.0 - d.probs[:, NONE_INDEX]
        out[name] = evaluate(y, d.pred, d.probs, served.cost_ratio, prior, n_boot, seed)
        out[name]["operating_point"] = {
            "tau": point.tau,
            "class_thresholds": dict(zip(CLASS_NAMES, point.class_thresholds, strict=True)),
        }
        floor = floor_thresholds(len(CLASS_NAMES), 1e-9)  # any floor: argmax among defects
        out[name]["tau_only"] = compact(
            y, decide(d.probs, floor, point.tau), served.cost_ratio, weights
        )
        out[name]["screen"] = {
            "escape_rate": escape_rate(p_defect, y, point.tau, w),
            "false_alarm_rate": false_alarm_rate(p_defect, y, point.tau),
            "per_class": escapes_per_class(p_defect, y, point.tau),
        }
        if name == "escape_budget" and served.budget is not None:
            b = served.budget
            realised = out[name]["screen"]["escape_rate"]
            out[name]["screen"] |= {
                "budget": b["alpha"],
                "confidence": b["confidence"],
                "bound": b["bound"],  # certified on validation
                "within_budget": bool(realised <= b["alpha"]),
            }
    probs = served.decide(logits).probs
    out["argmax"] = compact(y, probs.argmax(axis=1), served.cost_ratio, weights)
    if served.sets is not None:
        out["prediction_sets"] = coverage_report(served.sets.sets(probs), y) | {
            "method": served.sets.method,
            "target_coverage": 1.0 - served.sets.alpha,
        }
    return out


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (sections evaluate, prior)"),
    logits: Path = typer.Option(..., "--logits"),
    calibration: Path = typer.Option(..., "--calibration"),
    thresholds: Path = typer.Option(..., "--thresholds"),
    metrics: Path = typer.Option(..., "--metrics"),
    confusion_csv: Path = typer.Option(..., "--confusion-csv"),
    confusion_image: Path = typer.Option(..., "--confusion-png"),
    predictions: Path = typer.Option(..., "--predictions"),
) -> None:
    raw = load_params(params)
    p = section_values(raw, EvaluateParams)  # bootstrap resamples for 95% CIs, bootstrap seed
    prior = prior_from_list(section_values(raw, PriorParams).target_prior)
    lg = Logits.load(logits)
    served = ServingConfig.load(calibration, thresholds)
    report: dict = {
        "objective": served.objective,
        "temperature": served.temperature,
        "views": served.views,
        "runtime": served.runtime,
        "escape_budget": served.budget,  # its guarantee, or why it was refused
    }
    for split in ("val", "test"):
        report[split] = split_report(
            lg.logits[split], lg.y[split], served, prior, p.bootstrap, p.seed
        )
    write_json(metrics, report)

    y, rows = lg.y["test"], lg.rows["test"]
    decision = served.decide(lg.logits["test"])
    names = np.array(CLASS_NAMES)
    write_csv(
        confusion_csv, ["actual", "predicted"], zip(names[y], names[decision.pred], strict=True)
    )
    confusion_png(
        confusion(y, decision.pred),
        CLASS_NAMES,
        confusion_image,
        f"Test, served predictions ({served.objective} point)",
    )
    Predictions.save(predictions, rows, y, decision.pred, decision.probs, decision.defect)
    for split in ("val", "test"):
        for name, _ in served.points:
            r = report[split][name]
            pc = r["prevalence_corrected"]
            print(
                f"evaluate: {split} {name} point{' [served]' if name == served.objective else ''}:"
                f" prevalence-corrected macro-F1 {pc['macro_f1']:.4f} "
                f"[{pc['macro_f1_ci95']['low']:.4f}, {pc['macro_f1_ci95']['high']:.4f}] "
                f"(tau only {r['tau_only']['macro_f1_prevalence_corrected']:.4f}, argmax "
                f"{report[split]['argmax']['macro_f1_prevalence_corrected']:.4f}), macro-F1 "
                f"{r['macro_f1']:.4f}; escapes {r['escapes']:.0f}, false alarms "
                f"{r['false_alarms']:.0f}; escape rate (target prior) "
                f"{r['screen']['escape_rate']:.4f}"
            )
        sets = report[split].get("prediction_sets")
        if sets:
            print(
                f"evaluate: {split} prediction sets ({sets['method']}): coverage "
                f"{sets['coverage']:.3f} (target {sets['target_coverage']:.2f}), mean size "
                f"{sets['mean_size']:.2f}, singletons {sets['singleton_share']:.1%}"
            )


if __name__ == "__main__":
    app()
