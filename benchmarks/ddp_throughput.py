"""Training maps/s with 1 process against N data-parallel processes (torchrun, gloo on CPU).

Runs the train stage itself (``stages/train.py`` with ``train.nproc: N`` in its params file, as
``dvc repro`` does with ``train.nproc=N``) on the same synthetic shards, alternating process
counts round by round to cancel the machine's drift, and reads each run's maps/s from its
metrics/timing/train.json (training loop only, validation excluded). The one-process run is
the baseline of the ratio.

    python benchmarks/ddp_throughput.py --size 64 --maps 2048 --nproc 1 --nproc 2 \
        --out docs/benchmarks/ddp_throughput.json

On a CPU the processes share the machine's cores (each gets cores / N threads), so the ratio
measures what DDP costs or gains over one process using every core; on GPUs each process has its
own device and the expectation is different (see README, "Data-parallel training").
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import typer
import yaml

from wafer.core.io import write_json
from wafer.tools.machine import benchmark_header

ROOT = Path(__file__).resolve().parents[1]
app = typer.Typer(add_completion=False)


def write_shards(d: Path, size: int, n_train: int, n_val: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        y = rng.integers(0, 9, n)
        x = rng.integers(0, 3, (n, size, size)).astype(np.uint8)
        np.save(d / f"{split}_x.npy", x)
        np.save(d / f"{split}_y.npy", y.astype(np.int64))
        np.save(d / f"{split}_rows.npy", np.arange(n))


def train_once(work: Path, nproc: int, stem: str, batch_size: int, epochs: int) -> dict:
    """One run of the train stage in ``work`` on params.yaml's `train` section with these
    settings (no CBAM, CPU, every epoch run)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(
        stem=stem,
        cbam=False,
        epochs=epochs,
        patience=epochs,
        batch_size=batch_size,
        device="cpu",
        nproc=nproc,
    )
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cmd = [sys.executable, str(ROOT / "stages/train.py"), "--params", "params.yaml"]
    cmd += ["--no-progress", "--shards", "shards", "--model-out", "out/model.pt"]
    cmd += ["--curves", "out/curves.csv", "--metrics", "out/train.json"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"train failed ({nproc} processes):\n{proc.stdout}\n{proc.stderr}")
    return json.loads((work / "metrics/timing/train.json").read_text())


@app.command()
def main(
    size: int = 64,
    stem: str = "standard",
    maps: int = 2048,
    batch_size: int = 64,
    epochs: int = 1,
    nproc: list[int] = typer.Option([1, 2], help="process counts, the first is the baseline"),
    rounds: int = 2,
    out: Path | None = None,
) -> None:
    runs: dict[int, list[float]] = {k: [] for k in nproc}
    threads: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_shards(work / "shards", size, maps, max(64, maps // 8))
        for r in range(rounds):
            for k in nproc if r % 2 == 0 else list(reversed(nproc)):
                t = train_once(work, k, stem, batch_size, epochs)
                runs[k].append(t["train_maps_per_s"])
                threads[k] = t["threads"]
                print(
                    f"round {r + 1}: {k} process(es) x {t['threads']} threads: "
                    f"{t['train_maps_per_s']:.1f} maps/s",
                    flush=True,
                )
    base = statistics.median(runs[nproc[0]])
    summary = {
        **benchmark_header("benchmarks/ddp_throughput.py"),
        "size": size,
        "stem": stem,
        "maps": maps,
        "batch_size": batch_size,
        "results": {
            str(k): {
                "threads_per_process": threads[k],
                "maps_per_s_median": statistics.median(v),
                "maps_per_s": v,
                "ratio_to_baseline": statistics.median(v) / base,
            }
            for k, v in runs.items()
        },
    }
    for k, v in summary["results"].items():
        print(
            f"{k} process(es): {v['maps_per_s_median']:.1f} maps/s, "
            f"x{v['ratio_to_baseline']:.2f} of {nproc[0]} process(es)"
        )
    if out is not None:
        write_json(out, summary)


if __name__ == "__main__":
    app()
