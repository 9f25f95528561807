"""Is the data pipeline the bottleneck? Train-stage throughput against model-only throughput.

Measures, in one run and on the same device, batch size and input size:

* pipeline: ``wafer.model.train.fit`` (the train stage's loop: uint8 batch indexing, transfer,
random
  D4 augmentation and one-hot on the device, forward, loss, backward, AdamW step), maps/s over
  the training loop only;
* model-only: forward + backward + AdamW step of the same model on a pre-built float one-hot
  tensor that never changes.

The ratio pipeline / model-only is the share of the model's speed that the full loop keeps
(1.0 = data handling costs nothing). Rounds alternate to cancel the machine's drift.

    python benchmarks/train_throughput.py --size 32 --stem compact --cbam --batch-size 64 \
        --out docs/benchmarks/train_throughput.json
    python benchmarks/train_throughput.py --size 96 --stem standard --precision bf16  # bf16 loop

``--precision bf16`` runs the training loop's forward pass under bf16 autocast, as
``train.precision=bf16`` does (the model-only baseline stays fp32, so the ratio then shows what
bf16 buys over fp32 on this processor). Every setting not given (and the loss, learning rate
and weight decay) is params.yaml's `train` (and `shard.input_px`) value.
"""

import statistics
import time
from pathlib import Path

import numpy as np
import torch
import typer

from wafer.config.params import config_from, load_section
from wafer.config.sections import ShardParams, TrainParams
from wafer.core.io import write_json
from wafer.model.forward import resolve_device
from wafer.model.losses import make_loss
from wafer.model.net import ModelConfig, build_model, one_hot
from wafer.model.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
TRAIN = load_section(ROOT / "params.yaml", TrainParams)

app = typer.Typer(add_completion=False)


def model_only(model, criterion, x, y, steps: int, device) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN.lr, weight_decay=TRAIN.weight_decay)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = criterion(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(x) / (time.perf_counter() - t0)


@app.command()
def main(
    size: int = typer.Option(None, help="[default: shard.input_px]"),
    stem: str = typer.Option(None, help="[default: train.stem]"),
    cbam: bool = typer.Option(None, "--cbam/--no-cbam", help="[default: train.cbam]"),
    batch_size: int = typer.Option(None, help="[default: train.batch_size]"),
    maps: int = 1536,
    rounds: int = 3,
    device: str = typer.Option(None, help="[default: train.device]"),
    precision: str = typer.Option(None, help="[default: train.precision]"),
    out: Path = typer.Option(None, help="also write the result as JSON"),
) -> None:
    size = size or load_section(ROOT / "params.yaml", ShardParams).input_px
    stem = stem or TRAIN.stem
    cbam = TRAIN.cbam if cbam is None else cbam
    batch_size = batch_size or TRAIN.batch_size
    device = device or TRAIN.device
    precision = precision or TRAIN.precision
    dev = resolve_device(device)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (maps, size, size)).astype(np.uint8)
    y = rng.integers(0, 9, maps).astype(np.int64)
    cfg = config_from(ModelConfig, TRAIN, stem=stem, cbam=cbam)
    criterion, _ = make_loss(TRAIN.loss, y, TRAIN.focal_gamma)
    xb = one_hot(torch.from_numpy(x[:batch_size])).to(dev)
    yb = torch.from_numpy(y[:batch_size]).to(dev)
    steps = maps // batch_size
    pipe, bare = [], []
    for r in range(rounds):
        tcfg = config_from(
            TrainConfig,
            TRAIN,
            epochs=1,
            batch_size=batch_size,
            seed=r,
            device=device,
            progress=False,
            patience=1,
            precision=precision,
            augment=True,
            ema_decay=0.0,
            ema_warmup=False,
        )
        res = fit(build_model(cfg), criterion, x, y, x[:8], y[:8], tcfg)
        pipe.append(res.train_maps_per_s)
        bare.append(model_only(build_model(cfg).to(dev), criterion.to(dev), xb, yb, steps, dev))
        print(f"round {r + 1}: pipeline {pipe[-1]:.1f} maps/s, model-only {bare[-1]:.1f} maps/s")
    p, b = statistics.median(pipe), statistics.median(bare)
    print(
        f"device {dev} ({torch.backends.cpu.get_cpu_capability()}), {size}px, stem {stem}, "
        f"cbam {cbam}, batch {batch_size}, precision {precision}, "
        f"threads {torch.get_num_threads()}: pipeline {p:.1f} maps/s, model-only {b:.1f} maps/s,"
        f" ratio {p / b:.3f}"
    )
    if out:
        write_json(
            out,
            {
                "device": str(dev),
                "size": size,
                "stem": stem,
                "cbam": cbam,
                "batch_size": batch_size,
                "precision": precision,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads(),
                "pipeline_maps_per_s": pipe,
                "model_only_maps_per_s": bare,
                "median_ratio": p / b,
            },
        )


if __name__ == "__main__":
    app()
