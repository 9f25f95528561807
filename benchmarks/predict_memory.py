"""Does `wafer predict` stay in bounded memory on a full-dataset-sized input?

Writes ragged-maps .npz files (the format `wafer convert LSWMD.pkl` writes) of synthetic wafer
maps with the real subset's spread of sizes, then runs `wafer predict` on each as its own
process and reads that process's peak resident set (``ru_maxrss`` from ``os.wait4``) and its
maps/s. The small file is the baseline measured in the same run: when the peak of the large file
is about that of the small one, memory does not grow with the number of maps, and the peak for
the full LSWMD.pkl (811,457 maps) is about the same figure.

    python benchmarks/predict_memory.py --maps 20000 --maps 200000 \
        --out docs/benchmarks/predict_memory.json

The served files default to the pipeline's (models/, after `dvc repro`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import typer

from wafer.core.io import save_npz, write_json
from wafer.tools.machine import benchmark_header

app = typer.Typer(add_completion=False)


def ragged_maps(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` wafer-like maps (a filled ellipse of passing dies, 3 % failing), sides 25 to 70
    dies (most real WM-811K maps fall in this range), as the arrays of a ragged-maps .npz."""
    rng = np.random.default_rng(seed)
    shapes = rng.integers(25, 71, size=(n, 2))
    sizes = shapes.prod(axis=1)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    flat = np.empty(int(offsets[-1]), dtype=np.uint8)
    for i, (h, w) in enumerate(shapes):
        yy, xx = np.ogrid[:h, :w]
        inside = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1
        m = inside.astype(np.uint8)
        m[inside & (rng.random((h, w)) < 0.03)] = 2
        flat[offsets[i] : offsets[i + 1]] = m.ravel()
    return {"flat": flat, "shapes": shapes.astype(np.int64), "offsets": offsets}


def _sample_rss(pid: int, t0: float, out: list, every: float = 0.5) -> None:
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append((time.perf_counter() - t0, int(line.split()[1]) / 1024))
        except OSError:
            return
        if not status.exists():
            return
        time.sleep(every)


def run_predict(src: Path, out: Path, models: Path, batch_size: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "wafer.apps.cli",
        "predict",
        str(src),
        "-o",
        str(out),
        "--model",
        str(models / "model.pt"),
        "--calibration",
        str(models / "calibration.json"),
        "--thresholds",
        str(models / "thresholds.json"),
        "--device",
        "cpu",
        "--batch-size",
        str(batch_size),
        "--no-progress",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples: list[tuple[float, float]] = []  # (seconds, RSS MiB), to see whether RSS plateaus
    sampler = threading.Thread(target=_sample_rss, args=(proc.pid, t0, samples), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    sampler.join()
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    if status != 0:
        raise SystemExit(f"wafer predict failed:\n{stdout}\n{stderr}")
    rows = sum(1 for _ in open(out)) - 1
    return {
        "maps": rows,
        "input_mib": src.stat().st_size / 2**20,
        "output_mib": out.stat().st_size / 2**20,
        "seconds": seconds,
        "maps_per_s": rows / seconds,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # kilobytes on Linux
        # RSS at 10, 25, 50, 75 and 100 % of the run's samples: flat when memory is bounded
        "rss_mib_through_the_run": [
            round(samples[min(len(samples) - 1, int(q * len(samples)))][1], 1)
            for q in (0.1, 0.25, 0.5, 0.75, 1.0)
        ]
        if samples
        else [],
    }


@app.command()
def main(
    maps: list[int] = typer.Option([20_000, 200_000], help="file sizes, smallest first"),
    models: Path = typer.Option(Path("models"), help="folder with the three served files"),
    batch_size: int = 256,
    out: Path | None = None,
) -> None:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in maps:
            src = Path(tmp) / f"maps{n}.npz"
            save_npz(src, **ragged_maps(n))
            r = run_predict(src, Path(tmp) / f"pred{n}.csv", models, batch_size)
            results.append(r)
            print(
                f"{n:>8} maps: {r['input_mib']:.0f} MiB in, peak RSS {r['peak_rss_mib']:.0f} MiB, "
                f"{r['maps_per_s']:.0f} maps/s, {r['output_mib']:.0f} MiB CSV, RSS through the "
                f"run {r['rss_mib_through_the_run']} MiB",
                flush=True,
            )
    base, big = results[0], results[-1]
    summary = {
        **benchmark_header("benchmarks/predict_memory.py"),
        "runs": results,
        "peak_ratio_large_to_small": big["peak_rss_mib"] / base["peak_rss_mib"],
        "maps_ratio_large_to_small": big["maps"] / base["maps"],
    }
    print(
        f"peak RSS ratio {summary['peak_ratio_large_to_small']:.2f} for "
        f"{summary['maps_ratio_large_to_small']:.0f}x the maps"
    )
    if out is not None:
        write_json(out, summary)


if __name__ == "__main__":
    app()
