"""The ensemble served as one network (wafer.model.net.Ensemble): both averages, the checkpoint
that holds its members (and leaves a single model's file as it was), the runtime's features,
and Grad-CAM as the mean of the members' maps."""

from __future__ import annotations

import pytest
import torch

from wafer.explain.cam import compute_cam, target_layer
from wafer.model.checkpoint import Checkpoint
from wafer.model.net import Ensemble, ModelConfig, build_model, combine
from wafer.model.runtime import make_runtime

CFG = ModelConfig(stem="compact", cbam=True, cbam_reduction=16)


def _members(n: int = 3) -> list[Checkpoint]:
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(Checkpoint.of(build_model(CFG), CFG, 16, {"seed": seed}))
    return out


def test_combine_means_logits_or_probabilities():
    logits = torch.randn(3, 5, 9)
    assert torch.allclose(combine(logits, "logit"), logits.mean(0))
    prob = combine(logits, "prob").softmax(-1)
    assert torch.allclose(prob, logits.softmax(-1).mean(0), atol=1e-6)
    # log of the mean probability: already normalised, so a softmax leaves it as it is
    assert torch.allclose(combine(logits, "prob").exp().sum(-1), torch.ones(5), atol=1e-5)
    with pytest.raises(ValueError, match="average"):
        combine(logits, "median")
    one = torch.randn(1, 2, 9)
    assert torch.allclose(combine(one, "prob"), one[0].log_softmax(-1), atol=1e-6)


@pytest.mark.parametrize("average", ["logit", "prob"])
def test_ensemble_checkpoint_round_trips_and_serves_the_combined_output(tmp_path, average):
    members = _members()
    ens = Checkpoint.ensemble(members, average, {"ensemble": {"members": 3}})
    ens.save(tmp_path / "e.pt")
    back = Checkpoint.load(tmp_path / "e.pt")
    assert back.config.members == 3 and back.config.average == average
    net = back.build()
    assert isinstance(net, Ensemble)
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        each = torch.stack([m.build()(x) for m in members])
        assert torch.allclose(net(x), combine(each, average), atol=1e-5)
        logits, feats = make_runtime(net, "cpu")(x)
    assert torch.allclose(logits, combine(each, average), atol=1e-5)
    assert feats.shape == (4, 3 * 512)


def test_a_single_models_file_has_no_ensemble_keys(tmp_path):
    one = _members(1)[0]
    assert "members" not in one.payload()["model_config"]
    one.save(tmp_path / "m.pt")
    assert Checkpoint.load(tmp_path / "m.pt").config.members == 1


def test_members_must_share_architecture_and_input_side():
    a, b = _members(2)
    with pytest.raises(ValueError, match="at least 2"):
        Checkpoint.ensemble([a], "logit", {})
    other = Checkpoint(b.state_dict, b.config, 32, b.extra, b.class_names)
    with pytest.raises(ValueError, match="input_size"):
        Checkpoint.ensemble([a, other], "logit", {})
    nested = Checkpoint.ensemble([a, b], "logit", {})
    with pytest.raises(ValueError, match="itself an ensemble"):
        Checkpoint.ensemble([nested, a], "logit", {})


def test_ensemble_gradcam_is_the_mean_of_the_members_cams():
    members = _members(2)
    net = Checkpoint.ensemble(members, "logit", {}).build()
    x = torch.rand(2, 3, 16, 16)
    t = torch.tensor([0, 4])
    cam = compute_cam(net, x, t, target_layer(net, "layer3"), "gradcam")
    each = [
        compute_cam(n, x, t, target_layer(n, "layer3"), "gradcam")
        for n in (m.build() for m in members)
    ]
    assert cam.shape == each[0].shape
    assert abs(cam - (each[0] + each[1]) / 2).max() < 1e-5
    with pytest.raises(ValueError, match="one per member"):
        compute_cam(net, x, t, target_layer(members[0].build(), "layer3"), "gradcam")
