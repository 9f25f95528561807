"""The sections of params.yaml, one frozen dataclass each, with every field's rule beside it:
the one table of what each value may be (:func:`rules` reads it off these classes).

A stage script reads its section typed, so an editor completes ``p.`` and a typo in a name is
an error before anything runs::

    p = load_section("params.yaml", TrainParams)   # p.epochs, p.lr, ...

The fields are in params.yaml's order, and a section's values are saved as they were read
(the checkpoint keeps ``dataclasses.asdict`` of the train section). :data:`SECTIONS` lists the
classes by section name; a section may add a cross-parameter check (its ``CROSS_CHECK``:
values -> the reason they are refused, or None).
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from wafer.config.rules import (
    CAM_METHODS,
    DEVICE_PATTERN,
    INDEX_SEARCHES,
    NOVELTY_METHODS,
    OBJECTIVES,
    PRECISIONS,
    RUNTIMES,
    SET_SCORES,
    STEMS,
    TTA_VIEWS,
    Rule,
    distinct,
    param,
    positive_total,
)
from wafer.core.classes import CLASS_NAMES

N = len(CLASS_NAMES)
SEED = {"lo": 0}
DEVICE = {"pattern": DEVICE_PATTERN, "pattern_help": "auto, cpu, cuda, cuda:N or mps"}
CAM_SLOTS = 3  # wafer.explain.report.SLOTS has 3 example slots per class (asserted in tests)


def split_shares(p: Mapping[str, Any]) -> str | None:
    """Cross-check of a split section: something must be left to train on."""
    if p["val"] + p["test"] >= 1.0:
        return f"split.val + split.test = {p['val'] + p['test']:g} leaves no training maps"
    return None


def labeled_maps(p: Mapping[str, Any]) -> str | None:
    """Cross-check of the synthesize section: at least one labeled map per class."""
    if p["n_maps"] - p["unlabeled"] < N:
        return (
            f"unlabeled = {p['unlabeled']} of n_maps = {p['n_maps']} leaves fewer"
            f" than {N} labeled maps"
        )
    return None


def ema_warmup_needs_decay(p: Mapping[str, Any]) -> str | None:
    """Cross-check of a train section: the EMA warmup ramps the averaging's decay up to
    ``ema_decay``; with the averaging off (0) it would change nothing, silently."""
    if p["ema_warmup"] and not p["ema_decay"]:
        return "train.ema_warmup needs train.ema_decay above 0 (0: no average to warm up)"
    return None


@dataclass(frozen=True)
class SynthesizeParams:
    """Embedded default data: WM-811K-like maps in the LSWMD.pkl layout."""

    SECTION: ClassVar[str] = "synthesize"
    CROSS_CHECK: ClassVar[Callable[[Mapping[str, Any]], str | None]] = labeled_maps
    n_maps: int = param(lo=N)
    floor: float = param(lo=0.0, hi=1.0 / N)
    seed: int = param(**SEED)
    unlabeled: int = param(lo=0)


@dataclass(frozen=True)
class IngestParams:
    SECTION: ClassVar[str] = "ingest"
    input: str = param(pattern=r".+", pattern_help="a file name")
    trust_pickle: bool = param()
    on_invalid: str = param(choices=("drop", "fail"))
    max_side: int = param(lo=8, hi=100_000)


@dataclass(frozen=True)
class SplitParams:
    SECTION: ClassVar[str] = "split"
    CROSS_CHECK: ClassVar[Callable[[Mapping[str, Any]], str | None]] = split_shares
    seed: int = param(**SEED)
    val: float = param(lo=0.0, hi=1.0, hi_open=True)
    test: float = param(lo=0.0, hi=1.0, hi_open=True)
    use_original: bool = param()
    group_lots: bool = param()
    holdout: list[str] = param(
        lengths=tuple(range(N - 1)), item=Rule(str, choices=CLASS_NAMES), check=distinct
    )


@dataclass(frozen=True)
class ShardParams:
    SECTION: ClassVar[str] = "shard"
    input_px: int = param(lo=8, hi=1024)


@dataclass(frozen=True)
class TrainParams:
    SECTION: ClassVar[str] = "train"
    CROSS_CHECK: ClassVar[Callable[[Mapping[str, Any]], str | None]] = ema_warmup_needs_decay
    loss: str = param(choices=("ce", "focal"))
    focal_gamma: float = param(lo=0.0)
    focal_alpha: list[float] = param(lengths=(0, N), item=Rule(float, lo=0.0))
    cbam: bool = param()
    cbam_reduction: int = param(lo=1)
    stem: str = param(choices=STEMS)
    epochs: int = param(lo=1)
    lr: float = param(lo=0.0, lo_open=True)
    weight_decay: float = param(lo=0.0)
    batch_size: int = param(lo=1)
    patience: int = param(lo=1)
    seed: int = param(**SEED)
    device: str = param(**DEVICE)
    augment: bool = param()
    precision: str = param(choices=PRECISIONS)
    ema_decay: float = param(lo=0.0, hi=1.0, hi_open=True)
    ema_warmup: bool = param()
    nproc: int = param(lo=1)


@dataclass(frozen=True)
class InferParams:
    SECTION: ClassVar[str] = "infer"
    views: int = param(choices=TTA_VIEWS)
    runtime: str = param(choices=RUNTIMES)
    batch_size: int = param(lo=1)
    device: str = param(**DEVICE)
    int8_calibration_maps: int = param(lo=1)


@dataclass(frozen=True)
class CalibrateParams:
    SECTION: ClassVar[str] = "calibrate"
    n_bins: int = param(lo=1)


@dataclass(frozen=True)
class IndexParams:
    SECTION: ClassVar[str] = "index"
    tta: bool = param()
    k: int = param(lo=1)
    method: str = param(choices=("auto", *NOVELTY_METHODS))
    false_flag_rate: float = param(lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    batch_size: int = param(lo=1)
    device: str = param(**DEVICE)
    baseline_size: int = param(lo=4, hi=256)
    search: str = param(choices=INDEX_SEARCHES)
    hnsw_m: int = param(lo=4, hi=256)
    hnsw_ef_search: int = param(lo=1)


@dataclass(frozen=True)
class PriorParams:
    SECTION: ClassVar[str] = "prior"
    target_prior: list[float] = param(lengths=(N,), item=Rule(float, lo=0.0), check=positive_total)


@dataclass(frozen=True)
class ThresholdsParams:
    SECTION: ClassVar[str] = "thresholds"
    cost_ratio: float = param(lo=0.0, lo_open=True)
    objective: str = param(choices=OBJECTIVES)
    min_threshold: float = param(lo=0.0, hi=1.0, lo_open=True)
    min_support: int = param(lo=0)
    min_gain: float = param(lo=0.0)
    escape_budget: float = param(lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    confidence: float = param(lo=0.5, hi=1.0, hi_open=True)
    set_alpha: float = param(lo=0.0, hi=0.5, lo_open=True)
    set_score: str = param(choices=("auto", *SET_SCORES))


@dataclass(frozen=True)
class EvaluateParams:
    SECTION: ClassVar[str] = "evaluate"
    bootstrap: int = param(lo=1)
    seed: int = param(**SEED)


@dataclass(frozen=True)
class GradcamParams:
    SECTION: ClassVar[str] = "gradcam"
    method: str = param(choices=CAM_METHODS)
    # a ResNet stage (layerN: after its CBAM block, layerN.stage: before it) or a module inside
    # one (layer3.1.conv2); never the classifier head (fc) or the pooling
    layer: str = param(
        pattern=r"auto|layer[1-4](\.[A-Za-z0-9_]+)*",
        pattern_help="'auto' or a ResNet stage name (layerN, layerN.stage, layerN.<module>)",
    )
    per_class: int = param(lo=0, hi=CAM_SLOTS)
    max_maps: int = param(lo=1)
    batch_size: int = param(lo=1)
    seed: int = param(**SEED)
    device: str = param(**DEVICE)


# Every section of params.yaml, in its order: the validate_params stage checks them all first.
SECTIONS: dict[str, type] = {
    cls.SECTION: cls
    for cls in (
        SynthesizeParams,
        IngestParams,
        SplitParams,
        ShardParams,
        TrainParams,
        InferParams,
        CalibrateParams,
        IndexParams,
        PriorParams,
        ThresholdsParams,
        EvaluateParams,
        GradcamParams,
    )
}


def _rule(hint: Any, meta: Mapping[str, Any]) -> Rule:
    origin = typing.get_origin(hint) or hint
    return Rule(origin, **meta)


@functools.cache
def section_rules(cls: type) -> dict[str, Rule]:
    """One section's rules, field by field (kind from the annotation, the rest from
    :func:`wafer.config.rules.param`)."""
    hints = typing.get_type_hints(cls)
    return {f.name: _rule(hints[f.name], f.metadata["rule"]) for f in dataclasses.fields(cls)}


@functools.cache
def rules() -> dict[str, dict[str, Rule]]:
    """The table: section -> key -> rule, read off the section classes."""
    return {name: section_rules(cls) for name, cls in SECTIONS.items()}
