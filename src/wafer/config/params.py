"""Reading and checking ``params.yaml``: every value against its rule (one table:
:mod:`wafer.config.sections`), each section returned as its frozen dataclass.

The ``validate_params`` stage (the first stage of ``dvc.yaml``) checks the whole file with
:func:`validate_all` before any other stage runs, so a typo (``dvc exp run -S train.loss=foo``)
stops the pipeline before DVC deletes any stage's outputs. The stage scripts check their own
section again when they read it (they can be run by hand), from the same table.

A violation raises :class:`~wafer.config.rules.ParamError`, one line naming the parameter::

    train.loss: 'foo' is not one of ce, focal

``params.yaml`` is the only place a value is written. A stage reads its section(s) with
:func:`load_section`, typed::

    p = load_section("params.yaml", TrainParams)   # p.epochs, p.lr, ...

so ``dvc.yaml`` passes a stage only paths (``--params params.yaml`` and its inputs and outputs)
and declares ``params: [train]``, which makes ``dvc.lock`` record every value and
``dvc exp run -S train.lr=...`` re-run the stage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from wafer.config.rules import ParamError
from wafer.config.sections import SECTIONS, section_rules

S = TypeVar("S")


def check_section(
    section: str, values: Mapping[str, Any], sections: Mapping[str, type] = SECTIONS
) -> None:
    """Check one section's values against the table of ``sections`` (default: the 9-class
    pipeline's; :data:`wafer.config.mixed.MIXED_SECTIONS` for the mixed-type one); raise
    :class:`ParamError` at the first bad one. Unknown keys are errors (a typo in a key name must
    not be ignored), and so are missing keys."""
    if section not in sections:
        raise ParamError(f"{section}: unknown params section (known: {', '.join(sections)})")
    table = section_rules(sections[section])
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
    cross = getattr(sections[section], "CROSS_CHECK", None)
    if cross is not None:
        why = cross(values)
        if why:
            raise ParamError(f"{section}: {why}")


def load_params(path: str | Path) -> dict:
    """Parse ``params.yaml``; a YAML error becomes a one-line :class:`ParamError`."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamError(f"{path}: not readable as YAML: {first}") from None
    return data


def section_values(params: Mapping[str, Any], section: type[S]) -> S:
    """Section ``section`` (its class, e.g. ``TrainParams``) of the parsed ``params``, checked,
    as an instance of that class."""
    name = section.SECTION
    if not isinstance(params, Mapping):
        raise ParamError(f"params: expected a mapping of sections, found {type(params).__name__}")
    if name not in params:
        raise ParamError(f"{name}: section missing from params")
    values = params[name]
    check_section(name, values, {name: section})
    table = section_rules(section)
    return section(**{k: table[k].coerce(values[k]) for k in table})


def validate_all(params: Mapping[str, Any], sections: Mapping[str, type] = SECTIONS) -> None:
    """Check every section of a parsed ``params.yaml`` (all sections of the table ``sections``
    must be there, and no other)."""
    if isinstance(params, Mapping):
        for name in params:
            if name not in sections:
                raise ParamError(f"{name}: unknown params section (known: {', '.join(sections)})")
    for cls in sections.values():
        section_values(params, cls)


def load_section(path: str | Path, section: type[S]) -> S:
    """Read ``path`` (params.yaml) and return its section ``section`` (a class of
    :mod:`wafer.config.sections`), checked (one line naming the parameter when a value breaks
    its rule)."""
    return section_values(load_params(path), section)


def config_from(cls: type, values: Any, **changes: Any) -> Any:
    """An instance of the dataclass ``cls`` (e.g. ``TrainConfig``, ``ModelConfig``) whose
    fields take the section's values of the same names, then ``changes``; its other fields keep
    their own defaults."""
    names = {f.name for f in dataclasses.fields(values)}
    kw = {f.name: getattr(values, f.name) for f in dataclasses.fields(cls) if f.name in names}
    return cls(**(kw | changes))
