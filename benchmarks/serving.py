"""What does serving cost, and what buys speed without losing accuracy? (issue 26)

On one trained pipeline (its model, shards, ingested file and served files), in one process on
one machine, so that every ratio compares like with like:

1. **model-only** maps/s of each runtime (``infer.runtime``) at 1 and 8 TTA views: the
   network on maps already resized, through the served forward pass
   (:func:`wafer.model.forward.predict_outputs` over :func:`wafer.model.runtime.make_runtime`),
   after one warm-up batch; the runtime's start-up (export, compilation) is reported apart;
2. **`wafer predict`** maps/s as a user runs it (a separate process reading a ragged-maps .npz of
   validation maps in their original sizes, writing the CSV) at the served files' settings,
   against model-only at the same settings: the ratio is what the pipeline around the model
   costs (reading, checks, resize, TTA stacking, calibration, writing); a tiny input gives the
   fixed start-up cost, reported apart; and a profile of the same run in this process (the
   project's functions by cumulative time: where the time goes);
3. **quality on validation**: macro-F1 (prevalence-corrected, at the `macro_f1` operating point
   with temperature and thresholds fit on validation as the `calibrate` and `thresholds` stages
   fit them; and plain argmax) of each TTA view count (eager fp32; each view's logits computed
   once, a count's logits the mean of its first views, as predict_outputs averages them) and of
   each runtime at the served view count (or ``--views``) against eager fp32 on the same maps
   at that count and at 8 views, with the share of
   maps whose label changed and the largest logit change. Each view count's labels are also
   compared with one view's (training's own validation measure: fp32, the map as given) by a
   paired bootstrap of the prevalence-corrected macro-F1, at the argmax and at the `macro_f1`
   point (wafer.report.evaluate.paired_gain_prior: the same resampled maps for both), so that a
   view count's gain or loss is read against what validation resolves.

    python benchmarks/serving.py --workdir /path/to/pipeline --out docs/benchmarks/serving.json

``--quality-only`` measures 3 alone (no timing, no `wafer predict`), for the runtimes named by
``--runtime`` (default: every one available): what a model at a new size or recipe gains or
loses from its served runtime and views (12 min for a 160-px model, 28 for a 224-px one, on a
2-core AMD EPYC with AVX-512: docs/benchmarks/serving_views_*px.json).

Choices are made on validation only; nothing here reads the test split.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import typer

from wafer.config.params import section_values
from wafer.config.pipeline import pipeline_paths, recipe_params
from wafer.config.rules import RUNTIMES, TTA_VIEWS
from wafer.config.sections import InferParams
from wafer.core.errors import UsageError, one_line_errors
from wafer.core.io import load_npz, save_npz, sha256_file, write_json
from wafer.data.files import load_shard
from wafer.model.augment import TTA_ORDER, dihedral
from wafer.model.checkpoint import load_model
from wafer.model.forward import predict_outputs
from wafer.model.runtime import calibration_maps, check_runtime, make_runtime
from wafer.serving.refit import paired_vs, point_labels, quality
from wafer.tools.machine import benchmark_header

app = typer.Typer(add_completion=False)


def unavailable(name: str) -> str | None:
    """Why runtime ``name`` cannot run here (the served check, check_runtime), or None."""
    try:
        check_runtime(name, "cpu")
    except UsageError as exc:
        return str(exc)
    return None


def build_runtime(name: str, paths: dict, infer: InferParams):
    """Runtime ``name`` over the pipeline's model, built as the `infer` stage builds it (int8:
    its activation ranges calibrated on the training maps infer.int8_calibration_maps picks)."""
    maps = None
    if name == "int8":
        n = infer.int8_calibration_maps
        maps = calibration_maps(load_shard(paths["shards"], "train").x, n)
    return make_runtime(load_model(paths["model"], "cpu")[0], "cpu", name, maps=maps)


def maps_per_s(run, x: np.ndarray, views: int, batch: int) -> float:
    predict_outputs(run, x[: max(1, batch // views)], batch, views=views)  # warm-up batch
    t0 = time.perf_counter()
    predict_outputs(run, x, batch, views=views)
    return len(x) / (time.perf_counter() - t0)


def ragged_subset(ingested: Path, rows: np.ndarray, out: Path) -> None:
    """The ingested maps of ``rows`` in their original sizes, as a ragged-maps .npz."""
    z = load_npz(ingested, ("flat", "shapes", "offsets"))
    maps = [z["flat"][z["offsets"][r] : z["offsets"][r + 1]] for r in rows]
    shapes = z["shapes"][rows].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in maps])]).astype(np.int64)
    save_npz(out, flat=np.concatenate(maps), shapes=shapes, offsets=offsets)


def steps(stats: pstats.Stats, top: int = 14) -> list[dict]:
    """The project's functions by cumulative time (each includes what it calls: torch's
    forward inside ``predict_outputs``, the resize inside ``prepare``), largest first, with
    their share of the whole profiled run."""
    total = max(ct for (_cc, _nc, _tt, ct, _callers) in stats.stats.values())
    rows = []
    for (file, _line, fn), (_cc, ncalls, _tt, ct, _callers) in stats.stats.items():
        path = file.replace(os.sep, "/")
        if "/wafer/" not in path:
            continue
        module = "wafer." + path.split("/wafer/", 1)[1].removesuffix(".py").replace("/", ".")
        rows.append((ct, f"{module}.{fn}", ncalls))
    return [
        {"function": name, "calls": calls, "seconds": round(ct, 2), "share": round(ct / total, 3)}
        for ct, name, calls in sorted(rows, reverse=True)[:top]
    ]


def predict_cmd(workdir: Path, npz: Path, out: Path, batch: int) -> list[str]:
    """`wafer predict` serving the pipeline's own files (model, calibration, thresholds, and
    the index and novelty.json when it has them), as a user runs it."""
    wafer = Path(sys.executable).parent / "wafer"
    return [
        str(wafer),
        "predict",
        str(npz),
        "--out",
        str(out),
        "--pipeline",
        str(workdir),
        "--batch-size",
        str(batch),
        "--device",
        "cpu",
    ]


def measure_predict(
    workdir: Path,
    paths: dict,
    val,
    x: np.ndarray,
    runs: dict,
    served: InferParams,
    n: int,
    batch: int,
) -> dict:
    """`wafer predict` as a process on ``n`` validation maps in their original sizes, against
    the served runtime's model-only maps/s at the served views, and a profile of the same run."""
    rows = np.asarray(val.rows)[:n]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ragged_subset(paths["ingested"], rows, tmp / "maps.npz")
        ragged_subset(paths["ingested"], rows[:8], tmp / "tiny.npz")
        walls = {}
        for name in ("tiny", "maps"):
            t0 = time.perf_counter()
            subprocess.run(
                predict_cmd(workdir, tmp / f"{name}.npz", tmp / f"{name}.csv", batch),
                check=True,
                capture_output=True,
            )
            walls[name] = time.perf_counter() - t0
        run = runs[served.runtime]
        model_only = maps_per_s(run, x[: len(rows)], served.views, batch)
        # a profile of the same work in this process (cProfile slows Python, not torch's C)
        from wafer.apps.predicting import predictor_9class  # noqa: F401 - import cost apart

        prof = cProfile.Profile()
        prof.enable()
        from typer.testing import CliRunner

        from wafer.apps.cli import app as cli

        res = CliRunner().invoke(
            cli, predict_cmd(workdir, tmp / "maps.npz", tmp / "prof.csv", batch)[1:]
        )
        prof.disable()
        assert res.exit_code == 0, res.output
    pipeline = len(rows) / walls["maps"]
    marginal = (len(rows) - 8) / max(walls["maps"] - walls["tiny"], 1e-9)
    return {
        "maps": len(rows),
        "views": served.views,
        "runtime": served.runtime,
        "wall_s": round(walls["maps"], 1),
        "startup_s (8 maps)": round(walls["tiny"], 1),
        "maps_per_s": round(pipeline, 1),
        "maps_per_s_after_startup": round(marginal, 1),
        "model_only_maps_per_s": round(model_only, 1),
        "ratio_vs_model_only": round(pipeline / model_only, 3),
        "ratio_vs_model_only_after_startup": round(marginal / model_only, 3),
        "profile": steps(pstats.Stats(prof)),
    }


@app.command()
@one_line_errors
def main(
    workdir: Path = typer.Option(..., help="a pipeline folder after `infer`..`thresholds`"),
    out: Path = typer.Option(..., help="JSON result"),
    speed_maps: int = typer.Option(512, help="validation maps per model-only timing"),
    predict_maps: int = typer.Option(2048, help="validation maps given to `wafer predict`"),
    bf16_maps: int = typer.Option(1024, help="maps for bf16's quality (slow without AVX-512)"),
    batch: int = typer.Option(256, help="maps per forward pass (x views)"),
    compare_views: int = typer.Option(
        0,
        "--views",
        help="TTA views of the runtimes' quality comparison (0: the served infer.views)",
    ),
    predict_only: bool = typer.Option(
        False,
        help="only `wafer predict` against model only at the served runtime and views (the "
        "pipeline's own setting), without the runtime and view sweeps",
    ),
    quality_only: bool = typer.Option(
        False, help="only the quality on validation (3): no timing, no `wafer predict`"
    ),
    only: list[str] = typer.Option(
        [], "--runtime", help="repeat: the runtimes to measure (default: every one available)"
    ),
) -> None:
    paths = pipeline_paths(workdir)  # dvc.yaml's paths, in that pipeline
    net, ckpt = load_model(paths["model"], "cpu")
    val = load_shard(paths["shards"], "val")
    x, y = np.asarray(val.x), np.asarray(val.y)
    # the served setting: the pipeline's infer section, or the params file its dvc.yaml reads
    # the recipe from (pipelines/crossfit reads the root's)
    params = recipe_params(workdir)
    served = section_values(params, InferParams)
    if compare_views not in (0, *TTA_VIEWS):
        raise UsageError(f"--views {compare_views}: one of {TTA_VIEWS} (0: the served count)")
    cmp_views = compare_views or served.views
    if predict_only and quality_only:
        raise UsageError("--predict-only and --quality-only: one or the other")
    for name in only:
        check_runtime(name, "cpu", "--runtime")
    wanted = [r for r in RUNTIMES if not only or r in only or r == "eager"]  # eager: the reference
    result: dict = {
        **benchmark_header("benchmarks/serving.py"),
        "model": {
            "input_size": ckpt.input_size,
            "stem": ckpt.config.stem,
            "cbam": ckpt.config.cbam,
            "val_maps": len(y),
            "sha256": sha256_file(paths["model"]),
        },
        "served": {"views": served.views, "runtime": served.runtime},
    }

    if predict_only:  # the served runtime alone, built as predict builds it
        runs = {served.runtime: build_runtime(served.runtime, paths, served)}
        predict_outputs(runs[served.runtime], x[:2], 2)  # export/quantisation here
        result["predict"] = measure_predict(
            workdir, paths, val, x, runs, served, predict_maps, batch
        )
        write_json(out, result)
        print(f"wrote {out}")
        return

    # 1. model-only throughput per runtime and view count (--quality-only: the runtimes only)
    speed: dict = {}
    runs = {}
    for name in wanted:
        why = unavailable(name)
        if why:
            speed[name] = {"skipped": why}
            continue
        t0 = time.perf_counter()
        runs[name] = build_runtime(name, paths, served)
        predict_outputs(runs[name], x[:2], 2)  # export/compile happen here
        row = {"startup_s": round(time.perf_counter() - t0, 1)}
        counts = () if quality_only else TTA_VIEWS if name == "eager" else (1, 8)
        for views in counts:
            row[f"maps_per_s_{views}_views"] = round(
                maps_per_s(runs[name], x[:speed_maps], views, batch), 1
            )
        speed[name] = row
        print(name, row, flush=True)
    base = speed["eager"].get("maps_per_s_1_views")
    for row in speed.values():
        if "maps_per_s_1_views" in row:
            row["ratio_vs_eager_1_view"] = round(row["maps_per_s_1_views"] / base, 3)
    result["model_only"] = speed

    # 3a. the TTA view-count frontier (eager fp32): each view's logits once
    per_view = []
    for k in TTA_ORDER:
        xv = dihedral(torch.from_numpy(x), k).contiguous().numpy()
        per_view.append(predict_outputs(runs["eager"], xv, batch).logits)
        print(f"view {k} done", flush=True)
    frontier, one_view = {}, None
    for views in TTA_VIEWS:
        logits = np.mean(per_view[:views], axis=0)
        point = point_labels(logits, y, params)  # one fit per count, for both figures
        labels = {"argmax": logits.argmax(1), "macro_f1_point": point[1]}
        one_view = one_view or labels  # TTA_VIEWS starts at 1: the baseline of every count
        frontier[views] = (
            quality(logits, y, params, point)
            | {"gain_vs_1_view": paired_vs(labels, one_view, y, params)}
            | {"model_only_maps_per_s": speed["eager"].get(f"maps_per_s_{views}_views")}
        )
        print(views, frontier[views], flush=True)
    result["views_on_validation"] = frontier

    # 3b. each runtime at 1..`views` views (default: the served count) against eager fp32 at
    # the same count on the same maps (the runtime's own effect), and against eager fp32 at 8
    # views (the reference: what a runtime and a view count together cost). Each view's
    # logits once per runtime, a count's logits their mean, as for the eager frontier above.
    views = cmp_views
    counts = [v for v in TTA_VIEWS if v <= views]
    ref_8 = np.mean(per_view[: max(TTA_VIEWS)], axis=0)
    quality_rt = {}
    for name, run in runs.items():
        n = bf16_maps if name == "bf16" else len(y)
        q_8 = quality(ref_8[:n], y[:n], params)["macro_f1_pc_at_macro_f1_point"]
        own = [
            pv[:n]
            if name == "eager"
            else predict_outputs(
                run, dihedral(torch.from_numpy(x[:n]), k).contiguous().numpy(), batch
            ).logits
            for k, pv in zip(TTA_ORDER[:views], per_view, strict=False)
        ]
        by_views = {}
        for v in counts:
            logits, ref = np.mean(own[:v], axis=0), np.mean(per_view[:v], axis=0)[:n]
            q, q_ref = quality(logits, y[:n], params), quality(ref, y[:n], params)
            f1 = q["macro_f1_pc_at_macro_f1_point"]
            by_views[v] = {
                "maps": n,
                "views": v,
                **q,
                "delta_macro_f1_pc_vs_eager": round(f1 - q_ref["macro_f1_pc_at_macro_f1_point"], 5),
                "delta_macro_f1_pc_vs_eager_8_views": round(f1 - q_8, 5),
                "labels_changed": float(np.mean(logits.argmax(1) != ref.argmax(1))),
                "max_abs_logit_change": float(np.abs(logits - ref).max()),
            }
        quality_rt[name] = by_views[views] | {"by_views": by_views}
        print(name, by_views, flush=True)
    result["runtimes_on_validation"] = quality_rt
    if quality_only:
        write_json(out, result)
        print(f"wrote {out}")
        return

    # 2. `wafer predict` as a process against model-only at the served settings
    result["predict"] = measure_predict(workdir, paths, val, x, runs, served, predict_maps, batch)
    print(result["predict"], flush=True)
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    app()
