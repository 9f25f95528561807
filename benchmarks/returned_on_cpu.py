"""A model trained on a lent GPU, served on this CPU: does `wafer predict` give the
probabilities its temperature and thresholds were fit on, and how fast?

Reads a returned run folder (results/gpu/<run>/, joined by ``python -m wafer.tools.returned``):
its served model, calibration and thresholds, and its ``logits.npz`` (the GPU's test logits).
Takes the first ``--maps`` test maps of the real subset by their ingested rows (ingest as the
run's params.yaml says; the pickle runs code when loaded: trust it first), runs `wafer predict`
on them as its own process, and compares its calibrated probabilities with the GPU's logits at
the served temperature.

    python benchmarks/returned_on_cpu.py --run results/gpu/seed-224 \\
        --data data/external/LSWMD-subset.pkl.xz --out results/gpu/seed-224/cpu_serving.json
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import typer
import yaml

from wafer.core.classes import CLASS_NAMES
from wafer.core.io import write_json
from wafer.core.probs import softmax
from wafer.data.files import Logits
from wafer.data.ingest import ingest_file
from wafer.serving.files import Calibration
from wafer.tools.machine import benchmark_header

app = typer.Typer(add_completion=False)


@app.command()
def main(
    run: Path = typer.Option(..., help="a returned run folder (results/gpu/<run>)"),
    data: Path = typer.Option(..., help="the real subset the run ingested (a trusted pickle)"),
    out: Path = typer.Option(..., help="JSON result"),
    maps: int = typer.Option(160, help="test maps predicted"),
) -> None:
    header = benchmark_header("benchmarks/returned_on_cpu.py")
    served = run / "served"
    lg = Logits.load(run / "logits.npz")
    temperature = Calibration.load(served / "calibration.json").temperature
    ingest = yaml.safe_load((run / "params.yaml").read_text())["ingest"]
    ing = ingest_file(data, ingest["on_invalid"], ingest["max_side"], trust_pickle=True).arrays()
    rows = lg.rows["test"][:maps]
    if not np.array_equal(ing["labels"][rows], lg.y["test"][:maps]):
        raise SystemExit(f"{data}: not the data the run ingested (labels of its rows differ)")
    off, shapes = ing["offsets"], ing["shapes"]
    with tempfile.TemporaryDirectory() as tmp:
        npz, preds = Path(tmp) / "maps.npz", Path(tmp) / "predictions.csv"
        np.savez(
            npz, **{f"r{r}": ing["flat"][off[r] : off[r + 1]].reshape(shapes[r]) for r in rows}
        )
        cmd = [str(Path(sys.executable).parent / "wafer"), "predict", str(npz), "--out", str(preds)]
        cmd += ["--pipeline", str(run)]  # no dvc.yaml there: no index, not this checkout's
        for name in ("model.pt", "calibration.json", "thresholds.json"):
            cmd += [f"--{name.split('.')[0]}", str(served / name)]
        t0 = time.perf_counter()
        subprocess.run([*cmd, "--device", "cpu"], check=True, capture_output=True)
        seconds = time.perf_counter() - t0
        with open(preds) as f:
            got = {r["source"].rsplit("[", 1)[1].rstrip("]"): r for r in csv.DictReader(f)}
    cpu = np.array([[float(got[f"r{r}"][f"p_{c}"]) for c in CLASS_NAMES] for r in rows])
    gpu = softmax(lg.logits["test"][:maps], temperature)
    result = {
        **header,
        "run": str(run),
        "maps": len(rows),
        "views": lg.views,
        "runtime": lg.runtime,
        "seconds": round(seconds, 1),
        "maps_per_s": round(len(rows) / seconds, 1),
        "max_abs_probability_difference": float(np.abs(cpu - gpu).max()),
        "csv_decimals": 6,
        "labels_agree": float(np.mean(cpu.argmax(axis=1) == gpu.argmax(axis=1))),
    }
    write_json(out, result)
    print(result)


if __name__ == "__main__":
    app()
