"""The served runtimes (wafer.model.runtime): each gives eager fp32's labels on a tiny model,
fp32 ones within 1e-4 of its logits, bf16 and int8 within the tolerances below (their labels
where the margin is clear of it); bad choices fail in one line."""

import importlib.util
import json

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
INT8_LOGIT_TOL = 0.05  # 256 levels per tensor: logits within 5% of their largest value


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
    calib = maps(48, seed=1) if name == "int8" else None  # int8: ranges from other maps
    run = make_runtime(tiny_net(), "cpu", name, maps=calib)  # one per test: compiling is slow
    got = predict_outputs(run, x, 8, views=4, features="mean")
    tol = {"bf16": BF16_LOGIT_TOL, "int8": INT8_LOGIT_TOL}.get(name, 1e-4)
    scale = np.abs(ref.logits).max()
    assert np.abs(got.logits - ref.logits).max() <= tol * max(scale, 1.0)
    assert np.abs(got.features - ref.features).max() <= tol * max(np.abs(ref.features).max(), 1.0)
    margin = np.sort(ref.logits, axis=1)
    clear = margin[:, -1] - margin[:, -2] > 2 * tol * max(scale, 1.0)
    np.testing.assert_array_equal(got.logits.argmax(1)[clear], ref.logits.argmax(1)[clear])
    if name not in ("bf16", "int8"):
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


def test_int8_calibration_sample_and_record():
    """The calibration sample is a fixed, ordered subset of the training maps; a record written
    to a served file (floats to 6 decimals) rebuilds the same graph and the same logits."""
    from wafer.core.io import json_text
    from wafer.model.runtime import calibration_maps

    x = maps(50)
    a, b = calibration_maps(x, 20), calibration_maps(x, 20)
    assert a.shape == (20, 16, 16) and np.array_equal(a, b)
    rows = [next(i for i in range(50) if np.array_equal(x[i], m)) for m in a]
    assert rows == sorted(rows)
    assert len(calibration_maps(x, 500)) == 50
    if absent("int8"):
        pytest.skip(f"int8 needs {', '.join(absent('int8'))} (pip install 'wafer[onnx]')")
    made = make_runtime(tiny_net(), "cpu", "int8", maps=a)
    record = json.loads(json_text(made.quantization))
    again = make_runtime(tiny_net(), "cpu", "int8", quantization=record)
    assert again.quantization["graph_sha256"] == made.quantization["graph_sha256"]
    x1 = one_hot(torch.from_numpy(maps(seed=3)))
    assert torch.equal(made(x1)[0], again(x1)[0])
    with pytest.raises(UsageError, match="needs its calibration record"):
        make_runtime(tiny_net(), "cpu", "int8")


@pytest.mark.parametrize("average", ["logit", "prob"])
def test_int8_serves_an_ensemble_as_eager_does(average):
    """The cross-fitting pipeline serves its ensemble at the root's runtime (the headline
    recipe's is int8): the exported, quantised graph of K members and their combination gives
    eager's logits within int8's tolerance, its features (the members' side by side) too."""
    if absent("int8"):
        pytest.skip(f"int8 needs {', '.join(absent('int8'))} (pip install 'wafer[onnx]')")
    from wafer.model.net import Ensemble

    def ensemble():
        return Ensemble([tiny_net(0), tiny_net(1)], average).eval()

    x = maps()
    ref = predict_outputs(ensemble(), x, 8, views=2, features="mean")
    run = make_runtime(ensemble(), "cpu", "int8", maps=maps(48, seed=1))
    got = predict_outputs(run, x, 8, views=2, features="mean")
    assert got.features.shape == ref.features.shape == (len(x), 2 * 512)
    scale = max(np.abs(ref.logits).max(), 1.0)
    assert np.abs(got.logits - ref.logits).max() <= INT8_LOGIT_TOL * scale
    fscale = max(np.abs(ref.features).max(), 1.0)
    assert np.abs(got.features - ref.features).max() <= INT8_LOGIT_TOL * fscale
    margin = np.sort(ref.logits, axis=1)
    clear = margin[:, -1] - margin[:, -2] > 2 * INT8_LOGIT_TOL * scale
    np.testing.assert_array_equal(got.logits.argmax(1)[clear], ref.logits.argmax(1)[clear])
