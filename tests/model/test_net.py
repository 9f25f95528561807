import pytest
import torch
import torch.nn.functional as F

from wafer.model.checkpoint import Checkpoint, load_model
from wafer.model.net import STEMS, ModelConfig, build_model, count_parameters, one_hot

# output stride of each stem, so that a 64-px input ends in 2x2, 4x4 or 8x8 maps
STRIDE = {"standard": 32, "compact": 16, "cifar": 8}


@pytest.mark.parametrize("stem", STEMS)
@pytest.mark.parametrize("cbam", [False, True])
def test_output_shapes(stem, cbam):
    model = build_model(ModelConfig(stem=stem, cbam=cbam, cbam_reduction=16)).eval()
    feats = {}
    model.layer4.register_forward_hook(lambda m, i, o: feats.setdefault("l4", o))
    x = one_hot(torch.randint(0, 3, (2, 64, 64), dtype=torch.uint8))
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 9)
    side = 64 // STRIDE[stem]
    assert feats["l4"].shape == (2, 512, side, side)


def test_parameter_counts_match_the_seed():
    plain = count_parameters(
        build_model(ModelConfig(stem="standard", cbam=False, cbam_reduction=16))
    )
    cbam = count_parameters(build_model(ModelConfig(stem="standard", cbam=True, cbam_reduction=16)))
    assert plain == 11_181_129
    assert cbam - plain == 43_912
    # the small-input stems swap the 7x7 conv (9,408 weights) for a 3x3 one (1,728)
    compact = count_parameters(
        build_model(ModelConfig(stem="compact", cbam=False, cbam_reduction=16))
    )
    assert plain - compact == 9_408 - 1_728


def test_cbam_reduction_changes_the_mlp():
    r8 = count_parameters(build_model(ModelConfig(stem="standard", cbam=True, cbam_reduction=8)))
    assert r8 - 11_181_129 == 2 * 43_520 + 392


def test_one_hot_encodes_die_states():
    x = torch.tensor([[[0, 1], [2, 1]]], dtype=torch.uint8)
    oh = one_hot(x)
    assert oh.shape == (1, 3, 2, 2) and oh.dtype == torch.float32
    assert torch.equal(oh.argmax(dim=1), x.long()) and torch.all(oh.sum(dim=1) == 1)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    cfg = ModelConfig(stem="cifar", cbam=True, cbam_reduction=8)
    model = build_model(cfg).eval()
    path = tmp_path / "model.pt"
    Checkpoint.of(model, cfg, 16, {"loss": "focal", "best_epoch": 3}).save(path)
    payload = torch.load(path, weights_only=True)  # no code runs while loading
    assert payload["input_size"] == 16 and payload["model_config"]["cbam_reduction"] == 8
    assert payload["class_names"][-1] == "none"
    back, _ = load_model(path)
    x = one_hot(torch.randint(0, 3, (3, 16, 16), dtype=torch.uint8))
    with torch.no_grad():
        assert torch.equal(model(x), back(x))
    assert not list(tmp_path.glob("*.tmp*"))  # written via temp file + rename


def test_models_are_trainable_end_to_end():
    model = build_model(ModelConfig(stem="compact", cbam=True, cbam_reduction=16))
    x = one_hot(torch.randint(0, 3, (4, 16, 16), dtype=torch.uint8))
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2, 8]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
