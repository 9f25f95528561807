"""Starting a training from another model's weights (the mixed-type pipeline's ``train.init``:
the WM-811K 9-class checkpoint as donor, issue 24's transfer study).

The donor is named by path *and* SHA-256 (``train.init_sha256``): the params, and so
``dvc.lock``, then record exactly which weights a run started from, and a donor file replaced
under the same name stops the run instead of silently training from other weights (a path alone
in params would let DVC's run cache and ``dvc status`` take the new file for the old one).

What is copied: every tensor of the backbone (the stem, the four ResNet stages, CBAM when both
have it), and the head (``fc``) only when the donor's outputs are the new model's (same class
names): a 9-class donor's head means nothing for 8 labels, so the head starts fresh. A backbone
that does not match (another stem, CBAM on one side only) is refused with the first tensor that
differs, since a partial copy would be a different experiment than the one named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from torch import nn

from wafer.core.io import sha256_file
from wafer.model.checkpoint import Checkpoint

HEAD_PREFIX = "fc."  # torchvision ResNet's classifier


@dataclass(frozen=True)
class Transfer:
    """What :func:`transfer_weights` did (recorded in the train stage's metrics)."""

    donor: str  # the path as given in params
    donor_sha256: str
    donor_classes: tuple[str, ...]
    donor_input_size: int
    tensors: int  # tensors copied
    head_copied: bool

    def to_dict(self) -> dict:
        return {
            "donor": self.donor,
            "donor_sha256": self.donor_sha256,
            "donor_classes": list(self.donor_classes),
            "donor_input_size": self.donor_input_size,
            "tensors_copied": self.tensors,
            "head_copied": self.head_copied,
        }


def load_donor(path: str | os.PathLike, sha256: str) -> Checkpoint:
    """The donor checkpoint at ``path``, after checking that its bytes are the ones named by
    ``sha256``; either task's model is accepted. ValueError (one line) otherwise."""
    if not os.path.isfile(path):
        raise ValueError(f"train.init: no file {os.fspath(path)!r}")
    actual = sha256_file(path)
    if actual != sha256.lower():
        raise ValueError(
            f"train.init: {os.fspath(path)} has SHA-256 {actual}, train.init_sha256 says "
            f"{sha256}: not the donor the params name"
        )
    try:
        return Checkpoint.load(path, class_names=None)
    except ValueError as exc:
        raise ValueError(f"train.init: {os.fspath(path)}: {exc}") from None


def init_from_donor(
    model: nn.Module, path: str | os.PathLike, sha256: str, class_names: tuple[str, ...]
) -> Transfer:
    """:func:`load_donor` then :func:`transfer_weights`: what the train stage calls."""
    donor = load_donor(path, sha256)
    tensors, head = transfer_weights(model, donor, class_names)
    return Transfer(
        donor=os.fspath(path),
        donor_sha256=sha256.lower(),
        donor_classes=tuple(donor.class_names),
        donor_input_size=donor.input_size,
        tensors=tensors,
        head_copied=head,
    )


def transfer_weights(
    model: nn.Module, donor: Checkpoint, class_names: tuple[str, ...]
) -> tuple[int, bool]:
    """Copy ``donor``'s backbone (and its head when its outputs are ``class_names``) into
    ``model`` in place; the rest of ``model`` keeps its fresh initialisation. Returns the
    number of tensors copied and whether the head was among them."""
    target = model.state_dict()
    head = tuple(donor.class_names) == tuple(class_names)
    take = {}
    for name, tensor in target.items():
        if name.startswith(HEAD_PREFIX) and not head:
            continue
        src = donor.state_dict.get(name)
        if src is None or tuple(src.shape) != tuple(tensor.shape):
            got = "missing" if src is None else f"shape {tuple(src.shape)}"
            raise ValueError(
                f"train.init: the donor's {name} is {got}, the model's {tuple(tensor.shape)} "
                f"(donor: stem {donor.config.stem!r}, cbam {donor.config.cbam}): the "
                "architectures differ"
            )
        take[name] = src.to(dtype=tensor.dtype)
    extra = sorted(k for k in donor.state_dict if k not in target and not k.startswith(HEAD_PREFIX))
    if extra:
        raise ValueError(f"train.init: the donor has {extra[0]}, which the model has not")
    model.load_state_dict({**target, **take})
    return len(take), head
