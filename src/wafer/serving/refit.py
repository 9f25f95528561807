"""The served decision fit again on one set of validation logits, as the `calibrate` and
`thresholds` stages fit it (temperature, then the `macro_f1` operating point at the target
prior), and the figures read from it: what a model, a view count, a runtime or an ensemble
would score on validation if it were the one served (benchmarks/serving.py,
scripts/explore_multires.py). Validation only: a figure here is in-sample, since the point is
fit on the maps it is scored on, and a paired bootstrap (:func:`paired_vs`) says what such a
difference resolves."""

from __future__ import annotations

import numpy as np

from wafer.config.params import section_values
from wafer.config.sections import EvaluateParams, PriorParams, ThresholdsParams
from wafer.core.classes import CLASS_NAMES
from wafer.core.probs import softmax
from wafer.report.evaluate import paired_gain_prior, prior_from_list
from wafer.report.metrics import macro_f1, prevalence_weights
from wafer.serving.calibration import fit_temperature
from wafer.serving.decision import decide
from wafer.serving.thresholds import fit_operating_point


def fit_macro_f1_point(logits: np.ndarray, y: np.ndarray, params: dict) -> tuple[float, dict]:
    """Temperature and the `macro_f1` operating point fit on these (validation) logits, as the
    `calibrate` and `thresholds` stages fit them: ``(temperature, fit)``."""
    thr = section_values(params, ThresholdsParams)
    temperature = fit_temperature(logits, y)
    fit = fit_operating_point(
        softmax(logits, temperature),
        y,
        "macro_f1",
        thr.cost_ratio,
        target_weights(y, params),
        thr.min_threshold,
        thr.min_support,
        thr.min_gain,
    )
    return temperature, fit


def target_weights(y: np.ndarray, params: dict) -> np.ndarray:
    """Each map's weight under the target prior (prevalence correction)."""
    prior = section_values(params, PriorParams).target_prior
    return prevalence_weights(y, dict(zip(CLASS_NAMES, prior, strict=True)))


def labels_at(logits: np.ndarray, temperature: float, fit: dict) -> np.ndarray:
    """The labels a fit `macro_f1` point (temperature and thresholds) gives these logits."""
    return decide(softmax(logits, temperature), fit["class_thresholds"], fit["tau"])


def corrected_macro_f1(
    logits: np.ndarray, y: np.ndarray, temperature: float, fit: dict, params: dict
) -> float:
    """Prevalence-corrected macro-F1 of the labels a fit point (from validation) gives these
    logits (benchmarks/serving_test.py: the test split's)."""
    return macro_f1(y, labels_at(logits, temperature, fit), target_weights(y, params))


def point_labels(logits: np.ndarray, y: np.ndarray, params: dict) -> tuple[float, np.ndarray]:
    """Temperature and the labels of the `macro_f1` point, both fit on these logits."""
    temperature, fit = fit_macro_f1_point(logits, y, params)
    return temperature, labels_at(logits, temperature, fit)


def quality(logits: np.ndarray, y: np.ndarray, params: dict, point: tuple | None = None) -> dict:
    """Validation macro-F1: argmax of the logits (raw and prevalence-corrected), and
    prevalence-corrected at the `macro_f1` point with temperature and thresholds fit on these
    same validation logits (``point``: that fit's :func:`point_labels`, when already made)."""
    temperature, pred = point or point_labels(logits, y, params)
    w = target_weights(y, params)
    return {
        "macro_f1_argmax": round(macro_f1(y, logits.argmax(1)), 5),
        "macro_f1_pc_argmax": round(macro_f1(y, logits.argmax(1), w), 5),
        "macro_f1_pc_at_macro_f1_point": round(macro_f1(y, pred, w), 5),
        "temperature": round(temperature, 4),
    }


def paired_vs(
    labels: dict[str, np.ndarray], base: dict[str, np.ndarray], y: np.ndarray, params: dict
) -> dict[str, dict[str, float]]:
    """The prevalence-corrected macro-F1 gain of ``labels`` over ``base`` (the same maps; each
    ``{"argmax": ..., "macro_f1_point": ...}``, the point fit on its own logits), with the
    paired bootstrap the `compare` stages use (`evaluate.bootstrap` resamples,
    `evaluate.seed`)."""
    prior = prior_from_list(section_values(params, PriorParams).target_prior)
    ev = section_values(params, EvaluateParams)
    return {
        what: {
            k: round(float(v), 5)
            for k, v in paired_gain_prior(
                macro_f1, y, labels[what], base[what], prior, ev.bootstrap, ev.seed
            ).items()
            if k in ("gain", "low", "high", "share_above_zero")
        }
        for what in ("argmax", "macro_f1_point")
    }
