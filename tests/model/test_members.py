"""The seed ensemble's member files (wafer.model.members.load_seed_members): a member is taken
only when its checkpoint says it was trained as that seed member, at the root's recipe
(``ensemble.start: scratch``) or started from this very root model for the fine-tune the params
name (``start: root``); anything else is refused naming the file."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch

from wafer.config.crossfit import EnsembleParams
from wafer.core.errors import WaferInputError
from wafer.core.io import sha256_file
from wafer.model.checkpoint import Checkpoint
from wafer.model.members import load_seed_members, member_file, served_ensemble
from wafer.model.net import ModelConfig, build_model

CFG = ModelConfig(stem="compact", cbam=False, cbam_reduction=16)
RECIPE = {"loss": "focal", "epochs": 8, "lr": 0.001, "seed": 0}
SCRATCH = EnsembleParams(
    average="logit", members="seeds", seeds=[4], start="scratch", finetune_epochs=2,
    finetune_lr=0.0002,
)  # fmt: skip
ROOT = replace(SCRATCH, start="root")


def _save(path, extra: dict) -> None:
    torch.manual_seed(len(str(extra)))
    path.parent.mkdir(parents=True, exist_ok=True)
    Checkpoint.of(build_model(CFG), CFG, 16, extra).save(path)


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "model.pt"
    _save(path, {"train": RECIPE})
    return path


def test_a_scratch_member_is_the_root_recipe_at_its_own_seed(tmp_path, root):
    seeds = tmp_path / "seeds"
    _save(member_file(seeds, 4), {"train": RECIPE | {"seed": 4}, "crossfit": {"seed": 4}})
    got = load_seed_members(root, seeds, SCRATCH)
    assert [p.name for p, _ in got] == ["model.pt", "4.pt"]
    _save(
        member_file(seeds, 4), {"train": RECIPE | {"seed": 4, "lr": 0.01}, "crossfit": {"seed": 4}}
    )
    with pytest.raises(WaferInputError, match=r"4\.pt.*another recipe.*\(lr differ\)"):
        load_seed_members(root, seeds, SCRATCH)


def test_a_fine_tuned_member_is_bound_to_the_root_model_it_started_from(tmp_path, root):
    seeds = tmp_path / "seeds"
    made = {"seed": 4, "start": "root", "root_sha256": sha256_file(root)}
    tuned = RECIPE | {"seed": 4, "epochs": 2, "lr": 0.0002}
    _save(member_file(seeds, 4), {"train": tuned, "crossfit": made})
    assert len(load_seed_members(root, seeds, ROOT)) == 2
    # the same file is not a scratch member, and a scratch member is not a fine-tuned one
    with pytest.raises(WaferInputError, match="not trained as the seed member 4"):
        load_seed_members(root, seeds, SCRATCH)
    # params that name another fine-tune than the one it had
    with pytest.raises(WaferInputError, match=r"another recipe.*\(epochs differ\)"):
        load_seed_members(root, seeds, replace(ROOT, finetune_epochs=3))
    # a new root model (retrained, or another file put in its place)
    _save(root, {"train": RECIPE | {"lr": 0.002}})
    with pytest.raises(WaferInputError, match=r"4\.pt.*not trained as the seed member 4 started"):
        load_seed_members(root, seeds, ROOT)


def test_the_ensemble_params_refuse_a_bad_start_or_fine_tune():
    from wafer.config.params import check_section
    from wafer.config.rules import ParamError

    good = asdict(ROOT)
    check_section("ensemble", good, {"ensemble": EnsembleParams})
    for bad, why in (
        ({"start": "warm"}, "start"),
        ({"finetune_epochs": 0}, "finetune_epochs"),
        ({"finetune_lr": 0.0}, "finetune_lr"),
    ):
        with pytest.raises(ParamError, match=why):
            check_section("ensemble", good | bad, {"ensemble": EnsembleParams})


def test_a_root_model_of_another_architecture_is_no_start(load_stage, root):
    """`ensemble.start: root` loads the root's weights into the recipe's network: a root model
    of another architecture (a stale model after the recipe changed) is refused in one line."""
    from wafer.config.params import load_section
    from wafer.config.sections import TrainParams

    from conftest import ROOT as REPO

    train = load_stage("train")
    recipe = load_section(REPO / "params.yaml", TrainParams)
    p = replace(recipe, stem=CFG.stem, cbam=CFG.cbam, cbam_reduction=CFG.cbam_reduction)
    start, tuned = train.warm_restart(root, p, ROOT, "ensemble")
    assert start.config == CFG
    # then ensemble.finetune_epochs at ensemble.finetune_lr, the rest of the recipe as it is
    assert tuned == replace(p, epochs=ROOT.finetune_epochs, lr=ROOT.finetune_lr)
    with pytest.raises(WaferInputError, match=r"model\.pt.*another architecture.*\(cbam differ\)"):
        train.warm_restart(root, replace(p, cbam=True), ROOT, "ensemble")


def test_the_served_ensemble_is_the_same_bytes_from_the_same_member_files(tmp_path, root):
    """served_ensemble records each member's file name and SHA-256 and how it was made, so the
    `ensemble` stage's checkpoint can be rebuilt from a saved run's member files byte for byte
    (scripts/build_ensemble.py), and another member file gives another checkpoint."""
    seeds = tmp_path / "seeds"
    made = {"seed": 4, "start": "root", "root_sha256": sha256_file(root)}
    tuned = RECIPE | {"seed": 4, "epochs": 2, "lr": 0.0002}
    _save(member_file(seeds, 4), {"train": tuned, "crossfit": made})
    a, chosen = served_ensemble(ROOT, root_model=root, seeds=seeds)
    b, _ = served_ensemble(ROOT, root_model=root, seeds=seeds)
    assert a.to_bytes() == b.to_bytes()
    rec = a.extra["ensemble"]
    assert rec["members_from"] == "seeds" and rec["seeds"] == [0, 4] and rec["start"] == "root"
    assert (rec["finetune_epochs"], rec["finetune_lr"]) == (2, 0.0002)
    assert [m["file"] for m in rec["members"]] == ["model.pt", "4.pt"]
    assert rec["members"][1]["sha256"] == sha256_file(member_file(seeds, 4))
    a.save(tmp_path / "ensemble.pt")
    assert (tmp_path / "ensemble.pt").read_bytes() == a.to_bytes()
    torch.manual_seed(99)  # the same recipe, other weights: another served model
    Checkpoint.of(build_model(CFG), CFG, 16, {"train": tuned, "crossfit": made}).save(
        member_file(seeds, 4)
    )
    c, _ = served_ensemble(ROOT, root_model=root, seeds=seeds)
    assert c.to_bytes() != a.to_bytes()
