"""The served runtimes (wafer.model.runtime): each gives eager fp32's labels on a tiny model,
fp32 ones within 1e-4 of its logits, bf16 within the tolerance below; bad choices fail in one
line."""

import importlib.util

import numpy as np
import pytest
import torch
from torchvision.models.resnet import BasicBlock, ResNet

from wafer.config.rules import RUNTIMES
from wafer.core.errors import UsageError
from wafer.model.forward import predict_outputs
from wafer.model.net import ModelConfig, build_model, one_hot
from wafer.model.runtime import NEEDS, LogitsAndFeatures, check_runtime, make_runtime

BF16_LOGIT_TOL = 0.05  # bf16 keeps 8 bits of mantissa: logits move by ~1% of their size


def served_net(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(stem="compact", cbam=True, cbam_reduction=16)).eval()


def tiny_net(seed: int = 0):
    """A ResNet of one block per stage (the served ResNet-18's modules, a quarter of its
    graph): compiling and exporting it takes seconds, not minutes."""
    torch.manual_seed(seed)
    net = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=9)
    net.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    net.maxpool = torch.nn.Identity()
    return net.eval()


def maps(n: int = 12, side: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, (n, side, side)).astype(np.uint8)


def absent(name: str) -> list[str]:
    return [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]


def test_logits_and_features_is_the_network_bit_for_bit():
    net = served_net()
    x = one_hot(torch.from_numpy(maps()))
    seen = []
    hook = net.fc.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
    with torch.no_grad():
        want = net(x)
        logits, features = LogitsAndFeatures(net)(x)
    hook.remove()
    assert torch.equal(logits, want) and torch.equal(features, seen[0])


@pytest.mark.parametrize("name", [r for r in RUNTIMES if r != "eager"])
def test_every_runtime_serves_eager_labels(name):
    if absent(name):
        pytest.skip(f"{name} needs {', '.join(absent(name))} (pip install 'wafer[{name}]')")
    net, x = tiny_net(), maps()
    ref = predict_outputs(net, x, 8, views=4, features="mean")
    run = make_runtime(tiny_net(), "cpu", name)  # one per test: compiling takes tens of seconds
    got = predict_outputs(run, x, 8, views=4, features="mean")
    tol = BF16_LOGIT_TOL if name == "bf16" else 1e-4
    scale = np.abs(ref.logits).max()
    assert np.abs(got.logits - ref.logits).max() <= tol * max(scale, 1.0)
    assert np.abs(got.features - ref.features).max() <= tol * max(np.abs(ref.features).max(), 1.0)
    margin = np.sort(ref.logits, axis=1)
    clear = margin[:, -1] - margin[:, -2] > 2 * tol * max(scale, 1.0)
    np.testing.assert_array_equal(got.logits.argmax(1)[clear], ref.logits.argmax(1)[clear])
    if name != "bf16":
        np.testing.assert_array_equal(got.logits.argmax(1), ref.logits.argmax(1))
    # a last, shorter batch runs too (the exported and compiled graphs have a dynamic batch)
    assert predict_outputs(run, x[:3], 2).logits.shape == (3, 9)


def test_bad_runtimes_fail_in_one_line(monkeypatch):
    with pytest.raises(UsageError, match="'tvm': not one of eager"):
        check_runtime("tvm", "cpu")
    with pytest.raises(UsageError, match="runs on the CPU only"):
        check_runtime("onnx", "cuda")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda m: None if m == "onnxruntime" else real(m)
    )
    with pytest.raises(UsageError, match=r"needs onnxruntime: pip install 'wafer\[onnx\]'"):
        check_runtime("onnx", "cpu", "--runtime")


def test_ieee_fp32_on_cuda_only_and_restored():
    """The served pass turns TF32 off on CUDA for its block and puts the settings back; on the
    CPU it touches nothing (the flags are plain settings: no GPU needed to check them)."""
    from wafer.model.runtime import ieee_fp32

    conv, mm = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = conv.fp32_precision, mm.fp32_precision
    with ieee_fp32(torch.device("cpu")):
        assert (conv.fp32_precision, mm.fp32_precision) == before
    with ieee_fp32(torch.device("cuda")):
        assert (conv.fp32_precision, mm.fp32_precision) == ("ieee", "ieee")
    assert (conv.fp32_precision, mm.fp32_precision) == before
    with pytest.raises(KeyError), ieee_fp32(torch.device("cuda")):
        raise KeyError("a failing batch")
    assert (conv.fp32_precision, mm.fp32_precision) == before
