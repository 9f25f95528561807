"""The cross-fitted members' files (pipelines/crossfit: dvc.yaml's ``train_member@k`` outputs,
``<members>/<k>.pt``), read and checked in one place: member k must have been trained as member
k of this folds file (its checkpoint records its fold and the folds file's SHA-256)."""

from __future__ import annotations

from pathlib import Path

from wafer.core.errors import WaferInputError
from wafer.core.io import sha256_file
from wafer.model.checkpoint import Checkpoint


def member_file(members: Path, fold: int) -> Path:
    """Member ``fold``'s file in the members folder."""
    return Path(members) / f"{fold}.pt"


def load_members(members: Path, folds: Path, k: int) -> list[tuple[Path, Checkpoint]]:
    """The K members' files and checkpoints (on the CPU), in fold order; a member trained for
    another fold or folds file raises WaferInputError naming it."""
    folds_sha = sha256_file(folds)
    out = []
    for fold in range(k):
        path = member_file(members, fold)
        ckpt = Checkpoint.load(path)
        made = ckpt.extra.get("crossfit", {})
        if made.get("fold") != fold or made.get("folds_sha256") != folds_sha:
            raise WaferInputError(path, f"was not trained as member {fold} of {folds}")
        out.append((path, ckpt))
    return out
