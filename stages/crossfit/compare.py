"""Stage `compare` of the cross-fitting pipeline (`compare@ensemble`, `compare@student`,
`compare@cleaned`): is a model (the ensemble, the student, the cleaned-label model) better
than the root's single model, by a margin validation resolves? Both models' served validation
predictions at the `macro_f1` point (their own temperature and thresholds, as `evaluate` scores
them) on the same validation maps; the gain in prevalence-corrected macro-F1 with a paired bootstrap
(wafer.report.evaluate.paired_gain_prior, `evaluate.bootstrap` resamples, `evaluate.seed`): the
same resampled maps for both models. `resolved` says whether the one-sided lower bound at
ADOPT_CONFIDENCE is above zero.

For the ensemble and the student this is a figure for the results page: which model to serve is
chosen there, on validation. With `--adopt` (compare@cleaned) it is the one choice the pipeline
makes on its own, whether cleaning is adopted (`adopted`): the rule is applied here, fixed
before any run it decides, and recorded in dvc.lock with its figures (docs/CROSSFIT.md).

Each logits file must be the one its calibration was fit on (SHA-256), and both must hold the
same validation maps in the same order."""

from pathlib import Path

import numpy as np
import typer

from wafer.config.params import load_params, section_values
from wafer.config.sections import EvaluateParams, PriorParams
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import sha256_file, write_json
from wafer.data.files import Logits
from wafer.report.evaluate import ADOPT_CONFIDENCE, paired_gain_prior, prior_from_list
from wafer.report.metrics import macro_f1
from wafer.serving.decision import ServingConfig
from wafer.serving.files import Calibration

app = typer.Typer(add_completion=False)
POINT = "macro_f1"  # the point the models are compared at (the page's headline figure)
SPLIT = "val"  # choices are made on validation only


def served_val(logits: Path, calibration: Path, thresholds: Path) -> tuple[Logits, np.ndarray]:
    """One model's logits and its served validation predictions at POINT."""
    lg = Logits.load(logits)
    if Calibration.load(calibration).logits_sha256 != sha256_file(logits):
        raise WaferInputError(calibration, f"was not fit on {logits} (logits_sha256 differs)")
    served = ServingConfig.load(calibration, thresholds, objective=POINT)
    return lg, served.decide(lg.logits[SPLIT]).pred


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="the root params.yaml (evaluate, prior)"),
    logits: Path = typer.Option(..., "--logits", help="the candidate's"),
    calibration: Path = typer.Option(..., "--calibration"),
    thresholds: Path = typer.Option(..., "--thresholds"),
    baseline_logits: Path = typer.Option(..., "--baseline-logits", help="the single model's"),
    baseline_calibration: Path = typer.Option(..., "--baseline-calibration"),
    baseline_thresholds: Path = typer.Option(..., "--baseline-thresholds"),
    metrics: Path = typer.Option(..., "--metrics"),
    adopt: bool = typer.Option(
        ..., "--adopt/--report", help="the gain decides adoption (compare@cleaned) or is reported"
    ),
) -> None:
    raw = load_params(params)
    p = section_values(raw, EvaluateParams)
    prior = prior_from_list(section_values(raw, PriorParams).target_prior)
    cand, pred = served_val(logits, calibration, thresholds)
    base, pred_base = served_val(baseline_logits, baseline_calibration, baseline_thresholds)
    if not np.array_equal(cand.rows[SPLIT], base.rows[SPLIT]):
        raise WaferInputError(
            logits, f"its validation maps are not {baseline_logits}'s (rows differ)"
        )
    y = cand.y[SPLIT]
    if not np.array_equal(y, base.y[SPLIT]):
        raise WaferInputError(logits, f"its validation labels are not {baseline_logits}'s")
    gain = paired_gain_prior(macro_f1, y, pred, pred_base, prior, p.bootstrap, p.seed)
    resolved = bool(gain["lower_bound"] > 0.0)
    decision = {
        "rule": f"adopt if the one-sided {ADOPT_CONFIDENCE:.0%} paired bootstrap lower bound "
        "of the gain is above 0",
        "adopted": resolved,
    }
    write_json(
        metrics,
        {
            "split": SPLIT,
            "point": POINT,
            "metric": "prevalence-corrected macro-F1",
            "maps": int(len(y)),
            "candidate": gain["candidate"],
            "baseline": gain["baseline"],
            "gain": gain["gain"],
            "confidence": ADOPT_CONFIDENCE,
            "gain_lower_bound": gain["lower_bound"],  # one-sided, at `confidence`
            "gain_ci": {"low": gain["low"], "high": gain["high"]},  # two-sided, at `confidence`
            "share_of_resamples_above_zero": gain["share_above_zero"],
            "bootstrap": p.bootstrap,
            "resolved": resolved,
            **(decision if adopt else {}),
        },
    )
    word = "adopted" if adopt else "resolved"
    verdict = word if resolved else f"not {word}"
    print(
        f"compare: {SPLIT} {POINT} point, prevalence-corrected macro-F1 "
        f"{gain['candidate']:.4f} against {gain['baseline']:.4f}: gain "
        f"{gain['gain']:+.4f}, one-sided {ADOPT_CONFIDENCE:.0%} lower bound "
        f"{gain['lower_bound']:+.4f}: {verdict}"
    )


if __name__ == "__main__":
    app()
