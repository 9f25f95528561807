"""The train stage's model file (dvc.yaml's ``paths.model``), one load/save type:
:class:`Checkpoint` holds the weights and everything needed to rebuild the network (its
architecture, the class names, the input side in px, and ``extra``: the whole train section as
the run read it, the loss weights, the best epoch). Every reader of the file goes through it.

Saved as a plain dict of tensors and containers, so it loads with
``torch.load(weights_only=True)``: no code in a model file ever runs.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from wafer.config.sections import ShardParams, section_rules
from wafer.core.classes import CLASS_NAMES, MIXED_LABELS
from wafer.core.io import atomic_path
from wafer.model.net import ModelConfig, build_model

# the outputs of each task's model: the 9 WM-811K classes, MixedWM38's 8 labels
TASKS: dict[str, tuple[str, ...]] = {"wm811k": CLASS_NAMES, "mixed": MIXED_LABELS}


@dataclass(frozen=True)
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    config: ModelConfig
    input_size: int  # side in px of the maps it was trained on (shard.input_px)
    extra: dict = field(default_factory=dict)
    class_names: tuple[str, ...] = CLASS_NAMES

    @classmethod
    def of(
        cls,
        model: nn.Module,
        config: ModelConfig,
        input_size: int,
        extra: dict,
        class_names: tuple[str, ...] = CLASS_NAMES,
    ) -> Checkpoint:
        """The checkpoint of ``model``'s current weights (copied to the CPU); ``class_names``
        are its outputs' (the mixed-type task's 8 labels for its model)."""
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        return cls(state, config, int(input_size), extra, tuple(class_names))

    def payload(self) -> dict:
        """The dict that is saved (its keys in this order: the file's bytes depend on it)."""
        return {
            "state_dict": self.state_dict,
            "model_config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "input_size": int(self.input_size),
            "extra": self.extra,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically. Through a buffer: torch.save names the zip's root folder after the
        file, and the temp file's random name would make every checkpoint's bytes (and DVC
        hash) different."""
        data = self.to_bytes()
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)

    def to_bytes(self) -> bytes:
        """The file's bytes, as :meth:`save` writes them (the same checkpoint, the same bytes)."""
        buf = io.BytesIO()
        torch.save(self.payload(), buf)
        return buf.getvalue()

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        class_names: tuple[str, ...] | None = CLASS_NAMES,
        mmap: bool = False,
    ) -> Checkpoint:
        """Read and check a model file (``torch.load(weights_only=True)``: no code runs); a bad
        file, or one whose outputs are not ``class_names`` (a mixed-type model where a 9-class
        one is expected), raises ValueError with a one-line reason. ``class_names=None``
        accepts either task's model (:data:`TASKS`); ``.class_names`` then says which.
        ``mmap``: map the weights instead of reading them (for a look at the metadata only,
        such as which task a file serves; torch.save's zip format only)."""
        with open(path, "rb") as fh:
            head = fh.read(4)
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
            # torch.save writes a zip (or, in its legacy format, a pickle starting 0x80)
            raise ValueError("not a PyTorch checkpoint (neither a torch.save zip nor a pickle)")
        try:
            payload = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:
            if "global" in str(exc).lower():  # a class or function the file wants to rebuild
                # torch's own message suggests weights_only=False, which would run its code
                raise ValueError(
                    "holds objects other than tensors and plain containers, which only "
                    "unpickling could load and unpickling can run code: refused"
                ) from None
            raise ValueError("not a readable PyTorch checkpoint (corrupt pickle)") from None
        except (zipfile.BadZipFile, EOFError, RuntimeError, KeyError, IndexError) as exc:
            raise ValueError(f"not a readable PyTorch checkpoint ({type(exc).__name__})") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("model_config"), dict):
            raise ValueError("not a wafer checkpoint (no model_config)")
        # the shard.input_px rule: the sides the pipeline can train at
        why = section_rules(ShardParams)["input_px"].reason(payload.get("input_size"))
        if why:
            raise ValueError(f"input_size: {why}")
        names = tuple(payload.get("class_names", ()))
        if class_names is None and names not in TASKS.values():
            raise ValueError(f"class names {list(names)} are neither task's")
        if class_names is not None and names != tuple(class_names):
            raise ValueError(f"class names {list(names)} differ from {list(class_names)}")
        try:
            config = ModelConfig(**payload["model_config"])
        except TypeError as exc:
            raise ValueError(f"model_config: {exc}") from None
        return cls(
            payload["state_dict"],
            config,
            int(payload["input_size"]),
            payload.get("extra", {}),
            names,
        )

    @classmethod
    def ensemble(cls, members: list[Checkpoint], average: str, extra: dict) -> Checkpoint:
        """One checkpoint serving ``members`` (one architecture, input side and task) as an
        :class:`~wafer.model.net.Ensemble`; ``extra`` says where the members came from (the
        ensemble stage records each member file's SHA-256 and train options)."""
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, not {len(members)}")
        first = members[0]
        for i, m in enumerate(members):
            if m.config.members != 1:
                raise ValueError(f"member {i} is itself an ensemble")
            for what in ("config", "input_size", "class_names"):
                if getattr(m, what) != getattr(first, what):
                    raise ValueError(f"member {i}'s {what} differs from member 0's")
        state = {
            f"members.{i}.{k}": v for i, m in enumerate(members) for k, v in m.state_dict.items()
        }
        config = replace(first.config, members=len(members), average=average)
        return cls(state, config, first.input_size, extra, first.class_names)

    @property
    def task(self) -> str:
        """The task this model serves (a key of :data:`TASKS`)."""
        return next(k for k, v in TASKS.items() if v == tuple(self.class_names))

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The network with these weights, on ``device``, in eval mode."""
        model = build_model(self.config)
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()


def load_model(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    class_names: tuple[str, ...] | None = CLASS_NAMES,
) -> tuple[nn.Module, Checkpoint]:
    """The network of a model file, on ``device`` in eval mode, and its checkpoint."""
    ckpt = Checkpoint.load(path, device, class_names)
    return ckpt.build(device), ckpt
