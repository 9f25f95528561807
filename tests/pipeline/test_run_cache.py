"""DVC's run cache must see every param: a stage restored from it under another value records
an experiment whose params say one thing and whose outputs are another.

DVC computes the run-cache key of a stage from its dvc.lock entry with every key named like a
file-metadata field left out, at any depth (``dvc/stage/cache.py``, ``_get_cache_hash``:
``exclude=[Meta.PARAM_SIZE, Meta.PARAM_NFILES]``, i.e. ``size`` and ``nfiles``; upstream
treeverse/dvc#10296). Our shard side was once ``shard.size``: ``dvc exp run -S shard.size=48``
after a 32-px run restored the 32-px shards and recorded 48. The param is now
``shard.input_px``; these tests ask DVC itself which keys it drops, so a key DVC adds to its
list is caught too.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import yaml

from wafer.config.sections import rules
from wafer.tools.recipes import RECIPES_DIR, list_recipes, load_yaml

from conftest import ROOT, sh, tiny_repo

_get_cache_hash = pytest.importorskip("dvc.stage.cache")._get_cache_hash


def _lock_entry(params: dict) -> dict:
    """A stage's dvc.lock entry as the run cache hashes it."""
    return {"cmd": "python stages/x.py", "params": {"params.yaml": params}, "outs": []}


def _cache_key(params: dict) -> str:
    return _get_cache_hash(copy.deepcopy(_lock_entry(params)))


def dropped_by_dvc(name: str) -> bool:
    """Whether DVC's run-cache key ignores a param of this name (same key for two values)."""
    return _cache_key({"s": {name: 1}}) == _cache_key({"s": {name: 2}})


def _leaf_paths(tree: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for k, v in tree.items():
        out += _leaf_paths(v, (*prefix, k)) if isinstance(v, dict) else [(*prefix, k)]
    return out


def test_the_detector_sees_dvcs_blind_spot():
    """The check below can fail: DVC drops `size` and `nfiles` today (if a DVC release stops
    doing so, this test says so, and the rename is no longer needed)."""
    assert dropped_by_dvc("size") and dropped_by_dvc("nfiles")
    assert not dropped_by_dvc("input_px")


def test_every_param_changes_the_run_cache_key():
    """Each value of params.yaml, changed alone, changes DVC's run-cache key of a stage."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for path in _leaf_paths(params):
        changed = copy.deepcopy(params)
        node = changed
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = ["a value", "no param holds"]
        assert _cache_key(params) != _cache_key(changed), ".".join(path)


def test_no_param_recipe_or_rule_key_is_named_as_dvc_drops():
    names = {key for table in rules().values() for key in table} | set(rules())
    names |= {
        part
        for path in _leaf_paths(yaml.safe_load((ROOT / "params.yaml").read_text()))
        for part in path
    }
    for recipe in list_recipes():
        for dotted in load_yaml((RECIPES_DIR / f"{recipe}.yaml").read_text()):
            names |= set(dotted.split("."))
    bad = sorted(n for n in names if dropped_by_dvc(n))
    assert not bad, f"DVC's run cache ignores params named {bad}: rename them"


@pytest.mark.slow
def test_exp_run_at_a_new_input_size_reshards(tmp_path):
    """End to end: shards at the default (tiny) side, then `dvc exp run -S shard.input_px=48`
    makes 48-px shards and metrics/shard.json says 48 (under `shard.size` this was served
    from the run cache: 'Stage shard is cached', 8-px shards, params saying 48)."""
    env = tiny_repo(tmp_path, repro="shard")
    dvc = [sys.executable, "-m", "dvc"]
    assert np.load(tmp_path / "data/shards/train_x.npy").shape[1:] == (8, 8)

    out = sh([*dvc, "exp", "run", "-S", "shard.input_px=48", "shard"], tmp_path, env).stdout
    assert "Running stage 'shard'" in out, out
    assert np.load(tmp_path / "data/shards/train_x.npy").shape[1:] == (48, 48)
    assert yaml.safe_load((tmp_path / "metrics/shard.json").read_text())["input_px"] == 48

    bad = sh([*dvc, "exp", "run", "-S", "shard.input_px=0", "shard"], tmp_path, env, ok=False)
    assert bad.returncode != 0
    assert "error: shard.input_px: 0 is below 8" in bad.stdout + bad.stderr
