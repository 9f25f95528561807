"""The sections of the mixed-type pipeline's params (``pipelines/mixed/params.yaml``), one
frozen dataclass each, as :mod:`wafer.config.sections` does for the 9-class pipeline: the
sections whose meaning is the same (``shard``, ``infer``, ``calibrate``, ``evaluate``,
``gradcam``) are the
9-class classes themselves, so their rules are written once. :data:`MIXED_SECTIONS` is the
table ``validate_all(params, MIXED_SECTIONS)`` checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from wafer.config.rules import PRECISIONS, STEMS, param
from wafer.config.sections import (
    DEVICE,
    SEED,
    CalibrateParams,
    EvaluateParams,
    GradcamParams,
    InferParams,
    ShardParams,
    ema_warmup_needs_decay,
    split_shares,
)

MULTILABEL_LOSSES = ("bce", "focal", "asl")  # train.loss (wafer.model.losses.make_multilabel_loss)
MIXED_OBJECTIVES = ("cost", "macro_f1")  # thresholds.objective (wafer.mixed.thresholds)


@dataclass(frozen=True)
class MixedSynthesizeParams:
    """Embedded default data: MixedWM38-like maps (wafer.mixed.synth)."""

    SECTION: ClassVar[str] = "synthesize"
    n_maps: int = param(lo=38)
    side: int = param(lo=16, hi=256)
    rare_share: float = param(lo=0.0, hi=1.0, lo_open=True)
    seed: int = param(**SEED)


@dataclass(frozen=True)
class MixedIngestParams:
    SECTION: ClassVar[str] = "ingest"
    input: str = param(pattern=r".+\.npz", pattern_help="an .npz file in MixedWM38's layout")
    on_invalid: str = param(choices=("drop", "fail"))


@dataclass(frozen=True)
class MixedSplitParams:
    SECTION: ClassVar[str] = "split"
    CROSS_CHECK: ClassVar[Callable[[Mapping[str, Any]], str | None]] = split_shares
    seed: int = param(**SEED)
    val: float = param(lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    test: float = param(lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def mixed_train_rules(p: Mapping[str, Any]) -> str | None:
    """Cross-check of the mixed train section: a donor is named by path and SHA-256 together,
    and the EMA warmup has an average to warm up (the single-label train section's rule)."""
    if bool(p["init"]) != bool(p["init_sha256"]):
        return "train.init and train.init_sha256 go together (both empty: from scratch)"
    return ema_warmup_needs_decay(p)


@dataclass(frozen=True)
class MixedTrainParams:
    SECTION: ClassVar[str] = "train"
    CROSS_CHECK: ClassVar[Callable[[Mapping[str, Any]], str | None]] = mixed_train_rules
    loss: str = param(choices=MULTILABEL_LOSSES)
    focal_gamma: float = param(lo=0.0)  # focal: both sides; asl: the positive side
    asl_gamma_neg: float = param(lo=0.0)  # asl: focusing on the negatives
    asl_clip: float = param(lo=0.0, hi=0.5)  # asl: probability margin shifted off negatives
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
    fraction: float = param(lo=0.0, hi=1.0, lo_open=True)  # of the training split (stratified)
    epoch_maps: int = param(lo=0)  # about this many maps an epoch: a small set passed n times
    init: str = param(pattern=r"|.+\.pt", pattern_help="empty (from scratch) or a .pt file")
    init_sha256: str = param(pattern=r"|[0-9a-fA-F]{64}", pattern_help="empty or 64 hex digits")


@dataclass(frozen=True)
class MixedThresholdsParams:
    SECTION: ClassVar[str] = "thresholds"
    cost_ratio: float = param(lo=0.0, lo_open=True)
    objective: str = param(choices=MIXED_OBJECTIVES)
    min_support: int = param(lo=0)


MIXED_SECTIONS: dict[str, type] = {
    cls.SECTION: cls
    for cls in (
        MixedSynthesizeParams,
        MixedIngestParams,
        MixedSplitParams,
        ShardParams,
        MixedTrainParams,
        InferParams,
        CalibrateParams,
        MixedThresholdsParams,
        EvaluateParams,
        GradcamParams,
    )
}
