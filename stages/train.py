"""Stage `train`: ResNet-18 (+ optional CBAM) with class-weighted CE or focal loss.

Reads data/shards (train + val), trains with AdamW + cosine schedule and D4 augmentation, stops
early on validation macro-F1, and writes the best weights to models/model.pt (atomic), the
per-epoch curves to plots/train_curves.csv and a summary to metrics/train.json.

With ``--nproc N`` (``train.nproc``) the stage re-launches itself under ``torchrun`` as N
data-parallel processes on this machine (gloo on CPU, NCCL on CUDA); rank 0 alone writes the
outputs. Started by ``torchrun`` directly (several nodes: ``--nnodes``, ``--rdzv-endpoint``, see
README), it joins that process group instead and ``--nproc`` is not used.
"""

import os
import subprocess
import sys
from pathlib import Path

import torch
import typer

from wafer.cli_util import one_line_errors
from wafer.data import load_shard
from wafer.io import write_csv, write_json, write_timing
from wafer.losses import make_loss
from wafer.model import ModelConfig, build_model, count_parameters, save_checkpoint
from wafer.params import check_args, rules
from wafer.train import (
    TrainConfig,
    finish_distributed,
    fit,
    init_distributed,
    resolve_device,
    seed_everything,
    torchrun_command,
)

app = typer.Typer(add_completion=False)


CURVE_COLUMNS = ["epoch", "train_loss", "val_loss", "val_macro_f1", "lr"]


def _curve_rows(history: list[dict]) -> list[list]:
    return [
        [round(v, 6) if isinstance(v, float) else v for v in (row[c] for c in CURVE_COLUMNS)]
        for row in history
    ]


@app.command()
@one_line_errors
def main(
    loss: str = typer.Option("focal", "--loss", help="'ce' (class-weighted) or 'focal'"),
    focal_gamma: float = typer.Option(2.0, "--focal_gamma", "--focal-gamma"),
    focal_alpha: list[float] = typer.Option(
        [], "--focal_alpha", "--focal-alpha", help="optional per-class alpha (repeat 9 times)"
    ),
    cbam: bool = typer.Option(True, "--cbam/--no-cbam", help="CBAM after each ResNet stage"),
    cbam_reduction: int = typer.Option(16, "--cbam_reduction", "--cbam-reduction"),
    stem: str = typer.Option("compact", "--stem", help="standard | compact | cifar"),
    epochs: int = typer.Option(8, "--epochs"),
    lr: float = typer.Option(1e-3, "--lr"),
    weight_decay: float = typer.Option(1e-4, "--weight_decay", "--weight-decay"),
    batch_size: int = typer.Option(64, "--batch_size", "--batch-size"),
    patience: int = typer.Option(3, "--patience", help="epochs without val macro-F1 gain"),
    seed: int = typer.Option(0, "--seed", help="init + data order (not the split seed)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | mps"),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="random D4 views"),
    precision: str = typer.Option(
        "fp32", "--precision", help="training forward pass: fp32 | bf16 (inference is fp32)"
    ),
    ema_decay: float = typer.Option(
        0.0, "--ema_decay", "--ema-decay", help="EMA of the weights per step (0 = off)"
    ),
    nproc: int = typer.Option(
        1, "--nproc", help="data-parallel processes on this machine (>1: launched by torchrun)"
    ),
    shards: Path = typer.Option(Path("data/shards"), "--shards"),
    model_out: Path = typer.Option(Path("models/model.pt"), "--model-out"),
    curves: Path = typer.Option(Path("plots/train_curves.csv"), "--curves"),
    metrics: Path = typer.Option(Path("metrics/train.json"), "--metrics"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    check_args("train", locals())
    # every training option, kept in the checkpoint (the params section as this run saw it)
    options = {k: v for k, v in locals().items() if k in rules()["train"]}
    if nproc > 1 and "WORLD_SIZE" not in os.environ:  # not yet under torchrun: launch it
        cmd, env = torchrun_command(nproc, [str(Path(__file__)), *sys.argv[1:]])
        raise SystemExit(subprocess.run(cmd, env=env).returncode)
    d = init_distributed(device)
    train, val = load_shard(shards, "train", mmap=False), load_shard(shards, "val", mmap=False)
    cfg = ModelConfig(stem=stem, cbam=cbam, cbam_reduction=cbam_reduction)
    seed_everything(seed)  # train.seed drives the initial weights too
    model = build_model(cfg)
    tcfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        patience=patience,
        seed=seed,
        device=device,
        augment=augment,
        precision=precision,
        ema_decay=ema_decay,
        progress=progress,
    )
    criterion, loss_weights = make_loss(loss, train.y, focal_gamma, focal_alpha or None)
    history: list[dict] = []

    def on_epoch(row: dict) -> None:  # live curves: rewritten after every epoch
        history.append(row)
        write_csv(curves, CURVE_COLUMNS, _curve_rows(history))

    result = fit(model, criterion, train.x, train.y, val.x, val.y, tcfg, on_epoch=on_epoch)
    finish_distributed()
    if not d.main:  # rank 0 writes every output
        return
    model.load_state_dict(result.best_state)
    save_checkpoint(
        model_out,
        model,
        cfg,
        train.size,
        extra={
            "train": options,
            "loss_weights": loss_weights,
            "best_epoch": result.best_epoch,
        },
    )
    write_json(
        metrics,
        {
            "best_epoch": result.best_epoch,
            "best_val_macro_f1": result.best_val_macro_f1,
            "epochs_run": result.epochs_run,
            "stopped_early": result.stopped_early,
            "parameters": count_parameters(model),
            "input_size": train.size,
        },
    )
    write_timing(
        "train",
        {
            "train_seconds": result.train_seconds,
            "train_maps_per_s": result.train_maps_per_s,
            "epochs_run": result.epochs_run,
            "device": str(resolve_device(device)),
            "threads": torch.get_num_threads(),
            "processes": d.world,
        },
    )
    print(
        f"train: best epoch {result.best_epoch}, val macro-F1 {result.best_val_macro_f1:.4f}, "
        f"{result.train_maps_per_s:.0f} maps/s"
    )


if __name__ == "__main__":
    app()
