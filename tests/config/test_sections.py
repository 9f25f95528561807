"""The params sections are explicit frozen dataclasses whose fields carry their rules (one
table, wafer.config.sections): read typed, in params.yaml's order, every field ruled."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from wafer.config.params import load_section, section_values
from wafer.config.rules import ParamError
from wafer.config.sections import SECTIONS, ShardParams, TrainParams, rules

from conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def test_sections_are_params_yaml_in_order_and_every_field_has_a_rule():
    assert list(SECTIONS) == list(PARAMS)
    for name, cls in SECTIONS.items():
        assert cls.SECTION == name
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
        fields = [f.name for f in dataclasses.fields(cls)]
        assert fields == list(PARAMS[name]), name  # the checkpoint keeps asdict() in this order
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            rule = rules()[name][f.name]
            assert rule.kind is (typing.get_origin(hints[f.name]) or hints[f.name]), f.name
            assert f.default is dataclasses.MISSING, f"{name}.{f.name}: params.yaml holds defaults"


def test_a_section_is_read_as_its_class_with_its_types():
    p = load_section(ROOT / "params.yaml", TrainParams)
    assert isinstance(p, TrainParams)
    assert isinstance(p.lr, float) and isinstance(p.epochs, int) and isinstance(p.cbam, bool)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.lr = 1.0  # type: ignore[misc]
    changed = {**PARAMS, "train": {**PARAMS["train"], "lr": 1}}
    assert section_values(changed, TrainParams).lr == 1.0  # an int written for a float
    assert section_values(PARAMS, ShardParams).input_px == PARAMS["shard"]["input_px"]


def test_an_unknown_section_is_refused():
    from wafer.config.params import validate_all

    with pytest.raises(ParamError, match="trian: unknown params section"):
        validate_all({**PARAMS, "trian": {"lr": 0.1}})
