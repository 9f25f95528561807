"""The sections of the cross-fitting pipeline's own params (``pipelines/crossfit/params.yaml``),
one frozen dataclass each, as :mod:`wafer.config.sections` does for the 9-class pipeline. The
recipe itself (``train``, ``infer``, ``calibrate``, ``prior``, ``thresholds``, ...) is not
repeated here: the cross-fitting stages read it from the root ``params.yaml``, where it is
written once, and only what is new to cross-fitting lives in this file.
:data:`CROSSFIT_SECTIONS` is the table ``validate_all(params, CROSSFIT_SECTIONS)`` checks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from wafer.config.rules import (
    AVERAGES,
    ENSEMBLE_MEMBERS,
    MEMBER_STARTS,
    STUDENT_TEACHERS,
    TTA_VIEWS,
    Rule,
    distinct,
    param,
)
from wafer.config.sections import SEED


def folds_in_order(v: list) -> str | None:
    """``crossfit.folds`` is 0..K-1: the DVC matrix runs one member per value, and the fold
    assignment uses K = its length, so no other list would describe the same folds."""
    return None if list(v) == list(range(len(v))) else f"must be 0..{len(v) - 1} in order"


@dataclass(frozen=True)
class CrossfitParams:
    """K folds over the training split (wafer.data.crossfit), one member per fold."""

    SECTION: ClassVar[str] = "crossfit"
    # the DVC matrix of member trainings (train_member@0, @1, ...): K = its length
    folds: list[int] = param(
        lengths=tuple(range(2, 21)), item=Rule(int, lo=0), check=folds_in_order
    )
    seed: int = param(**SEED)  # fold assignment; independent of split.seed and train.seed
    epochs: int = param(lo=1)  # every model's epoch budget here (the rest of train.* is the recipe)


def seeds_for_members(values: Mapping[str, Any]) -> str | None:
    """``ensemble.members: seeds`` needs at least one extra seed (the root's model alone is no
    ensemble)."""
    if values.get("members") == "seeds" and not values.get("seeds"):
        return "members 'seeds' needs at least one seed in seeds (the root's model alone is one)"
    return None


@dataclass(frozen=True)
class EnsembleParams:
    """Which models make the served ensemble and how their outputs are combined."""

    SECTION: ClassVar[str] = "ensemble"
    CROSS_CHECK: ClassVar[Callable[[Mapping[str, Any]], str | None]] = seeds_for_members
    average: str = param(choices=AVERAGES)
    # folds: the K cross-fitted members; seeds: the root's model and one model per extra seed,
    # each trained like it on every training map (DVC matrix train_seed@seed)
    members: str = param(choices=ENSEMBLE_MEMBERS)
    seeds: list[int] = param(lengths=tuple(range(21)), item=Rule(int, lo=0), check=distinct)
    # a seed member's first weights: scratch (the root's recipe from random weights) | root (the
    # root's model, then finetune_epochs epochs at finetune_lr: a warm restart, far cheaper and
    # less diverse); the two below are read with root only
    start: str = param(choices=MEMBER_STARTS)
    finetune_epochs: int = param(lo=1)
    finetune_lr: float = param(lo=0.0, lo_open=True)


@dataclass(frozen=True)
class StudentParams:
    """The distilled student: one network of the root recipe trained on soft targets."""

    SECTION: ClassVar[str] = "student"
    alpha: float = param(lo=0.0, hi=1.0)  # weight of the teacher's probabilities (0: labels)
    temperature: float = param(lo=0.0, lo_open=True)  # softens the teacher's probabilities
    # oof: the cross-fitted members' out-of-fold logits (stage oof) | insample: the served
    # ensemble's own logits on the training maps (stage insample; its members trained on them)
    teacher: str = param(choices=STUDENT_TEACHERS)
    insample_views: int = param(choices=TTA_VIEWS)  # the insample stage's TTA views
    # scratch: the root's recipe from random weights (crossfit.epochs) | root: the root's model,
    # then ensemble.finetune_epochs at ensemble.finetune_lr (a warm restart, as a seed member's)
    start: str = param(choices=MEMBER_STARTS)


@dataclass(frozen=True)
class AuditParams:
    """The label-noise audit (wafer.report.audit) and its review page."""

    SECTION: ClassVar[str] = "audit"
    review: int = param(lo=0)  # the most suspect maps shown on the review page
    neighbours: int = param(lo=0, hi=20)  # nearest training maps shown with each
    weight: float = param(lo=0.0, hi=1.0)  # a flagged map's loss weight in train_cleaned (0: out)


CROSSFIT_SECTIONS: Mapping[str, type[Any]] = {
    cls.SECTION: cls for cls in (CrossfitParams, EnsembleParams, StudentParams, AuditParams)
}
