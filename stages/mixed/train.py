"""Stage `train` of the mixed-type pipeline: the 9-class pipeline's ResNet-18 (+ CBAM) with 8
sigmoid outputs, trained by the same loop (wafer.model.train.fit: AdamW + cosine, D4
augmentation, bf16 autocast or EMA as params) on a multi-label loss (`train.loss`: bce, focal
or asl; wafer.model.losses.make_multilabel_loss), stopping early on validation macro-F1 at
p >= 0.5 (wafer.mixed.metrics.logits_macro_f1). The checkpoint names the 8 labels as its
outputs, so a 9-class tool refuses it.

Transfer study (issue 24): `train.fraction` trains on a stratified share of the training split
(wafer.mixed.split.stratified_subset; validation is never cut), passed whole several times an
epoch when it is much smaller than `train.epoch_maps` (wafer.mixed.split.epoch_rows), and
`train.init` with `train.init_sha256` starts from a donor's backbone (wafer.model.transfer: the
WM-811K 9-class checkpoint); both are recorded in metrics/train.json.

With ``WAFER_RESUME_DIR`` set, a killed run resumes after its last finished epoch, to the same
result (wafer.model.resume)."""

from dataclasses import asdict
from pathlib import Path

import torch
import typer

from wafer.config.mixed import MixedTrainParams
from wafer.config.params import config_from, load_section
from wafer.config.rules import ParamError
from wafer.core.errors import one_line_errors
from wafer.core.io import write_csv, write_json, write_timing
from wafer.data.files import load_shard
from wafer.mixed.labels import MIXED_LABELS
from wafer.mixed.metrics import logits_macro_f1
from wafer.mixed.split import epoch_rows, stratified_subset
from wafer.model.checkpoint import Checkpoint
from wafer.model.losses import make_multilabel_loss
from wafer.model.net import ModelConfig, build_model, count_parameters
from wafer.model.train import TrainConfig, fit, resolve_device, seed_everything
from wafer.model.transfer import init_from_donor

app = typer.Typer(add_completion=False)
CURVE_COLUMNS = ["epoch", "train_loss", "val_loss", "val_macro_f1", "lr"]


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params"),
    shards: Path = typer.Option(..., "--shards"),
    model_out: Path = typer.Option(..., "--model-out"),
    curves: Path = typer.Option(..., "--curves"),
    metrics: Path = typer.Option(..., "--metrics"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    p = load_section(params, MixedTrainParams)
    train, val = load_shard(shards, "train", mmap=False), load_shard(shards, "val", mmap=False)
    cfg = config_from(ModelConfig, p, num_classes=len(MIXED_LABELS))
    seed_everything(p.seed)  # train.seed drives the initial weights too
    model = build_model(cfg)
    try:  # a donor that is not the one named, or of another architecture: one line
        transfer = (
            init_from_donor(model, p.init, p.init_sha256, MIXED_LABELS).to_dict()
            if p.init
            else None
        )
    except ValueError as exc:
        raise ParamError(str(exc)) from None
    keep = stratified_subset(train.y, p.fraction, p.seed)
    epoch = epoch_rows(keep, p.epoch_maps)
    x_train, y_train = train.x[epoch], train.y[epoch]
    criterion = make_multilabel_loss(p.loss, p.focal_gamma, p.asl_gamma_neg, p.asl_clip)
    history: list[dict] = []

    def on_epoch(row: dict) -> None:  # live curves: rewritten after every epoch
        history.append(row)
        write_csv(curves, CURVE_COLUMNS, [[round(r[c], 6) for c in CURVE_COLUMNS] for r in history])

    tcfg = config_from(TrainConfig, p, progress=progress)
    result = fit(
        model, criterion, x_train, y_train, val.x, val.y, tcfg, on_epoch, score=logits_macro_f1
    )
    model.load_state_dict(result.best_state)
    extra = {"train": asdict(p), "best_epoch": result.best_epoch}
    Checkpoint.of(model, cfg, train.size, extra, class_names=MIXED_LABELS).save(model_out)
    write_json(
        metrics,
        {
            "best_epoch": result.best_epoch,
            "best_val_macro_f1": result.best_val_macro_f1,
            "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early,
            "parameters": count_parameters(model),
            "input_size": train.size,
            "train_maps": len(keep),
            "epoch_maps": len(epoch),
            "init": transfer,
        },
    )
    write_timing(
        "train",
        {
            "train_seconds": result.train_seconds,
            "train_maps_per_s": result.train_maps_per_s,
            "epochs_run": result.epochs_run,
            "device": str(resolve_device(p.device)),
            "threads": torch.get_num_threads(),
            "resumed_after_epoch": result.resumed_after,
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
