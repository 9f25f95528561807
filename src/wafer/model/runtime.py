"""How the served forward pass runs the network (``infer.runtime``): one small class per runtime,
each turning a batch of one-hot maps into fp32 logits and the penultimate features.

- ``eager``: PyTorch as trained, fp32 (the reference every other runtime is measured against);
- ``bf16``: PyTorch under bf16 autocast (fast only where the CPU has AVX-512 BF16 or AMX, or on
  a GPU; on an AVX2-only CPU it is several times slower than fp32);
- ``compile``: ``torch.compile`` (Inductor) of the same network, fp32; the first batch pays the
  compilation (tens of seconds on a CPU), so it pays off only over long runs;
- ``onnx``: the network exported to ONNX and run by ONNX Runtime's CPU provider, fp32 (the
  optional extra ``pip install 'wafer[onnx]'``);
- ``int8``: that graph quantised by ONNX Runtime (static QDQ: int8 weights per output channel,
  uint8 activations) with activation ranges calibrated on ``infer.int8_calibration_maps``
  training maps (:func:`calibration_maps`). The `infer` stage calibrates and records the ranges
  and the SHA-256 of the quantised graph (:attr:`Int8.quantization`); `calibrate` copies that
  record into the served calibration, and every later process rebuilds the graph from the
  model and those ranges and refuses to serve one whose digest differs (another torch or
  ONNX Runtime version), so the int8 graph served is the one evaluated.

The runtime is a served fact like the TTA views: the `infer` stage records it in the logits file,
the `calibrate` stage copies it into the served calibration, and `wafer predict`, the demo and the
index stage build the same runtime from there, so what is evaluated is what is served. Every
runtime computes the logits and the features (the input of ``fc``) of one pass through
:class:`LogitsAndFeatures`, which calls the modules of a torchvision ResNet in the order its own
``forward`` does (eager results are those of ``net(x)``, bit for bit).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wafer.config.rules import RUNTIMES
from wafer.core.errors import UsageError
from wafer.core.io import json_text
from wafer.model.net import Ensemble, combine, one_hot

# the packages each runtime needs beyond torch: checked before any work starts
_ORT = ("onnxruntime", "onnx", "onnxscript")
NEEDS = {"onnx": _ORT, "int8": _ORT}
CPU_ONLY = ("onnx", "int8")  # ONNX Runtime's CPU provider


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
    needs is absent, or ``onnx``/``int8`` asked for on another device than the CPU."""
    if name not in RUNTIMES:
        raise UsageError(f"{what} {name!r}: not one of {', '.join(RUNTIMES)}")
    missing = [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{what} {name!r} needs {', '.join(missing)}: pip install 'wafer[onnx]'")
    if name in CPU_ONLY and torch.device(device).type != "cpu":
        raise UsageError(f"{what} {name!r} runs on the CPU only (device {device})")


class Runtime:
    """The eager fp32 runtime; subclasses change how :meth:`run` computes the pair."""

    name = "eager"
    quantization: dict | None = None  # int8 only: the record its graph is rebuilt from

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
        self.model_bytes = export_onnx(self.module)  # the exported fp32 graph
        self.session = self.start(self.graph())

    def graph(self) -> bytes:
        """The ONNX graph this runtime serves."""
        return self.model_bytes

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


def export_onnx(module: nn.Module) -> bytes:
    """``module`` (one-hot maps -> logits, features) as an ONNX graph, fp32; the batch and the
    side are dynamic axes. The graph is the computation only: the exporter's node metadata
    (each node's Python stack trace, with the absolute path and line of the source that made
    it) is dropped, so the same model gives the same bytes wherever the package is installed
    and whatever lines move in its source; int8's served record is checked by those bytes'
    hash (:class:`Int8`)."""
    import onnx

    example = torch.zeros(2, 3, 32, 32)  # any side: both axes are dynamic
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            input_names=["x"],
            output_names=["logits", "features"],
            dynamic_shapes={"x": {0: "batch", 2: "side", 3: "side"}},
            external_data=False,
            verbose=False,
        )
        graph = onnx.load_model_from_string(path.read_bytes())
    return _computation_only(graph).SerializeToString()


def _computation_only(model):
    """``model`` (an onnx ModelProto) without what describes where it came from rather than
    what it computes: every node's ``metadata_props`` (stack trace, class hierarchy, FX node,
    name scopes) and ``doc_string``, in the graph, its subgraphs and its functions."""

    def graphs(g):
        yield g
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    yield from graphs(attr.g)
                for sub in attr.graphs:
                    yield from graphs(sub)

    nodes = [n for g in graphs(model.graph) for n in g.node]
    nodes += [n for f in model.functions for n in f.node]
    for node in nodes:
        del node.metadata_props[:]
        node.doc_string = ""
    return model


class QuantizationError(ValueError):
    """The int8 graph rebuilt from a served record is not the one that was evaluated."""


def calibration_maps(x: np.ndarray, n: int) -> np.ndarray:
    """The int8 calibration sample: the first ``n`` maps of a fixed permutation of the training
    maps ``x`` (uint8 ``(N, S, S)``), so that the ranges do not depend on the shard's order."""
    order = np.random.default_rng(0).permutation(len(x))[: min(n, len(x))]
    return np.asarray(x[np.sort(order)])


def quantize(fp32: bytes, ranges: dict | None = None, maps: np.ndarray | None = None):
    """ONNX Runtime's static QDQ quantisation of the graph ``fp32``: int8 weights per output
    channel, uint8 activations whose ranges (min/max) are calibrated on ``maps`` (uint8
    ``(N, S, S)``) or taken from ``ranges`` (ONNX Runtime's calibration-cache dict, as a
    previous call returned it). Returns ``(int8 graph bytes, ranges)``; the same graph and
    ranges give the same bytes."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, x: np.ndarray):
            chunks = np.array_split(x, max(1, -(-len(x) // 32)))
            self.it = iter({"x": one_hot(torch.from_numpy(c)).numpy()} for c in chunks)

        def get_next(self):
            return next(self.it, None)

    if (ranges is None) == (maps is None):
        raise ValueError("quantize: give exactly one of the calibration maps and the ranges")
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise UsageError(
            "infer.runtime 'int8' needs a newer onnxruntime: pip install -U onnxruntime"
        )
    settings = {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "activation_type": QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
    }
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out, cache = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "q.onnx", "r"))
        src.write_bytes(fp32)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if maps is not None:  # calibrate: the ranges land in the cache file
            quantize_static(
                str(pre), str(out), Reader(maps), calibration_cache_path=str(cache), **settings
            )
            ranges = json.loads(cache.read_text())
        # the graph is always built from the ranges as a served JSON file holds them (floats
        # to 6 decimals, wafer.core.io.json_text; keys sorted), so that a served record
        # rebuilds it bit for bit
        text = json.dumps(json.loads(json_text(ranges)), sort_keys=True)
        cache.write_text(text)
        quantize_static(str(pre), str(out), None, calibration_cache_path=str(cache), **settings)
        return out.read_bytes(), json.loads(text)


class Int8(Onnx):
    """The exported graph quantised to int8 (:func:`quantize`). Built either from calibration
    maps (the `infer` stage: :attr:`quantization` is then the record to serve) or from such a
    record (everything that serves), whose ``graph_sha256`` the rebuilt graph must match."""

    name = "int8"

    def __init__(self, net, device="cpu", quantization: dict | None = None, maps=None):
        if (quantization is None) == (maps is None):
            raise UsageError(
                "infer.runtime 'int8' needs its calibration record (the served calibration "
                "file's 'quantization') or calibration maps"
            )
        self._record, self._maps = quantization, maps
        super().__init__(net, device)

    def graph(self) -> bytes:
        import onnxruntime

        ranges = self._record["ranges"] if self._record is not None else None
        try:
            graph, ranges = quantize(self.model_bytes, ranges=ranges, maps=self._maps)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever ONNX Runtime makes of bad ranges
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise QuantizationError(f"unusable int8 activation ranges: {msg}") from None
        digest = hashlib.sha256(graph).hexdigest()
        versions = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
        if self._record is not None and digest != self._record["graph_sha256"]:
            was = {k: self._record.get(k, "?") for k in versions}
            why = (
                f"built with {versions}, evaluated with {was}: install those versions"
                if was != versions
                else "same versions, so the record was changed after `infer`"
            )
            raise QuantizationError(
                f"the int8 graph rebuilt here (sha256 {digest[:12]}…) is not the one evaluated "
                f"({self._record['graph_sha256'][:12]}…); {why}, or re-run `dvc repro`"
            )
        n = len(self._maps) if self._maps is not None else self._record["calibration_maps"]
        self.quantization = {
            "calibration_maps": int(n),
            "graph_sha256": digest,
            **versions,
            "ranges": ranges,
        }
        return graph


_CLASSES = {c.name: c for c in (Runtime, BF16, Compiled, Onnx, Int8)}
assert tuple(_CLASSES) == RUNTIMES, "RUNTIMES and the runtime classes must list the same names"


def make_runtime(
    net: nn.Module,
    device: torch.device | str,
    name: str = "eager",
    quantization: dict | None = None,
    maps: np.ndarray | None = None,
) -> Runtime:
    """The runtime ``name`` over ``net`` on ``device`` (:func:`check_runtime` first). ``int8``
    needs its served ``quantization`` record, or calibration ``maps`` to make one; the other
    runtimes ignore both."""
    check_runtime(name, device)
    if name == "int8":
        return Int8(net, device, quantization, maps)
    return _CLASSES[name](net, device)
