"""How the served forward pass runs the network (``infer.runtime``): one small class per runtime,
each turning a batch of one-hot maps into fp32 logits and the penultimate features.

- ``eager``: PyTorch as trained, fp32 (the reference every other runtime is measured against);
- ``bf16``: PyTorch under bf16 autocast (fast only where the CPU has AVX-512 BF16 or AMX, or on
  a GPU; on an AVX2-only CPU it is several times slower than fp32);
- ``compile``: ``torch.compile`` (Inductor) of the same network, fp32; the first batch pays the
  compilation (tens of seconds on a CPU), so it pays off only over long runs;
- ``onnx``: the network exported to ONNX and run by ONNX Runtime's CPU provider, fp32 (the
  optional extra ``pip install 'wafer[onnx]'``).

The runtime is a served fact like the TTA views: the `infer` stage records it in the logits file,
the `calibrate` stage copies it into the served calibration, and `wafer predict`, the demo and the
index stage build the same runtime from there, so what is evaluated is what is served. Every
runtime computes the logits and the features (the input of ``fc``) of one pass through
:class:`LogitsAndFeatures`, which calls the modules of a torchvision ResNet in the order its own
``forward`` does (eager results are those of ``net(x)``, bit for bit).
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
from pathlib import Path

import torch
from torch import nn

from wafer.config.rules import RUNTIMES
from wafer.core.errors import UsageError
from wafer.model.net import Ensemble, combine

# the packages each runtime needs beyond torch: checked before any work starts
NEEDS = {"onnx": ("onnxruntime", "onnx", "onnxscript")}


def to_device(model: nn.Module, device: torch.device) -> nn.Module:
    """The model on ``device`` (channels-last on CUDA)."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


class LogitsAndFeatures(nn.Module):
    """A torchvision ResNet as ``(logits, features)``: the features are the input of ``fc``
    (after the global average pool), from the same pass. For an :class:`Ensemble` the logits
    are the combined ones and the features the members' side by side (K x 512)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.net, Ensemble):  # combined logits; the members' features side by side
            pairs = [resnet_logits_and_features(m, x) for m in self.net.members]
            logits = combine(torch.stack([lg for lg, _ in pairs]), self.net.average)
            return logits, torch.cat([f for _, f in pairs], dim=1)
        return resnet_logits_and_features(self.net, x)


def resnet_logits_and_features(n: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One torchvision ResNet's logits and the input of its ``fc``, from one pass."""
    x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
    x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
    f = torch.flatten(n.avgpool(x), 1)
    return n.fc(f), f


@contextlib.contextmanager
def ieee_fp32(device: torch.device):
    """On CUDA, fp32 convolutions and matrix products in full fp32 ("ieee") for the block, then
    the settings as they were. PyTorch lets cuDNN run fp32 convolutions in TF32 by default (10
    mantissa bits), which moves logits by about 1e-3: a model trained on a GPU and served on a
    CPU would then be served other probabilities than the ones its temperature and thresholds
    were fit on. Training keeps TF32 (its speed); the served forward pass does not."""
    if device.type != "cuda":
        yield
        return
    conv, mm = getattr(torch.backends.cudnn, "conv", None), torch.backends.cuda.matmul
    name = "fp32_precision" if hasattr(conv, "fp32_precision") else None  # torch >= 2.9
    objs, attr, value = (
        ((conv, mm), name, "ieee") if name else ((torch.backends.cudnn, mm), "allow_tf32", False)
    )
    saved = [getattr(o, attr) for o in objs]
    for o in objs:
        setattr(o, attr, value)
    try:
        yield
    finally:
        for o, v in zip(objs, saved, strict=True):
            setattr(o, attr, v)


def check_runtime(name: str, device: torch.device | str, what: str = "infer.runtime") -> None:
    """A one-line :class:`UsageError` when ``name`` cannot run here: not a runtime, a package it
    needs is absent, or ``onnx`` asked for on another device than the CPU."""
    if name not in RUNTIMES:
        raise UsageError(f"{what} {name!r}: not one of {', '.join(RUNTIMES)}")
    missing = [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{what} {name!r} needs {', '.join(missing)}: pip install 'wafer[{name}]'")
    if name == "onnx" and torch.device(device).type != "cpu":
        raise UsageError(f"{what} 'onnx' runs on the CPU only (device {device})")


class Runtime:
    """The eager fp32 runtime; subclasses change how :meth:`run` computes the pair."""

    name = "eager"

    def __init__(self, net: nn.Module, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.net = to_device(net, self.device).eval()
        self.module = LogitsAndFeatures(self.net).eval()

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.module(x)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot float maps ``(B, 3, S, S)`` on :attr:`device` -> fp32 logits ``(B, C)``
        and features ``(B, D)``, on :attr:`device`."""
        with ieee_fp32(self.device):
            logits, features = self.run(x)
        return logits.float(), features.float()


class BF16(Runtime):
    name = "bf16"

    def run(self, x):
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            return self.module(x)


class Compiled(Runtime):
    name = "compile"

    def __init__(self, net, device="cpu"):
        super().__init__(net, device)
        # dynamic: the last, shorter batch of a run reuses the graph instead of recompiling
        self.compiled = torch.compile(self.module, dynamic=True)

    def run(self, x):
        return self.compiled(x)


class Onnx(Runtime):
    name = "onnx"

    def __init__(self, net, device="cpu"):
        super().__init__(net, device)
        size = 32  # any side: only the batch axis is dynamic, the side is traced as given
        example = torch.zeros(2, 3, size, size)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            torch.onnx.export(
                self.module,
                (example,),
                str(path),
                dynamo=True,
                input_names=["x"],
                output_names=["logits", "features"],
                dynamic_shapes={"x": {0: "batch", 2: "side", 3: "side"}},
                external_data=False,
                verbose=False,
            )
            self.model_bytes = path.read_bytes()  # the exported graph (benchmarks quantise it)
        self.session = self.start(self.model_bytes)

    @staticmethod
    def start(model_bytes: bytes):
        """An ONNX Runtime CPU session of ``model_bytes`` on torch's thread count."""
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.log_severity_level = 3
        return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])

    def run(self, x):
        logits, features = self.session.run(None, {"x": x.contiguous().numpy()})
        return torch.from_numpy(logits), torch.from_numpy(features)


_CLASSES = {c.name: c for c in (Runtime, BF16, Compiled, Onnx)}
assert tuple(_CLASSES) == RUNTIMES, "RUNTIMES and the runtime classes must list the same names"


def make_runtime(net: nn.Module, device: torch.device | str, name: str = "eager") -> Runtime:
    """The runtime ``name`` over ``net`` on ``device`` (:func:`check_runtime` first)."""
    check_runtime(name, device)
    return _CLASSES[name](net, device)
