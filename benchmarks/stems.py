"""Stem trade-off: training throughput (model-only forward + backward + AdamW step) and the size
of the last feature map (what Grad-CAM sees) for each stem and input size, in one run.

    python benchmarks/stems.py --sizes 32 --sizes 64 --batch-size 64 --steps 6 \
        --out docs/benchmarks/stems.json

Throughput is reported as a ratio to the 'standard' stem at the same size, measured in the same
run, because this machine's speed drifts.
"""

import time
from pathlib import Path

import torch
import typer

from wafer.core.io import write_json
from wafer.model.net import STEMS, ModelConfig, build_model, one_hot

app = typer.Typer(add_completion=False)


def throughput(stem: str, size: int, cbam: bool, batch: int, steps: int) -> tuple[float, int]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(stem=stem, cbam=cbam)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = one_hot(torch.randint(0, 3, (batch, size, size), dtype=torch.uint8))
    y = torch.randint(0, 9, (batch,))
    feats = {}
    model.layer4.register_forward_hook(lambda m, i, o: feats.update(side=o.shape[-1]))
    for step in range(steps + 1):
        if step == 1:  # the first step warms up the allocator and kernels
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0), feats["side"]


@app.command()
def main(
    sizes: list[int] = typer.Option([32, 64]),
    cbam: bool = True,
    batch_size: int = 64,
    steps: int = 6,
    out: Path = typer.Option(None, help="also write the rows as JSON"),
) -> None:
    print(f"threads {torch.get_num_threads()}, batch {batch_size}, cbam {cbam}")
    print("| size | stem | last feature map | train maps/s | vs standard |")
    print("|---|---|---|---|---|")
    rows = []
    for size in sizes:
        base = None
        for stem in STEMS:
            rate, side = throughput(stem, size, cbam, batch_size, steps)
            base = base or rate
            print(f"| {size} | {stem} | {side}x{side} | {rate:.0f} | {rate / base:.2f} |")
            rows.append(
                {
                    "size": size,
                    "stem": stem,
                    "feature_map": side,
                    "maps_per_s": rate,
                    "vs_standard": rate / base,
                }
            )
    if out:
        write_json(
            out,
            {
                "threads": torch.get_num_threads(),
                "batch_size": batch_size,
                "cbam": cbam,
                "rows": rows,
            },
        )


if __name__ == "__main__":
    app()
