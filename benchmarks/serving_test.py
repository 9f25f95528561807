"""Each runtime's macro-F1 change on validation *and test* (issue 26), fit as the pipeline fits.

`benchmarks/serving.py` chooses on validation only (speed, views, each runtime's validation
change). This reports what those choices cost on the test split, once, the way the pipeline
reports a served setting: for each runtime (``infer.runtime``, int8 included) at ``--views`` TTA
views, the temperature and the `macro_f1` operating point
are fit on that runtime's own validation logits (as the `calibrate` and `thresholds` stages fit
them) and applied to its test logits; the figure is prevalence-corrected macro-F1 at that point.
Each runtime is compared with eager fp32 at the same views and at ``--reference-views`` (8: the
served reference a serving default must stay within 0.002 of, on validation).

    python benchmarks/serving_test.py --workdir /path/to/pipeline --views 4 \\
        --out docs/benchmarks/serving_test.json

Nothing here is chosen: the choices are serving.py's, on validation.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import typer
from serving import build_runtime, unavailable  # benchmarks/serving.py: the same runtimes

from wafer.config.params import load_params
from wafer.config.pipeline import pipeline_paths
from wafer.config.rules import RUNTIMES, TTA_VIEWS
from wafer.core.errors import UsageError, one_line_errors
from wafer.core.io import write_json
from wafer.data.files import load_shard
from wafer.model.checkpoint import load_model
from wafer.model.forward import predict_outputs
from wafer.model.runtime import make_runtime
from wafer.serving.refit import corrected_macro_f1, fit_macro_f1_point  # the same fit
from wafer.tools.machine import benchmark_header

app = typer.Typer(add_completion=False)


def fit_then_score(
    val_logits: np.ndarray,
    y_val: np.ndarray,
    test_logits: np.ndarray,
    y_test: np.ndarray,
    params: dict,
) -> dict:
    """Temperature and the `macro_f1` point fit on validation (serving.py's fit), scored on
    validation and test (prevalence-corrected macro-F1 under the target prior)."""
    temperature, fit = fit_macro_f1_point(val_logits, y_val, params)
    scored = {"val": (val_logits, y_val), "test": (test_logits, y_test)}
    return {"temperature": round(temperature, 4)} | {
        f"{split}_macro_f1_pc": round(corrected_macro_f1(lg, y, temperature, fit, params), 5)
        for split, (lg, y) in scored.items()
    }


@app.command()
@one_line_errors
def main(
    workdir: Path = typer.Option(..., help="a pipeline folder after `shard` and `train`"),
    out: Path = typer.Option(..., help="JSON result"),
    views: int = typer.Option(4, help="TTA views of every runtime"),
    reference_views: int = typer.Option(8, help="TTA views of the eager fp32 reference"),
    batch: int = typer.Option(256, help="maps per forward pass (x views)"),
) -> None:
    for what, v in (("--views", views), ("--reference-views", reference_views)):
        if v not in TTA_VIEWS:
            raise UsageError(f"{what} {v}: one of {TTA_VIEWS}")
    paths = pipeline_paths(workdir)
    params = load_params(workdir / "params.yaml")
    val, test = (load_shard(paths["shards"], s) for s in ("val", "test"))
    xv, yv, xt, yt = (np.asarray(a) for a in (val.x, val.y, test.x, test.y))

    def logits(run, v: int) -> tuple[np.ndarray, np.ndarray]:
        return tuple(predict_outputs(run, x, batch, views=v).logits for x in (xv, xt))

    eager = make_runtime(load_model(paths["model"], "cpu")[0], "cpu", "eager")
    lv8, lt8 = logits(eager, reference_views)
    ref = fit_then_score(lv8, yv, lt8, yt, params)
    print("eager", reference_views, "views", ref, flush=True)

    runs: dict = {}
    for name in RUNTIMES:
        if unavailable(name) is None:
            runs[name] = lambda n=name: build_runtime(n, paths, params)

    rows: dict = {}
    same, same_test = None, None  # eager at --views: the same-views reference
    for name, build in runs.items():  # eager first (RUNTIMES starts with it)
        t0 = time.perf_counter()
        if name == "eager" and views == reference_views:
            lv, lt = lv8, lt8
        else:
            lv, lt = logits(eager if name == "eager" else build(), views)
        r = fit_then_score(lv, yv, lt, yt, params)
        if name == "eager":
            same, same_test = r, lt
        rows[name] = r | {
            "views": views,
            "test_labels_changed_vs_eager": float(np.mean(lt.argmax(1) != same_test.argmax(1))),
            "seconds (start-up included)": round(time.perf_counter() - t0, 1),
        }
        print(name, rows[name], flush=True)
    for row in rows.values():
        for label, base in (("eager", same), (f"eager_{reference_views}_views", ref)):
            for split in ("val", "test"):
                key = f"{split}_macro_f1_pc"
                row[f"delta_{split}_vs_{label}"] = round(row[key] - base[key], 5)
    write_json(
        out,
        {
            **benchmark_header("benchmarks/serving_test.py"),
            "val_maps": len(yv),
            "test_maps": len(yt),
            "reference": {
                "runtime": "eager",
                "views": reference_views,
                "val_macro_f1_pc": ref["val_macro_f1_pc"],
                "test_macro_f1_pc": ref["test_macro_f1_pc"],
            },
            "runtimes": rows,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    app()
