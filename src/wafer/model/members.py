"""The ensemble members' files (pipelines/crossfit), read and checked in one place:

- the cross-fitted members (dvc.yaml's ``train_member@k`` outputs, ``<members>/<k>.pt``): member
  k must have been trained as member k of this folds file (its checkpoint records its fold and
  the folds file's SHA-256);
- the seed members (``train_seed@s``, ``<seeds>/<s>.pt``): the root's model first, then each
  seed's, which must have been trained as the seed member ``s`` of the root's recipe."""

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


def load_seed_members(
    root_model: Path, seeds_dir: Path, seeds: list[int]
) -> list[tuple[Path, Checkpoint]]:
    """The root's model and the seed members' files and checkpoints (on the CPU), in that order;
    a file trained otherwise, or at another recipe than the root's model, raises
    WaferInputError naming it."""

    def recipe(ckpt: Checkpoint) -> dict:  # its train options but the seed
        return {k: v for k, v in (ckpt.extra.get("train") or {}).items() if k != "seed"}

    root = Checkpoint.load(root_model)
    out = [(Path(root_model), root)]
    ours = recipe(root)
    for seed in seeds:
        path = member_file(seeds_dir, seed)
        ckpt = Checkpoint.load(path)
        if ckpt.extra.get("crossfit") != {"seed": seed}:
            raise WaferInputError(path, f"was not trained as the seed member {seed}")
        theirs = recipe(ckpt)
        if theirs != ours:
            diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            raise WaferInputError(
                path, f"trained at another recipe than {root_model} ({', '.join(diff)} differ)"
            )
        out.append((path, ckpt))
    return out
