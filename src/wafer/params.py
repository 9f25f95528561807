"""The rules every value of ``params.yaml`` must follow: one table, one rule per parameter.

The ``validate_params`` stage (the first stage of ``dvc.yaml``) checks the whole file with
:func:`validate_all` before any other stage runs, so a typo (``dvc exp run -S train.loss=foo``)
stops the pipeline before DVC deletes any stage's outputs. The stage scripts check their own
section again with :func:`check_section` (they can be run by hand), from the same table.

A violation raises :class:`ParamError`, one line naming the parameter::

    train.loss: 'foo' is not one of ce, focal

The table is a dict of sections, each a dict of :class:`Rule`; a section may add a
cross-parameter check (``CROSS_CHECKS``, e.g. ``split.val + split.test < 1``).

``params.yaml`` is the only place a value is written. A stage reads its section(s) with
:func:`load_section`, which checks them against the table and returns one frozen dataclass per
section (:func:`section_type`, its fields made from the table's keys)::

    p = load_section("params.yaml", "train")   # p.epochs, p.lr, ...

so ``dvc.yaml`` passes a stage only paths (``--params params.yaml`` and its inputs and outputs)
and declares ``params: [train]``, which makes ``dvc.lock`` record every value and
``dvc exp run -S train.lr=...`` re-run the stage.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wafer.classes import CLASS_NAMES
from wafer.io import UsageError


class ParamError(UsageError):
    """A parameter value breaks its rule; the message is one line naming ``section.key``."""


@dataclass(frozen=True)
class Rule:
    """What one parameter may be.

    kind: ``int``, ``float`` (ints accepted; NaN and infinities refused), ``bool``, ``str`` or
    ``list`` (of ``item``); ``lo``/``hi`` bounds (inclusive unless ``lo_open``/``hi_open``);
    ``choices`` for strings; ``pattern`` (full match) for strings; ``lengths`` allowed list
    lengths; ``check`` an extra test returning the reason when the value is bad (else None).
    """

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
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


def _distinct(v: list) -> str | None:
    return None if len(set(v)) == len(v) else "names a value twice"


def _positive_total(v: list) -> str | None:
    return None if sum(v) > 0 else "all values are 0 (needs a positive total)"


# The names a choice parameter may take. The modules that implement them import these from
# here (not the other way round), so this module, which every stage loads, imports none of them
# and a stage depends only on the code it runs.
NOVELTY_METHODS = ("msp", "energy", "knn", "mahalanobis")  # index.method (wafer.novelty)
CAM_METHODS = ("gradcam", "gradcam++")  # gradcam.method (wafer.cam)
STEMS = ("standard", "compact", "cifar")  # train.stem (wafer.model)
OBJECTIVES = ("cost", "macro_f1")  # thresholds.objective: the operating points (wafer.serve)
PRECISIONS = ("fp32", "bf16")  # train.precision (wafer.train)

DEVICE = Rule(
    str,
    pattern=r"auto|cpu|cuda(:\d+)?|mps",
    pattern_help="auto, cpu, cuda, cuda:N or mps",
)
SEED = Rule(int, lo=0)
# gradcam.layer: a ResNet stage (layerN: after its CBAM block, layerN.stage: before it) or a
# module inside one (layer3.1.conv2); never the classifier head (fc) or the pooling.
CAM_LAYER = Rule(
    str,
    pattern=r"auto|layer[1-4](\.[A-Za-z0-9_]+)*",
    pattern_help="'auto' or a ResNet stage name (layerN, layerN.stage, layerN.<module>)",
)


@functools.cache
def rules() -> dict[str, dict[str, Rule]]:
    """The table: section -> key -> rule (built on first use)."""
    per_class_max = 3  # wafer.gradcam_report.SLOTS has 3 slots (asserted in the tests)
    return {
        "synthesize": {
            "n_maps": Rule(int, lo=len(CLASS_NAMES)),
            "floor": Rule(float, lo=0.0, hi=1.0 / len(CLASS_NAMES)),
            "seed": SEED,
        },
        "ingest": {
            "input": Rule(str, pattern=r".+", pattern_help="a file name"),
            "on_invalid": Rule(str, choices=("drop", "fail")),
        },
        "split": {
            "seed": SEED,
            "val": Rule(float, lo=0.0, hi=1.0, hi_open=True),
            "test": Rule(float, lo=0.0, hi=1.0, hi_open=True),
            "use_original": Rule(bool),
            "group_lots": Rule(bool),
            "holdout": Rule(
                list,
                lengths=tuple(range(len(CLASS_NAMES) - 1)),
                item=Rule(str, choices=tuple(CLASS_NAMES)),
                check=_distinct,
            ),
        },
        "shard": {"input_px": Rule(int, lo=8, hi=1024)},
        "train": {
            "loss": Rule(str, choices=("ce", "focal")),
            "focal_gamma": Rule(float, lo=0.0),
            "focal_alpha": Rule(list, lengths=(0, len(CLASS_NAMES)), item=Rule(float, lo=0.0)),
            "cbam": Rule(bool),
            "cbam_reduction": Rule(int, lo=1),
            "stem": Rule(str, choices=STEMS),
            "epochs": Rule(int, lo=1),
            "lr": Rule(float, lo=0.0, lo_open=True),
            "weight_decay": Rule(float, lo=0.0),
            "batch_size": Rule(int, lo=1),
            "patience": Rule(int, lo=1),
            "seed": SEED,
            "device": DEVICE,
            "augment": Rule(bool),
            "precision": Rule(str, choices=PRECISIONS),
            "ema_decay": Rule(float, lo=0.0, hi=1.0, hi_open=True),
            "nproc": Rule(int, lo=1),
        },
        "infer": {"tta": Rule(bool), "batch_size": Rule(int, lo=1), "device": DEVICE},
        "calibrate": {"n_bins": Rule(int, lo=1)},
        "index": {
            "tta": Rule(bool),
            "k": Rule(int, lo=1),
            "method": Rule(str, choices=("auto", *NOVELTY_METHODS)),
            "false_flag_rate": Rule(float, lo=0.0, hi=1.0, lo_open=True, hi_open=True),
            "batch_size": Rule(int, lo=1),
            "device": DEVICE,
            "baseline_size": Rule(int, lo=4, hi=256),
        },
        "prior": {
            "target_prior": Rule(
                list,
                lengths=(len(CLASS_NAMES),),
                item=Rule(float, lo=0.0),
                check=_positive_total,
            ),
        },
        "thresholds": {
            "cost_ratio": Rule(float, lo=0.0, lo_open=True),
            "objective": Rule(str, choices=OBJECTIVES),
            "min_threshold": Rule(float, lo=0.0, hi=1.0, lo_open=True),
            "min_support": Rule(int, lo=0),
            "min_gain": Rule(float, lo=0.0),
        },
        "evaluate": {"bootstrap": Rule(int, lo=1), "seed": SEED},
        "gradcam": {
            "method": Rule(str, choices=CAM_METHODS),
            "layer": CAM_LAYER,
            "per_class": Rule(int, lo=0, hi=per_class_max),
            "max_maps": Rule(int, lo=1),
            "batch_size": Rule(int, lo=1),
            "seed": SEED,
            "device": DEVICE,
        },
    }


def _split_shares(p: Mapping[str, Any]) -> str | None:
    if p["val"] + p["test"] >= 1.0:
        return f"split.val + split.test = {p['val'] + p['test']:g} leaves no training maps"
    return None


CROSS_CHECKS: dict[str, Callable[[Mapping[str, Any]], str | None]] = {"split": _split_shares}


def check_section(section: str, values: Mapping[str, Any]) -> None:
    """Check one section's values against the table; raise :class:`ParamError` at the first
    bad one. Unknown keys are errors (a typo in a key name must not be ignored), and so are
    missing keys."""
    table = rules().get(section)
    if table is None:
        raise ParamError(f"{section}: unknown params section (known: {', '.join(rules())})")
    if not isinstance(values, Mapping):
        raise ParamError(f"{section}: expected a mapping of parameters, found {values!r}")
    for key in values:
        if key not in table:
            raise ParamError(f"{section}.{key}: unknown parameter (known: {', '.join(table)})")
    for key, rule in table.items():
        if key not in values:
            raise ParamError(f"{section}.{key}: missing")
        why = rule.reason(values[key])
        if why:
            raise ParamError(f"{section}.{key}: {why}")
    cross = CROSS_CHECKS.get(section)
    if cross is not None:
        why = cross(values)
        if why:
            raise ParamError(f"{section}: {why}")


def validate_all(params: Mapping[str, Any]) -> None:
    """Check every section of a parsed ``params.yaml`` (all sections of the table must be
    there)."""
    for section in rules():
        section_values(params, section)


def load_params(path: str | Path) -> dict:
    """Parse ``params.yaml``; a YAML error becomes a one-line :class:`ParamError`."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamError(f"{path}: not readable as YAML: {first}") from None
    return data


@functools.cache
def section_type(section: str) -> type:
    """The frozen dataclass of one section: a field per key of the table, in its order."""
    table = rules()[section]
    name = "".join(part.title() for part in section.split("_")) + "Params"
    return dataclasses.make_dataclass(
        name, [(key, rule.kind) for key, rule in table.items()], frozen=True
    )


def _as_kind(rule: Rule, v: Any) -> Any:
    """An int written for a float parameter becomes a float (``lr: 1`` is 1.0), in lists too."""
    if rule.kind is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if rule.kind is list and rule.item is not None:
        return [_as_kind(rule.item, x) for x in v]
    return v


def section_values(params: Mapping[str, Any], section: str) -> Any:
    """Section ``section`` of the parsed ``params``, checked, as its frozen dataclass."""
    if not isinstance(params, Mapping):
        raise ParamError(f"params: expected a mapping of sections, found {type(params).__name__}")
    if section not in params:
        raise ParamError(f"{section}: section missing from params")
    values = params[section]
    check_section(section, values)
    table = rules()[section]
    return section_type(section)(**{k: _as_kind(table[k], values[k]) for k in table})


def load_section(path: str | Path, section: str) -> Any:
    """Read ``path`` (params.yaml) and return its section ``section``, checked (one line
    naming the parameter when a value breaks its rule)."""
    return section_values(load_params(path), section)


def config_from(cls: type, values: Any, **changes: Any) -> Any:
    """An instance of the dataclass ``cls`` (e.g. ``TrainConfig``, ``ModelConfig``) whose
    fields take the section's values of the same names, then ``changes``; its other fields keep
    their own defaults."""
    names = {f.name for f in dataclasses.fields(values)}
    kw = {f.name: getattr(values, f.name) for f in dataclasses.fields(cls) if f.name in names}
    return cls(**(kw | changes))
