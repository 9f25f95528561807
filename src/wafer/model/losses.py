"""Class-weighted cross-entropy and focal loss (Lin et al. 2017) for the imbalanced classes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wafer.core.classes import NUM_CLASSES


def balanced_class_weights(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """scikit-learn's 'balanced' weights n / (k * n_c) on the classes present; absent classes 0.

    Computed on the train split only.
    """
    present = np.unique(labels)
    from sklearn.utils.class_weight import compute_class_weight  # ~2 s to import: only here

    w = compute_class_weight("balanced", classes=present, y=labels)
    out = np.zeros(num_classes, dtype=np.float64)
    out[present] = w
    return out


class FocalLoss(nn.Module):
    """Mean over the batch of ``-alpha_y (1 - p_y)^gamma log p_y``. With soft targets (float
    ``(B, C)`` rows summing to 1, a distilled student's) the expectation of that over them,
    ``-sum_c t_c alpha_c (1 - p_c)^gamma log p_c``: with one-hot rows, the same loss.

    ``gamma = 0`` with no ``alpha`` is exactly cross-entropy. ``alpha`` (optional per-class
    weights) is off by default: the seed found focal + class weights unstable.
    """

    def __init__(self, gamma: float, alpha: Sequence[float] | None = None):
        super().__init__()
        self.gamma = float(gamma)
        self.register_buffer(
            "alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.is_floating_point():  # soft targets (B, C): the expectation over them
            logp_all = F.log_softmax(logits.float(), dim=1)
            per = -((1.0 - logp_all.exp()).clamp(min=0.0) ** self.gamma) * logp_all
            if self.alpha is not None:
                per = per * self.alpha
            return (target * per).sum(dim=1).mean()
        logp = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
        loss = -((1.0 - logp.exp()).clamp(min=0.0) ** self.gamma) * logp
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()


def soft_targets(
    labels: np.ndarray, teacher_logits: np.ndarray, alpha: float, temperature: float
) -> np.ndarray:
    """Distillation targets ``(N, C)`` float32: ``alpha`` x the teacher's probabilities at
    ``temperature`` + (1 - ``alpha``) x the one-hot labels. A loss linear in its target
    (cross-entropy, the focal loss above) on these is that mix of the two losses."""
    z = teacher_logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    hard = np.eye(teacher_logits.shape[1])[np.asarray(labels, dtype=np.int64)]
    return (alpha * p + (1.0 - alpha) * hard).astype(np.float32)


def make_loss(
    name: str,
    train_labels: np.ndarray,
    focal_gamma: float,
    focal_alpha: Sequence[float] | None = None,
) -> tuple[nn.Module, list[float] | None]:
    """``ce``: class-weighted CE ('balanced' weights from the train labels); ``focal``: focal
    loss with ``focal_gamma`` and optional ``focal_alpha``. Returns the loss and its weights."""
    if name == "ce":
        w = balanced_class_weights(train_labels)
        return nn.CrossEntropyLoss(weight=torch.as_tensor(w, dtype=torch.float32)), w.tolist()
    if name == "focal":
        return FocalLoss(focal_gamma, focal_alpha), None if focal_alpha is None else list(
            focal_alpha
        )
    raise ValueError(f"loss must be 'ce' or 'focal', not {name!r}")


# --------------------------------------------------------------------------- multi-label


class BinaryFocalLoss(nn.Module):
    """Multi-label losses on sigmoid outputs, mean over the batch and the labels, for float
    multi-hot targets ``(B, L)``:

    * ``gamma_pos = gamma_neg = 0``, ``clip = 0``: binary cross-entropy;
    * ``gamma_pos = gamma_neg = gamma``: focal BCE (Lin et al. 2017, on each label);
    * ``gamma_neg > gamma_pos`` and ``clip > 0``: the asymmetric loss (ASL, Ridnik et al.
      2021): negatives are focused harder and those with ``p < clip`` are dropped, which
      suits labels that are mostly absent.

    ``L = -[y (1 - p)^gamma_pos log p + (1 - y) p_m^gamma_neg log(1 - p_m)]``, ``p_m =
    max(p - clip, 0)``; log-sigmoid terms keep it finite at any logit.
    """

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 0.0, clip: float = 0.0):
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.clip = float(gamma_pos), float(gamma_neg), float(clip)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        z, y = logits.float(), target.float()
        p = torch.sigmoid(z)
        log_p, log_not_p = F.logsigmoid(z), F.logsigmoid(-z)
        if self.clip > 0:
            p_m = (p - self.clip).clamp(min=0.0)
            log_not_p = torch.log1p(-p_m.clamp(max=1.0 - 1e-6))
        else:
            p_m = p
        pos = y * (1.0 - p) ** self.gamma_pos * log_p
        neg = (1.0 - y) * p_m**self.gamma_neg * log_not_p
        return -(pos + neg).mean()


def make_multilabel_loss(
    name: str, focal_gamma: float, asl_gamma_neg: float, asl_clip: float
) -> nn.Module:
    """``bce`` | ``focal`` (``focal_gamma`` on both sides) | ``asl`` (``focal_gamma`` on the
    positives, ``asl_gamma_neg`` and ``asl_clip`` on the negatives)."""
    if name == "bce":
        return BinaryFocalLoss()
    if name == "focal":
        return BinaryFocalLoss(focal_gamma, focal_gamma)
    if name == "asl":
        return BinaryFocalLoss(focal_gamma, asl_gamma_neg, asl_clip)
    raise ValueError(f"loss must be 'bce', 'focal' or 'asl', not {name!r}")
