"""train.init (a donor's backbone, wafer.model.transfer) and train.fraction (a stratified share of
the training maps, wafer.mixed.split.stratified_subset): the two knobs of the transfer study."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wafer.config.mixed import MIXED_SECTIONS, MixedTrainParams
from wafer.config.params import validate_all
from wafer.config.rules import ParamError
from wafer.core.classes import CLASS_NAMES, MIXED_LABELS
from wafer.core.io import sha256_file
from wafer.mixed.split import epoch_rows, stratified_subset
from wafer.model.checkpoint import Checkpoint
from wafer.model.net import ModelConfig, build_model
from wafer.model.transfer import init_from_donor, load_donor, transfer_weights

ARCH = {"stem": "compact", "cbam": True, "cbam_reduction": 16}


def _donor(path, names=CLASS_NAMES, seed=1, **arch) -> str:
    torch.manual_seed(seed)
    cfg = ModelConfig(num_classes=len(names), **(ARCH | arch))
    Checkpoint.of(build_model(cfg), cfg, 16, {}, class_names=names).save(path)
    return sha256_file(path)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(num_classes=len(MIXED_LABELS), **ARCH))


def test_backbone_is_copied_and_a_9_class_head_is_not(tmp_path):
    sha = _donor(tmp_path / "d.pt")
    donor = Checkpoint.load(tmp_path / "d.pt")
    model, fresh = _model(), _model()
    t = init_from_donor(model, tmp_path / "d.pt", sha, MIXED_LABELS)
    state = model.state_dict()
    assert not t.head_copied and t.donor_classes == CLASS_NAMES and t.donor_sha256 == sha
    assert t.tensors == len(state) - 2  # all but fc.weight, fc.bias
    for name, tensor in state.items():
        if name.startswith("fc."):  # the seed's fresh head, as a from-scratch run has it
            assert torch.equal(tensor, fresh.state_dict()[name])
        else:
            assert torch.equal(tensor, donor.state_dict[name]), name
    assert t.to_dict()["tensors_copied"] == t.tensors


def test_a_donor_of_the_same_task_gives_its_head_too(tmp_path):
    _donor(tmp_path / "m.pt", names=MIXED_LABELS)
    model = _model()
    n, head = transfer_weights(
        model, Checkpoint.load(tmp_path / "m.pt", class_names=None), MIXED_LABELS
    )
    assert head and n == len(model.state_dict())


def test_another_file_under_the_donors_name_is_refused(tmp_path):
    sha = _donor(tmp_path / "d.pt")
    _donor(tmp_path / "d.pt", seed=2)  # replaced: same path, other weights
    with pytest.raises(ValueError, match="has SHA-256 .* says"):
        load_donor(tmp_path / "d.pt", sha)
    with pytest.raises(ValueError, match="no file"):
        load_donor(tmp_path / "absent.pt", sha)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_donor(tmp_path / "junk.pt", sha256_file(tmp_path / "junk.pt"))


@pytest.mark.parametrize("arch", [{"stem": "standard"}, {"cbam": False}])
def test_a_donor_of_another_architecture_is_refused_not_half_copied(tmp_path, arch):
    sha = _donor(tmp_path / "d.pt", **arch)
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="architectures differ|which the model has not"):
        init_from_donor(model, tmp_path / "d.pt", sha, MIXED_LABELS)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_init_and_its_sha256_go_together_and_warmup_needs_an_average_in_params():
    base = {
        "loss": "bce", "focal_gamma": 0.0, "asl_gamma_neg": 2.0, "asl_clip": 0.05,
        "cbam": True, "cbam_reduction": 16, "stem": "compact", "epochs": 1, "lr": 0.001,
        "weight_decay": 0.0, "batch_size": 8, "patience": 1, "seed": 0, "device": "cpu",
        "augment": True, "precision": "fp32", "ema_decay": 0.0, "ema_warmup": False,
        "fraction": 1.0,
        "epoch_maps": 0,
        "init": "", "init_sha256": "",
    }  # fmt: skip
    sections = {"train": MixedTrainParams}
    validate_all({"train": base}, sections)
    validate_all({"train": base | {"init": "d.pt", "init_sha256": "ab" * 32}}, sections)
    validate_all({"train": base | {"ema_decay": 0.999, "ema_warmup": True}}, sections)
    for bad, match in (
        ({"init": "d.pt"}, "go together"),
        ({"init_sha256": "ab" * 32}, "go together"),
        ({"init": "d.pt", "init_sha256": "xyz"}, "init_sha256"),
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"ema_warmup": True}, "ema_warmup needs train.ema_decay above 0"),
    ):
        with pytest.raises(ParamError, match=match):
            validate_all({"train": base | bad}, sections)
    assert MIXED_SECTIONS["train"] is MixedTrainParams


def _labels(rng, n=2000):
    combos = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=np.uint8)
    weights = np.array([0.5, 0.3, 0.15, 0.045, 0.005])
    return combos[rng.choice(len(combos), size=n, p=weights)]


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.1, 0.5])
def test_a_fraction_keeps_every_combination_in_its_share(fraction):
    y = _labels(np.random.default_rng(0))
    keep = stratified_subset(y, fraction, seed=3)
    assert np.all(np.diff(keep) > 0)
    combos, counts = np.unique(y, axis=0, return_counts=True)
    kept_combos, kept = np.unique(y[keep], axis=0, return_counts=True)
    assert len(kept_combos) == len(combos)  # even 1 % sees every combination
    want = np.maximum(1, np.round(fraction * counts)).astype(int)
    assert np.array_equal(kept, want)


def test_a_fraction_is_drawn_from_the_seed_alone():
    y = _labels(np.random.default_rng(0))
    a, b = stratified_subset(y, 0.1, seed=0), stratified_subset(y, 0.1, seed=0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, stratified_subset(y, 0.1, seed=1))
    np.random.seed(123)  # the global stream (initial weights) does not move it
    torch.manual_seed(5)
    assert np.array_equal(a, stratified_subset(y, 0.1, seed=0))
    assert np.array_equal(stratified_subset(y, 1.0, seed=0), np.arange(len(y)))
    with pytest.raises(ValueError, match="fraction"):
        stratified_subset(y, 0.0, seed=0)


def test_a_small_training_set_is_passed_whole_about_epoch_maps_over_its_size_times():
    rows = np.array([3, 7, 9])
    assert np.array_equal(epoch_rows(rows, 0), rows)
    assert np.array_equal(epoch_rows(rows, 4), rows)  # 4 / 3 rounds to one pass
    assert np.array_equal(epoch_rows(rows, 8), np.tile(rows, 3))  # whole passes
    assert np.array_equal(np.bincount(epoch_rows(rows, 100))[rows], [33, 33, 33])
    # the transfer study's sets (12,585 training maps, epoch_maps 1,259): 1 %, 5 %, 10 %
    assert [len(epoch_rows(np.arange(n), 1259)) for n in (116, 644, 1255)] == [1276, 1288, 1255]
