"""wafer.tools.recipes: a recipe's variant names every key once (an override replaces the
recipe's value in place), and a bad override stops before anything runs."""

from __future__ import annotations

import pytest

from wafer.tools import recipes


def _write(tmp_path, text):
    d = tmp_path / "recipes"
    d.mkdir()
    (d / "r.yaml").write_text(text)
    params = tmp_path / "params.yaml"
    params.write_text("shard:\n  input_px: 32\ntrain:\n  seed: 0\n  lr: 0.001\n  cbam: true\n")
    return d, params


def test_an_override_replaces_the_recipes_value_in_place(tmp_path, capsys):
    d, params = _write(tmp_path, "shard.input_px: 96\ntrain.lr: 0.002\n")
    argv = ["r", "shard.input_px=128", "train.seed=3", "--recipes-dir", str(d)]
    assert recipes.main([*argv, "--params", str(params)]) == 0
    out = capsys.readouterr().out.split()
    assert out == ["-S", "shard.input_px=128", "-S", "train.lr=0.002", "-S", "train.seed=3"]
    assert sum(a.startswith("shard.input_px=") for a in out) == 1


@pytest.mark.parametrize(
    ("override", "why"),
    [
        ("shard.input=128", "unknown key"),
        ("train.cbam=3", "is a number"),
        ("train.seed", "not key=value"),
        ("ingest.input=x.npz", "apart"),
    ],
)
def test_a_bad_override_poisons_the_arguments(tmp_path, capsys, override, why):
    d, params = _write(tmp_path, "shard.input_px: 96\n")
    rc = recipes.main(["r", override, "--recipes-dir", str(d), "--params", str(params)])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out.strip() == recipes.POISON
    assert why in captured.err and len(captured.err.strip().splitlines()) == 1
