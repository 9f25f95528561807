"""The ensemble members' files (pipelines/crossfit), read and checked in one place:

- the cross-fitted members (dvc.yaml's ``train_member@k`` outputs, ``<members>/<k>.pt``): member
  k must have been trained as member k of this folds file (its checkpoint records its fold and
  the folds file's SHA-256);
- the seed members (``train_seed@s``, ``<seeds>/<s>.pt``): the root's model first, then each
  seed's, which must have been trained as the seed member ``s`` of the root's recipe (or, with
  ``ensemble.start: root``, started from this root model).

:func:`served_ensemble` builds the served checkpoint from them: the `ensemble` stage writes it,
and scripts/build_ensemble.py rebuilds a saved run's byte for byte from its member files."""

from __future__ import annotations

from pathlib import Path

from wafer.config.crossfit import EnsembleParams
from wafer.core.errors import UsageError, WaferInputError
from wafer.core.io import sha256_file
from wafer.data.crossfit import FoldsFile
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
    root_model: Path, seeds_dir: Path, ensemble: EnsembleParams
) -> list[tuple[Path, Checkpoint]]:
    """The root's model and the seed members' files and checkpoints (on the CPU), in that order.
    A member must have been trained as the seed member ``s`` of ``ensemble.seeds``: with
    ``ensemble.start: scratch`` at the root model's recipe (its train options but the seed);
    with ``start: root`` started from this very root model (its SHA-256) for
    ``ensemble.finetune_epochs`` at ``ensemble.finetune_lr``. Otherwise WaferInputError names
    it."""
    root = Checkpoint.load(root_model)
    root_sha = sha256_file(root_model)
    out = [(Path(root_model), root)]
    for seed in ensemble.seeds:
        path = member_file(seeds_dir, seed)
        ckpt = Checkpoint.load(path)
        made = ckpt.extra.get("crossfit")
        trained = ckpt.extra.get("train") or {}
        if ensemble.start == "scratch":
            want = {"seed": seed}
            expect = {**(root.extra.get("train") or {}), "seed": seed}
        else:
            want = {"seed": seed, "start": "root", "root_sha256": root_sha}
            expect = {
                **trained,
                "seed": seed,
                "epochs": ensemble.finetune_epochs,
                "lr": ensemble.finetune_lr,
            }
        if made != want:
            how = "" if ensemble.start == "scratch" else f" started from {root_model}"
            raise WaferInputError(path, f"was not trained as the seed member {seed}{how}")
        if trained != expect:
            diff = sorted(k for k in set(expect) | set(trained) if expect.get(k) != trained.get(k))
            raise WaferInputError(
                path, f"trained at another recipe than {root_model} ({', '.join(diff)} differ)"
            )
        out.append((path, ckpt))
    return out


def root_ckpt_seed(chosen: list[tuple[Path, Checkpoint]]) -> int | None:
    """The train.seed the root's model (the first seed member) was trained with."""
    return (chosen[0][1].extra.get("train") or {}).get("seed")


def served_ensemble(
    ensemble: EnsembleParams,
    *,
    root_model: Path,
    seeds: Path,
    members: Path | None = None,
    folds: Path | None = None,
) -> tuple[Checkpoint, list[tuple[Path, Checkpoint]]]:
    """The served ensemble checkpoint of ``ensemble.members`` (the K cross-fitted members of
    ``folds`` in ``members``, or the root's model and the seed members in ``seeds``), each member
    checked as above, and the members it holds. Its extra records how the members were made and
    each member file's name, SHA-256 and train options, so the same files give the same bytes
    (the calibration fit on its logits names its SHA-256). A member set that cannot be averaged
    (another architecture or input size) raises WaferInputError."""
    if ensemble.members == "folds":
        if members is None or folds is None:
            raise UsageError(
                "ensemble.members: folds needs the members' folder and the folds file "
                "(--members, --folds)"
            )
        chosen = load_members(members, folds, FoldsFile.load(folds).k)
        source: dict = {"members_from": "folds", "folds_sha256": sha256_file(folds)}
    else:
        chosen = load_seed_members(root_model, seeds, ensemble)
        source = {
            "members_from": "seeds",
            "seeds": [root_ckpt_seed(chosen), *ensemble.seeds],
            "start": ensemble.start,
            **(
                {"finetune_epochs": ensemble.finetune_epochs, "finetune_lr": ensemble.finetune_lr}
                if ensemble.start == "root"
                else {}
            ),
        }
    extra = {
        "ensemble": {
            "average": ensemble.average,
            **source,
            "members": [
                {"file": path.name, "sha256": sha256_file(path), "train": c.extra.get("train")}
                for path, c in chosen
            ],
        }
    }
    try:
        ckpt = Checkpoint.ensemble([c for _, c in chosen], ensemble.average, extra)
    except ValueError as exc:
        raise WaferInputError(members if ensemble.members == "folds" else seeds, str(exc)) from None
    return ckpt, chosen
