"""ResNet-18 (torchvision, from scratch) on 3-channel one-hot wafer maps, with optional CBAM.

* Input: ``(B, 3, S, S)`` float one-hot of the die states {outside, pass, fail}
  (see :func:`one_hot`).
* ``stem`` picks how much the first layers downsample, which sets the final feature map that
  Grad-CAM sees (output stride 32, 16 or 8):

  ======== ================================================ ====== ===========
  stem     first layers                                      stride 64 px map
  ======== ================================================ ====== ===========
  standard 7x7 conv stride 2 + 3x3 max-pool (torchvision)    32     2 x 2
  compact  3x3 conv stride 2, no max-pool                    16     4 x 4
  cifar    3x3 conv stride 1, no max-pool                    8      8 x 8
  ======== ================================================ ====== ===========

  A finer final map costs compute (4x per halving of the stride); see docs/TRAINING.md for
  the measured trade-off.
* ``cbam=True`` appends CBAM (Woo et al. 2018) after each of the four stages: channel attention
  (a bias-free shared MLP C -> C/r -> C over average- and max-pooled features) then spatial
  attention (a bias-free k x k conv over the channel mean and max). With r = 16, k = 7 this adds
  43,912 parameters to the 11,181,129 of a 9-class ResNet-18, as in the seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18

from wafer.config.rules import AVERAGES, STEMS
from wafer.core.classes import CLASS_NAMES

STEM_STRIDE = {"standard": 4, "compact": 2, "cifar": 1}  # downsampling before layer1


def stage_side(stem: str, input_size: int, stage: int) -> int:
    """Side of the feature map after ResNet stage ``stage`` (1..4) for a square input."""
    stride = STEM_STRIDE[stem] * 2 ** (stage - 1)
    return -(-input_size // stride)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The architecture (saved in the checkpoint); stem, cbam and cbam_reduction come from the
    `train` params section."""

    num_classes: int = len(CLASS_NAMES)
    stem: str
    cbam: bool
    cbam_reduction: int
    cbam_kernel: int = 7
    # an ensemble of `members` such networks (issue 25), their outputs combined by `average`
    members: int = 1
    average: str = "logit"

    def to_dict(self) -> dict:
        """What the checkpoint saves. A single network's dict has no ensemble keys, so its file
        is byte for byte what it was before ensembles existed."""
        d = asdict(self)
        if self.members == 1:
            del d["members"], d["average"]
        return d

    @property
    def member(self) -> ModelConfig:
        """The configuration of one member network."""
        return replace(self, members=1, average="logit")


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    def __init__(self, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    def __init__(self, channels: int, reduction: int, kernel: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class StageWithCBAM(nn.Sequential):
    """``stage`` then ``cbam``; ``.stage`` is the plain ResNet stage (Grad-CAM can hook either)."""

    def __init__(self, stage: nn.Module, cbam: CBAM):
        super().__init__()
        self.stage = stage
        self.cbam = cbam


class Ensemble(nn.Module):
    """``members`` networks of one architecture served as one: the mean of their logits
    (``average="logit"``) or the log of the mean of their softmax probabilities (``"prob"``;
    a softmax of it is that mean, so temperature scaling and thresholds apply unchanged).
    ``members_outputs`` gives each member's logits, for Grad-CAM and for measuring both."""

    def __init__(self, members: list[nn.Module], average: str = "logit"):
        super().__init__()
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, not {average!r}")
        self.members = nn.ModuleList(members)
        self.average = average

    def members_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """``(K, B, C)``: every member's logits."""
        return torch.stack([m(x) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return combine(self.members_outputs(x), self.average)


def combine(logits: torch.Tensor, average: str) -> torch.Tensor:
    """``(K, B, C)`` member logits -> ``(B, C)`` ensemble logits (see :class:`Ensemble`)."""
    if average == "logit":
        return logits.mean(0)
    if average == "prob":
        return torch.logsumexp(F.log_softmax(logits, dim=-1), dim=0) - math.log(len(logits))
    raise ValueError(f"average must be one of {AVERAGES}, not {average!r}")


def build_model(cfg: ModelConfig) -> nn.Module:
    """The network of ``cfg``: a ResNet-18, or an :class:`Ensemble` of ``cfg.members`` of them."""
    if cfg.members > 1:
        return Ensemble([build_model(cfg.member) for _ in range(cfg.members)], cfg.average)
    if cfg.members != 1:
        raise ValueError(f"members must be at least 1, not {cfg.members}")
    if cfg.stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, not {cfg.stem!r}")
    net = resnet18(weights=None, num_classes=cfg.num_classes)
    if cfg.stem != "standard":
        stride = 2 if cfg.stem == "compact" else 1
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=stride, padding=1, bias=False)
        net.maxpool = nn.Identity()
    if cfg.cbam:
        for name, ch in (("layer1", 64), ("layer2", 128), ("layer3", 256), ("layer4", 512)):
            block = CBAM(ch, cfg.cbam_reduction, cfg.cbam_kernel)
            setattr(net, name, StageWithCBAM(getattr(net, name), block))
    return net


def one_hot(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``(B, S, S)`` die states {0, 1, 2} -> float ``(B, 3, S, S)`` one-hot."""
    return F.one_hot(x.long(), 3).permute(0, 3, 1, 2).to(dtype)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
