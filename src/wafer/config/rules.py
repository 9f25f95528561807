"""What one parameter may be (:class:`Rule`), the error a bad value raises
(:class:`ParamError`), and the names the choice parameters may take.

A section of params.yaml is a frozen dataclass in :mod:`wafer.config.sections`; each field's
rule is written beside it with :func:`param` and its kind is the field's annotation::

    loss: str = param(choices=("ce", "focal"))
    lr: float = param(lo=0.0, lo_open=True)

This module imports nothing of the pipeline: the modules that implement a choice (the novelty
methods, the CAM methods, the stems, ...) import its names from here, so a stage that only
reads params depends on no pipeline code.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wafer.core.errors import UsageError


class ParamError(UsageError):
    """A parameter value breaks its rule; the message is one line naming ``section.key``."""


# The names a choice parameter may take (the modules that implement them import these).
NOVELTY_METHODS = ("msp", "energy", "knn", "mahalanobis")  # index.method (wafer.serving.novelty)
CAM_METHODS = ("gradcam", "gradcam++")  # gradcam.method (wafer.explain.cam)
STEMS = ("standard", "compact", "cifar")  # train.stem (wafer.model.net)
OBJECTIVES = ("cost", "macro_f1", "escape_budget")  # thresholds.objective: operating points
SET_SCORES = ("lac", "aps", "raps")  # thresholds.set_score (wafer.serving.conformal)
PRECISIONS = ("fp32", "bf16")  # train.precision (wafer.model.train)
RUNTIMES = ("eager", "bf16", "compile", "onnx", "int8")  # infer.runtime (wafer.model.runtime)
INDEX_SEARCHES = ("exact", "hnsw")  # index.search (wafer.serving.ann)
TTA_VIEWS = (1, 2, 4, 8)  # infer.views: dihedral views averaged (wafer.model.augment.TTA_ORDER)
AVERAGES = ("logit", "prob")  # ensemble.average: members' logits or probabilities (wafer.model.net)
ENSEMBLE_MEMBERS = ("folds", "seeds")  # ensemble.members (stages/crossfit/ensemble.py)
MEMBER_STARTS = ("scratch", "root")  # ensemble.start, student.start: first weights (train.py)
# student.teacher: whose logits on the training maps the student learns from (stages/train.py)
STUDENT_TEACHERS = ("oof", "insample")
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"


@dataclass(frozen=True)
class Rule:
    """What one parameter may be.

    kind: ``int``, ``float`` (ints accepted; NaN and infinities refused), ``bool``, ``str`` or
    ``list`` (of ``item``); ``lo``/``hi`` bounds (inclusive unless ``lo_open``/``hi_open``);
    ``choices`` for strings and ints; ``pattern`` (full match) for strings; ``lengths`` allowed list
    lengths; ``check`` an extra test returning the reason when the value is bad (else None).
    """

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | tuple[int, ...] | None = None
    pattern: str | None = None
    pattern_help: str = ""
    lengths: tuple[int, ...] | None = None
    item: Rule | None = None
    check: Callable[[Any], str | None] | None = None

    def reason(self, v: Any) -> str | None:
        """Why ``v`` breaks the rule, or None."""
        if self.kind is bool:
            return None if isinstance(v, bool) else f"{v!r} is not true/false"
        if self.kind is int:
            if isinstance(v, bool) or not isinstance(v, int):
                return f"{v!r} is not an integer"
            if self.choices is not None and v not in self.choices:
                return f"{v!r} is not one of {', '.join(map(str, self.choices))}"
        elif self.kind is float:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"{v!r} is not a number"
            if not math.isfinite(v):
                return f"{v!r} is not a finite number"
        elif self.kind is str:
            if not isinstance(v, str):
                return f"{v!r} is not a string"
            if self.choices is not None and v not in self.choices:
                return f"{v!r} is not one of {', '.join(self.choices)}"
            if self.pattern is not None and not re.fullmatch(self.pattern, v):
                return f"{v!r} is not {self.pattern_help or 'of the form ' + self.pattern}"
        elif self.kind is list:
            if not isinstance(v, list | tuple):
                return f"{v!r} is not a list"
            if self.lengths is not None and len(v) not in self.lengths:
                want = " or ".join(map(str, self.lengths))
                return f"has {len(v)} value(s), expected {want}"
            if self.item is not None:
                for i, x in enumerate(v):
                    why = self.item.reason(x)
                    if why:
                        return f"value {i}: {why}"
        if self.kind in (int, float):
            if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
                return f"{v!r} is {'not above' if self.lo_open else 'below'} {self.lo:g}"
            if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
                return f"{v!r} is {'not below' if self.hi_open else 'above'} {self.hi:g}"
        return self.check(v) if self.check is not None else None

    def coerce(self, v: Any) -> Any:
        """An int written for a float parameter becomes a float (``lr: 1`` is 1.0), in lists
        too."""
        if self.kind is float and isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        if self.kind is list and self.item is not None:
            return [self.item.coerce(x) for x in v]
        return v


def param(**rule: Any) -> Any:
    """A section field whose rule is ``rule`` (:class:`Rule`'s arguments but its kind, which is
    the field's annotation). No default: params.yaml holds every value."""
    return dataclasses.field(metadata={"rule": rule})


def distinct(v: list) -> str | None:
    return None if len(set(v)) == len(v) else "names a value twice"


def positive_total(v: list) -> str | None:
    return None if sum(v) > 0 else "all values are 0 (needs a positive total)"
