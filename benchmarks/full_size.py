"""The pipeline at WM-811K's full size (issue 26): does anything break, and what does each stage
cost in time and memory?

1. The pipeline's own stages, run by ``wafer.tools.run_stages`` exactly as ``dvc repro`` runs
   them, on the synthetic generator at WM-811K's size: 811,457 maps in the LSWMD.pkl layout,
   638,507 of them unlabeled (empty ``failureType``, as in the real file), so 172,950 labeled;
   ``synthesize.floor=0`` keeps WM-811K's own class mix, and the die grids follow the generator's
   die-size spread (20 to 150 dies across, as in the real data). Stages: validate_params,
   synthesize, ingest (drops the unlabeled rows), split, shard (at ``--input-px``, the headline
   model's 96 px); train and what follows are skipped. Per stage: wall time and peak resident
   memory (``os.wait4``'s ``ru_maxrss`` of the stage's process), as the runner records them.
2. ``wafer predict`` over the first ``--predict-maps`` maps of the synthesized file (labeled or
   not, in their original sizes: what a fab runs over its history), with the served files of
   ``--pipeline``, as a separate process: wall time, maps/s and peak memory.

    python benchmarks/full_size.py --workdir /tmp/full --pipeline . \\
        --out docs/benchmarks/full_size.json

The processor, thread count and torch version are recorded with the figures; timings compare
only within one run. Nothing here is tuned or chosen: it measures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import typer

from wafer.config.pipeline import pipeline_paths
from wafer.core.classes import WM811K_FULL_COUNTS
from wafer.core.io import load_npz, write_json
from wafer.tools.machine import benchmark_header

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import predict_cmd, ragged_subset  # noqa: E402 - a sibling benchmark script

ROOT = Path(__file__).resolve().parents[1]
WM811K_MAPS = 811_457
WM811K_LABELED = sum(WM811K_FULL_COUNTS.values())  # 172,950
AFTER_SHARD = ("train", "infer", "calibrate", "thresholds", "index", "evaluate", "gradcam")

app = typer.Typer(add_completion=False)


def run_pipeline(workdir: Path, out: Path, n_maps: int, unlabeled: int, input_px: int) -> dict:
    """The stages up to shard at full size, through the runner; its timing record."""
    cmd = [sys.executable, "-m", "wafer.tools.run_stages", "--synthetic", "--name", "full-size"]
    for kv in (
        f"synthesize.n_maps={n_maps}",
        f"synthesize.unlabeled={unlabeled}",
        "synthesize.floor=0",
        f"shard.input_px={input_px}",
    ):
        cmd += ["-S", kv]
    for stage in AFTER_SHARD:
        cmd += ["--skip", stage]
    cmd += ["--workdir", str(workdir), "--keep-workdir", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return json.loads((out / "timing" / "run_stages.json").read_text())


def timed_process(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; (wall seconds, peak resident MiB of its process)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def measure_predict(workdir: Path, paths: dict, pipeline: Path, n: int, batch: int) -> dict:
    """`wafer predict` over the first ``n`` synthesized maps with ``pipeline``'s served files."""
    predict_in = workdir / "predict_maps.npz"  # the first n maps (all if n <= 0), no labels
    total = len(load_npz(paths["synthetic"], ("shapes",))["shapes"])
    n_predict = total if n <= 0 else min(n, total)
    ragged_subset(paths["synthetic"], np.arange(n_predict), predict_in)
    csv = workdir / "predictions.csv"
    seconds, peak = timed_process(predict_cmd(pipeline, predict_in, csv, batch))
    with open(csv) as f:
        rows = sum(1 for _ in f) - 1
    served = pipeline_paths(pipeline)
    model = torch.load(served["model"], map_location="cpu", weights_only=True)
    calibration = json.loads(served["calibration"].read_text())  # how predict ran the network
    return {
        "maps": n_predict,
        "rows_written": rows,
        "seconds": round(seconds, 1),
        "maps_per_s": round(n_predict / seconds, 1),
        "peak_rss_mib": round(peak, 1),
        "model_input_px": int(model["input_size"]),
        "runtime": calibration["runtime"],
        "views": calibration["views"],
        "pipeline": str(pipeline),
        "batch_size": batch,
    }


@app.command()
def main(
    workdir: Path = typer.Option(..., help="scratch folder for the full-size stages (~20 GB)"),
    out: Path = typer.Option(ROOT / "docs/benchmarks/full_size.json", help="JSON result"),
    pipeline: Path = typer.Option(ROOT, help="a trained pipeline whose served files predict"),
    n_maps: int = typer.Option(WM811K_MAPS, help="maps in all"),
    unlabeled: int = typer.Option(WM811K_MAPS - WM811K_LABELED, help="of them, unlabeled"),
    input_px: int = typer.Option(96, help="shard side (the headline model's)"),
    predict_maps: int = typer.Option(0, help="maps `wafer predict` runs over (0: all)"),
    batch: int = typer.Option(512, help="wafer predict --batch-size"),
    skip_stages: bool = typer.Option(False, help="reuse the stages' record in --workdir"),
    keep_predict: bool = typer.Option(
        False, help="keep --out's `wafer predict` record (re-measure the stages only)"
    ),
) -> None:
    """Run the full-size stages and `wafer predict`; write the record to --out."""
    header = benchmark_header("benchmarks/full_size.py")
    results = workdir / "results"
    if skip_stages:
        record = json.loads((results / "timing" / "run_stages.json").read_text())
    else:
        record = run_pipeline(workdir / "run", results, n_maps, unlabeled, input_px)
    paths = pipeline_paths(workdir / "run")
    stage_counts = {}
    for name in ("synthesize", "ingest", "split", "shard"):
        f = results / f"{name}.json"
        stage_counts[name] = json.loads(f.read_text()) if f.is_file() else None
    sizes = {
        name: round(paths[name].stat().st_size / 2**20, 1)
        for name in ("synthetic", "ingested")
        if paths[name].is_file()
    }
    shards = paths["shards"]
    sizes["shards"] = round(sum(f.stat().st_size for f in shards.iterdir()) / 2**20, 1)

    if keep_predict:
        kept = json.loads(out.read_text())
        predict, command = kept["predict"], kept["predict_command"]
    else:
        predict = measure_predict(workdir, paths, pipeline, predict_maps, batch)
        command = header["command"]
    result = {
        **header,
        "maps": n_maps,
        "unlabeled": unlabeled,
        "input_px": input_px,
        "stages": record["stages"],
        "stage_metrics": stage_counts,
        "file_mib": sizes,
        "predict": predict,
        "predict_command": command,
    }
    write_json(out, result)
    print(json.dumps(result["stages"], indent=1), json.dumps(result["predict"], indent=1))
    if not skip_stages:
        shutil.rmtree(paths["shards"], ignore_errors=True)  # ~1.6 GB of 96-px shards


if __name__ == "__main__":
    app()
