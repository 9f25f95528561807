"""Stage `train`: ResNet-18 (+ optional CBAM) with class-weighted CE or focal loss.

Reads the shards (train + val), trains with AdamW + cosine schedule and D4 augmentation, stops
early on validation macro-F1, and writes the best weights to the checkpoint (atomic; it keeps
the whole `train` section), the per-epoch curves and a summary (paths from dvc.yaml).

With ``train.nproc: N`` (N > 1) the stage re-launches itself under ``torchrun`` as N
data-parallel processes on this machine (gloo on CPU, NCCL on CUDA); rank 0 alone writes the
outputs. Started by ``torchrun`` directly (several nodes: ``--nnodes``, ``--rdzv-endpoint``, see
README), it joins that process group instead and ``train.nproc`` is not used.

With ``--crossfit-params`` (``pipelines/crossfit/params.yaml``) it trains one of the models of
the cross-fitting pipeline, each for ``crossfit.epochs`` epochs (the rest is the recipe of
``train``), and exactly one of:

- ``--folds``/``--fold``: a member of the cross-fitted ensemble, on every training map but those
  of its fold, seeded ``train.seed + fold``;
- ``--soft-targets``: the distilled student, on targets that mix its teacher's probabilities
  (``student.teacher``: the out-of-fold logits, or the served ensemble's in-sample ones; at
  ``student.temperature``) with the labels (``student.alpha`` of the former;
  wafer.model.losses.soft_targets); with ``student.start: root`` (and ``--root-model``) it
  starts from the root's model and trains ``ensemble.finetune_epochs`` epochs at
  ``ensemble.finetune_lr``, as a warm-started seed member does;
- ``--label-issues``: the cleaned-label model, without the maps the label-noise audit flagged
  (``audit.weight: 0``), or with their loss weighed by ``audit.weight``.

With ``--seed-member S`` (with ``--crossfit-params`` for its ``ensemble`` section and
``--root-model``) it trains a member of the cross-fitting pipeline's seed ensemble
(``ensemble.members: seeds``) on every training map with ``train.seed = S``: with
``ensemble.start: scratch`` the root's recipe exactly; with ``start: root`` it starts from the
root's model (same architecture and input size, checked) and trains ``ensemble.finetune_epochs``
epochs at ``ensemble.finetune_lr`` (a warm restart; the rest is the recipe), and its checkpoint
records the root model's SHA-256.

With ``WAFER_RESUME_DIR`` set, a killed run resumes after its last finished epoch, to the same
result (:mod:`wafer.model.resume`, docs/TRAINING.md).
"""

import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import typer

from wafer.config.crossfit import AuditParams, CrossfitParams, EnsembleParams, StudentParams
from wafer.config.params import config_from, load_section
from wafer.config.sections import TrainParams
from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import UsageError, WaferInputError, one_line_errors
from wafer.core.io import sha256_file, write_csv, write_json, write_timing
from wafer.data.crossfit import FoldsFile, read_label_issues, teacher_logits
from wafer.data.files import Shard, load_shard
from wafer.model.checkpoint import Checkpoint
from wafer.model.losses import make_loss
from wafer.model.losses import soft_targets as soft_targets_of
from wafer.model.net import ModelConfig, build_model, count_parameters
from wafer.model.train import (
    TrainConfig,
    finish_distributed,
    fit,
    init_distributed,
    resolve_device,
    seed_everything,
    time_limit_env,
    torchrun_command,
)

app = typer.Typer(add_completion=False)


CURVE_COLUMNS = ["epoch", "train_loss", "val_loss", "val_macro_f1", "lr"]


def _curve_rows(history: list[dict]) -> list[list]:
    return [
        [round(v, 6) if isinstance(v, float) else v for v in (row[c] for c in CURVE_COLUMNS)]
        for row in history
    ]


def timing_name(
    fold: int | None, seed_member: int | None, soft_targets: Path | None, label_issues: Path | None
) -> str:
    """metrics/timing/<name>.json: the DVC stage's name with @ as _ (the root's model ``train``,
    ``train_member_<fold>``, ``train_seed_<seed>``, ``train_student``, ``train_cleaned``), which
    scripts/crossfit_outputs.timing_file looks for; the modes are exclusive (main checks)."""
    if fold is not None:
        return f"train_member_{fold}"
    if seed_member is not None:
        return f"train_seed_{seed_member}"
    if soft_targets is not None:
        return "train_student"
    if label_issues is not None:
        return "train_cleaned"
    return "train"


def warm_restart(
    root_model: Path | None, p: TrainParams, ep: EnsembleParams, who: str
) -> tuple[Checkpoint, TrainParams]:
    """A warm restart from the root's model (``who``'s ``start: root``: a seed member's or the
    student's): its weights first, then ``ensemble.finetune_epochs`` epochs at
    ``ensemble.finetune_lr``. Its architecture must be the one the recipe builds, or its weights
    would not be this recipe's."""
    if root_model is None:
        raise UsageError(f"{who}.start: root needs --root-model")
    start, cfg = Checkpoint.load(root_model), config_from(ModelConfig, p)
    if start.config != cfg:
        theirs, ours = asdict(start.config), asdict(cfg)
        diff = ", ".join(sorted(k for k in ours if ours[k] != theirs.get(k)))
        raise WaferInputError(root_model, f"is another architecture than train's ({diff} differ)")
    return start, replace(p, epochs=ep.finetune_epochs, lr=ep.finetune_lr)


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section train)"),
    shards: Path = typer.Option(..., "--shards"),
    model_out: Path = typer.Option(..., "--model-out"),
    curves: Path = typer.Option(..., "--curves"),
    metrics: Path = typer.Option(..., "--metrics"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    folds: Path | None = typer.Option(
        None,
        "--folds",
        help="cross-fitting (pipelines/crossfit): the folds file; train a member on every "
        "training map but those of --fold",
    ),
    fold: int | None = typer.Option(None, "--fold", help="the fold this member leaves out"),
    soft_targets: Path | None = typer.Option(
        None,
        "--soft-targets",
        help="distilled student (pipelines/crossfit): its teacher's logits file (student.teacher: "
        "oof or insample); learn from them as well as from the labels",
    ),
    label_issues: Path | None = typer.Option(
        None,
        "--label-issues",
        help="cleaned-label model (pipelines/crossfit): the audit's list of flagged maps; "
        "leave them out or down-weight them (audit.weight)",
    ),
    seed_member: int | None = typer.Option(
        None,
        "--seed-member",
        help="seed ensemble (pipelines/crossfit, ensemble.members: seeds): the root's model "
        "trained again on every training map with this train.seed",
    ),
    root_model: Path | None = typer.Option(
        None,
        "--root-model",
        help="with --seed-member or --soft-targets: the root's model, the first weights with "
        "ensemble.start: root (a seed member) or student.start: root (the student)",
    ),
    crossfit_params: Path | None = typer.Option(
        None,
        "--crossfit-params",
        help="pipelines/crossfit's params.yaml (crossfit.epochs, ensemble, student, audit), "
        "with one of --folds/--fold, --soft-targets, --label-issues, --seed-member",
    ),
) -> None:
    p = load_section(params, TrainParams)
    modes = (
        folds is not None or fold is not None,
        soft_targets is not None,
        label_issues is not None,
        seed_member is not None,
    )
    if sum(modes) > 1 or any(modes) != (crossfit_params is not None):
        raise UsageError(
            "--crossfit-params goes with exactly one of --folds/--fold, --soft-targets, "
            "--label-issues, --seed-member"
        )
    if root_model is not None and seed_member is None and soft_targets is None:
        raise UsageError("--root-model goes with --seed-member or --soft-targets")
    if seed_member is not None and root_model is None:
        raise UsageError("--seed-member needs --root-model")
    member = student = cleaned = start = None
    if crossfit_params is not None and seed_member is None:
        # every cross-fitted model: the pipeline's epoch budget (a seed member: the root's own)
        p = replace(p, epochs=load_section(crossfit_params, CrossfitParams).epochs)
    if folds is not None or fold is not None:
        if folds is None or fold is None:
            raise UsageError("--folds and --fold go together")
        p = replace(p, seed=p.seed + fold)  # a seed of its own (its maps differ too)
        member = {"fold": fold, "folds_sha256": sha256_file(folds)}
    if seed_member is not None:
        if seed_member == p.seed or seed_member < 0:
            raise UsageError(
                f"--seed-member {seed_member}: not the root's train.seed ({p.seed}), whose model "
                "is the seed ensemble's first member already, and not negative"
            )
        member = {"seed": seed_member}
        ep = load_section(crossfit_params, EnsembleParams)
        if ep.start == "root":
            start, p = warm_restart(root_model, p, ep, "ensemble")
            member |= {"start": "root", "root_sha256": sha256_file(root_model)}
        p = replace(p, seed=seed_member)
    if soft_targets is not None:
        sp = load_section(crossfit_params, StudentParams)
        student = {**asdict(sp), f"{sp.teacher}_sha256": sha256_file(soft_targets)}
        if sp.start == "root":
            ep = load_section(crossfit_params, EnsembleParams)
            start, p = warm_restart(root_model, p, ep, "student")
            student |= {"root_sha256": sha256_file(root_model)}
    if label_issues is not None:
        ap = load_section(crossfit_params, AuditParams)
        cleaned = {"weight": ap.weight, "label_issues_sha256": sha256_file(label_issues)}
    if p.nproc > 1 and "WORLD_SIZE" not in os.environ:  # not yet under torchrun: launch it
        cmd, env = torchrun_command(p.nproc, [str(Path(__file__)), *sys.argv[1:]])
        raise SystemExit(subprocess.run(cmd, env=env).returncode)
    d = init_distributed(p.device)
    train, val = load_shard(shards, "train", mmap=False), load_shard(shards, "val", mmap=False)
    if folds is not None:
        held = FoldsFile.load(folds).held_out(fold, train.rows)
        train = Shard(train.x[~held], train.y[~held], train.rows[~held])
    y_train = train.y
    if student is not None:
        t_logits, t_y, t_rows = teacher_logits(soft_targets, sp.teacher)
        if not np.array_equal(t_rows, train.rows) or not np.array_equal(t_y, train.y):
            raise WaferInputError(soft_targets, "does not hold the training shard's maps")
        y_train = soft_targets_of(train.y, t_logits, sp.alpha, sp.temperature)
    if cleaned is not None:
        flagged = np.isin(train.rows, read_label_issues(label_issues).rows)
        cleaned["flagged_training_maps"] = int(flagged.sum())
        if ap.weight == 0:  # left out
            train = Shard(train.x[~flagged], train.y[~flagged], train.rows[~flagged])
            y_train = train.y
        else:  # the loss is linear in its target: a target row of sum w weighs the map by w
            y_train = np.eye(len(CLASS_NAMES), dtype=np.float32)[train.y]
            y_train[flagged] *= ap.weight
    cfg = config_from(ModelConfig, p)
    seed_everything(p.seed)  # train.seed drives the initial weights too
    model = build_model(cfg)
    if start is not None:
        if start.input_size != train.size:
            raise WaferInputError(
                root_model, f"trained on {start.input_size}-px maps, the shards are {train.size}-px"
            )
        model.load_state_dict(start.state_dict)
    tcfg = config_from(TrainConfig, p, progress=progress)
    criterion, loss_weights = make_loss(p.loss, train.y, p.focal_gamma, p.focal_alpha or None)
    history: list[dict] = []

    def on_epoch(row: dict) -> None:  # live curves: rewritten after every epoch
        history.append(row)
        write_csv(curves, CURVE_COLUMNS, _curve_rows(history))

    limit = time_limit_env()
    result = fit(
        model, criterion, train.x, y_train, val.x, val.y, tcfg, on_epoch=on_epoch, time_limit=limit
    )
    finish_distributed()
    if not d.main:  # rank 0 writes every output
        return
    model.load_state_dict(result.best_state)
    extra = {
        "train": asdict(p),  # every training option, as this run read it
        "loss_weights": loss_weights,
        "best_epoch": result.best_epoch,
    }
    if member is not None:
        extra["crossfit"] = member
    if student is not None:
        extra["student"] = student
    if cleaned is not None:
        extra["cleaned"] = cleaned
    Checkpoint.of(model, cfg, train.size, extra).save(model_out)
    write_json(
        metrics,
        {
            "best_epoch": result.best_epoch,
            "best_val_macro_f1": result.best_val_macro_f1,
            "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early,
            "parameters": count_parameters(model),
            "input_size": train.size,
            # only a bounded run (WAFER_TRAIN_TIME_LIMIT) says so: it changes the result
            **(
                {"time_limit_s": limit, "stopped_at_time_limit": result.stopped_at_time_limit}
                if limit is not None
                else {}
            ),
        },
    )
    write_timing(
        timing_name(fold, seed_member, soft_targets, label_issues),
        {
            "train_seconds": result.train_seconds,
            "train_maps_per_s": result.train_maps_per_s,
            "epochs_run": result.epochs_run,
            "device": str(resolve_device(p.device)),
            "threads": torch.get_num_threads(),
            "processes": d.world,
            "resumed_after_epoch": result.resumed_after,
            "first_step_s": result.first_step_seconds,  # CUDA only: start-up, cuDNN autotuning
            "epoch_s": [round(t, 3) for t in result.epoch_seconds],  # training + validation
        },
    )
    if result.resume_file is not None:  # the outputs are written: the saved state is done
        result.resume_file.unlink(missing_ok=True)
    print(
        f"train: best epoch {result.best_epoch}, val macro-F1 {result.best_val_macro_f1:.4f}, "
        f"{result.train_maps_per_s:.0f} maps/s"
    )


if __name__ == "__main__":
    app()
