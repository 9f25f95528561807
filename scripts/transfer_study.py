"""Issue 24's transfer study: does the WM-811K 9-class checkpoint, as donor, help the mixed-type
model? Donor vs from scratch at 1 %, 5 %, 10 % and 100 % of the mixed training split, three
training seeds at the small fractions, on the real MixedWM38 subset.

    python scripts/transfer_study.py --workdir /work/transfer \\
        --donor donor-9class-52px.pt \\
        --data ../shared/data/mixedwm38/mixedwm38-subset.npz \\
        --reuse scratch-f1.00-s0=/work/mixedrun/pipelines/mixed

Every run is the mixed pipeline's own stages (their commands rendered from
``pipelines/mixed/dvc.yaml`` with the run's params, as ``dvc repro`` renders them): ingest,
split and shard once (every run sees the same split), then per run train, infer, calibrate,
thresholds and evaluate. A run differs from the others only in ``train.fraction`` (a stratified
share of the training split, drawn from ``train.seed``, so a donor run and a scratch run at one
seed train on the same maps), ``train.init`` (the donor, by path and SHA-256) and
``train.seed``; the recipe is the committed 100 % run's (``real-bce-52px``: BCE, CBAM, 52 px,
standard stem, AdamW 1e-3, batch 64). What is fixed by this protocol, for both arms alike:

- the epoch budget (:data:`BUDGET`: the 100 % recipe's 12 epochs, early stopping on validation
  macro-F1 with patience 4, at every fraction), with an epoch of about
  :data:`EPOCH_SHARE` of the training split (``train.epoch_maps``): a 1 % set (116 maps, two
  optimizer steps) is passed whole eleven times between two validations, the 5 % set twice, the
  10 % set once, so that each takes about as many steps per epoch as the 10 % set. Measured
  first: with one pass per epoch, the 1 % scratch run stopped at epoch 7 of 30 having taken
  14 steps (validation macro-F1 0.15 at epoch 1, then 0 while it learned to predict nothing),
  a protocol that measures the early-stopping rule rather than the donor;
- ``infer.views: 1`` (no TTA), to keep 20 runs affordable on a 2-core CPU (the committed
  headline run serves 8 views);
- the served point is ``thresholds.objective: macro_f1``, fit on validation; evaluate reports
  validation and test. Which arm to use at a fraction is read off validation; test is reported.

Results go to ``--out`` (default ``pipelines/mixed/results/transfer/<run>/``): the run's
metrics (train, calibrate, thresholds, evaluate), curves, effective params, timing and
provenance (``run.json``: arm, fraction, seed, donor SHA-256, commit, processor, command).
A run whose folder already holds ``evaluate.json`` is skipped, so the study resumes where it
stopped, and a training killed half-way goes on from its last finished epoch
(``WAFER_RESUME_DIR``, default ``<workdir>/resume``; wafer.model.resume); ``--reuse NAME=DIR``
takes the trained model of an earlier run of the same params (checked) instead of training it
again. ``python scripts/report_mixed.py`` renders the table and the plot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from wafer.config.mixed import MIXED_SECTIONS
from wafer.config.params import validate_all
from wafer.config.pipeline import pipeline_paths
from wafer.core.io import sha256_file, write_json
from wafer.model.resume import RESUME_ENV
from wafer.tools.machine import environment, git
from wafer.tools.recipes import apply_overrides, parse_override
from wafer.tools.render import render_stages
from wafer.tools.run_stages import run_command

ROOT = Path(__file__).resolve().parents[1]
PIPE = ROOT / "pipelines" / "mixed"
OUT = PIPE / "results" / "transfer"
# dvc.yaml's paths, relative to the pipeline's folder (a run folder has the same layout)
PATHS = {k: v.relative_to(PIPE) for k, v in pipeline_paths(PIPE).items()}
SHARED = ("ingested", "split", "shards")  # made once, linked into every run
DATA_STAGES = ("ingest", "split", "shard")
RUN_STAGES = ("train", "infer", "calibrate", "thresholds", "evaluate")
FRACTIONS = (0.01, 0.05, 0.1, 1.0)
ARMS = ("scratch", "donor")
# the committed 100 % run's recipe (pipelines/mixed/results/real-bce-52px/command.txt)
RECIPE: dict[str, Any] = {
    "shard.input_px": 52,
    "train.stem": "standard",
    "train.loss": "bce",
    "train.lr": 0.001,
    "train.ema_decay": 0.0,
    "infer.views": 1,
    "thresholds.objective": "macro_f1",
}
BUDGET = {f: (12, 4) for f in FRACTIONS}  # (epochs, patience) per fraction
EPOCH_SHARE = 0.1  # an epoch is about this share of the training split
# what a reused model must have been trained with (the rest of train.* is RECIPE/params.yaml)
TRAIN_KEYS = ("loss", "cbam", "stem", "epochs", "lr", "batch_size", "patience", "seed", "augment")


def run_name(arm: str, fraction: float, seed: int) -> str:
    return f"{arm}-f{fraction:.2f}-s{seed}"


def plan(seeds: list[int], full_seeds: list[int], fractions: list[float]) -> list[tuple]:
    """(arm, fraction, seed) in the order they run: seed by seed over the small fractions (both
    arms of a fraction side by side), the full-size runs last (each costs as much as all the
    small runs of a seed)."""
    small = [f for f in fractions if f < 1.0]
    runs = [(a, f, s) for s in seeds for f in small for a in ARMS]
    if 1.0 in fractions:
        runs += [(a, 1.0, s) for s in full_seeds for a in ARMS]
    return runs


def run_params(
    base: dict,
    data: Path,
    arm: str,
    fraction: float,
    seed: int,
    donor: Path,
    budget: dict[float, tuple[int, int]],
    extra: dict[str, Any],
) -> dict:
    epochs, patience = budget[fraction]
    over = (
        dict(RECIPE)
        | extra
        | {
            "ingest.input": str(data),
            "train.fraction": fraction,
            "train.seed": seed,
            "train.epochs": epochs,
            "train.patience": patience,
            "train.init": str(donor) if arm == "donor" else "",
            "train.init_sha256": sha256_file(donor) if arm == "donor" else "",
        }
    )
    params = apply_overrides(base, over)
    validate_all(params, MIXED_SECTIONS)
    return params


def _stages(params: dict, names: tuple[str, ...]) -> list:
    by_name = {s.name: s for s in render_stages(PIPE, params)}
    return [by_name[n] for n in names]


def _run_stage(stage, cwd: Path, log) -> float:
    """Run one rendered stage in ``cwd``; its wall seconds. Exits on failure."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src")
    env["PYTHONUNBUFFERED"] = "1"
    # a run killed during train resumes after its last epoch (wafer.model.resume); cwd is
    # <workdir>/runs/<run>
    env.setdefault(RESUME_ENV, str(cwd.parents[1] / "resume"))
    t0 = time.perf_counter()
    for cmd in stage.cmds:
        if cmd.startswith("python "):
            cmd = shlex.quote(sys.executable) + cmd[len("python") :]
        rc, _ = run_command(cmd, cwd, env, log, None)
        if rc != 0:
            raise SystemExit(f"stage {stage.name} failed in {cwd} (exit {rc}): see its log")
    return time.perf_counter() - t0


def prepare(workdir: Path, params: dict, log) -> Path:
    """The shared data (ingest, split, shard once) under ``workdir/runs/_data``; links to the
    repository's stages/ and src/ so that the commands' ``../../stages/...`` resolve."""
    for name in ("stages", "src"):
        link = workdir / name
        if not link.exists():
            workdir.mkdir(parents=True, exist_ok=True)
            link.symlink_to(ROOT / name)
    data_dir = workdir / "runs" / "_data"
    if not (data_dir / PATHS["shards"] / "train_x.npy").is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for sub in ("data", "metrics", "plots"):
            (data_dir / sub).mkdir(exist_ok=True)
        for stage in _stages(params, DATA_STAGES):
            print(f"[data] {stage.name}", flush=True)
            _run_stage(stage, data_dir, log)
    return data_dir


def reuse_model(src: Path, run_dir: Path, params: dict) -> None:
    """Take an earlier run's trained model (and its train metrics, curves, timing) after
    checking that it was trained with this run's params."""
    theirs = yaml.safe_load((src / "params.yaml").read_text())
    for section, keys in (("train", TRAIN_KEYS), ("shard", ("input_px",))):
        for k in keys:
            if theirs[section][k] != params[section][k]:
                raise SystemExit(
                    f"--reuse {src}: {section}.{k} is {theirs[section][k]!r} there, "
                    f"{params[section][k]!r} here"
                )
    if theirs["ingest"]["input"].split("/")[-1] != params["ingest"]["input"].split("/")[-1]:
        raise SystemExit(f"--reuse {src}: trained on {theirs['ingest']['input']}")
    for rel in (PATHS["model"], "metrics/train.json", "plots/train_curves.csv"):
        (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, run_dir / rel)
    train = json.loads((run_dir / "metrics" / "train.json").read_text())
    if "train_maps" not in train:  # trained before train.fraction/train.init: every map, no donor
        n = len(np.load(run_dir / PATHS["shards"] / "train_y.npy"))
        write_json(run_dir / "metrics" / "train.json", train | {"train_maps": n, "init": None})
    timing = src / "metrics" / "timing" / "train.json"
    (run_dir / "metrics" / "timing").mkdir(parents=True, exist_ok=True)
    shutil.copy2(timing, run_dir / "metrics" / "timing" / "train.json")


def one_run(
    workdir: Path,
    data_dir: Path,
    out: Path,
    params: dict,
    name: str,
    reuse: Path | None,
    log,
    provenance: dict,
) -> None:
    run_dir = workdir / "runs" / name
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a half-done run starts over
    for sub in ("metrics", "plots", "models"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    for key in SHARED:
        (run_dir / PATHS[key]).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / PATHS[key]).symlink_to(data_dir / PATHS[key])
    (run_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    seconds = {}
    stages = list(RUN_STAGES)
    if reuse is not None:
        reuse_model(reuse, run_dir, params)
        stages.remove("train")
    for stage in _stages(params, tuple(stages)):
        print(f"[{name}] {stage.name}", flush=True)
        seconds[stage.name] = round(_run_stage(stage, run_dir, log), 1)
    dst = out / name
    tmp = out / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for f in ("train", "calibrate", "thresholds", "evaluate"):
        shutil.copy2(run_dir / "metrics" / f"{f}.json", tmp / f"{f}.json")
    shutil.copy2(run_dir / "plots" / "train_curves.csv", tmp / "train_curves.csv")
    shutil.copy2(run_dir / "params.yaml", tmp / "params.yaml")
    train_timing = json.loads((run_dir / "metrics" / "timing" / "train.json").read_text())
    write_json(
        tmp / "run.json",
        provenance
        | {
            "run": name,
            "reused_model_of": str(reuse) if reuse else None,
            "stage_seconds": seconds,
            "train_timing": train_timing,
        },
    )
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)  # whole or not at all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True, help="scratch folder (kept)")
    ap.add_argument("--donor", type=Path, required=True, help="the 9-class checkpoint")
    ap.add_argument("--data", type=Path, required=True, help="MixedWM38 .npz")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--full-seeds", type=int, nargs="+", default=[0], help="seeds at 100 %%")
    ap.add_argument("--reuse", action="append", default=[], metavar="NAME=DIR")
    ap.add_argument("--max-runs", type=int, default=0, help="stop after this many (0: all)")
    ap.add_argument(
        "--no-start-after",
        type=datetime.fromisoformat,
        metavar="YYYY-MM-DDTHH:MM",
        help="start no run after this time (local unless it has an offset; resumable)",
    )
    ap.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="FRACTION:EPOCHS:PATIENCE",
        help="another epoch budget for a fraction (default: BUDGET)",
    )
    ap.add_argument("-S", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    budget = dict(BUDGET)
    for b in args.budget:
        f, e, p = b.split(":")
        budget[float(f)] = (int(e), int(p))
    for f in args.fractions:
        if f not in budget:
            ap.error(f"--fractions: {f} has no epoch budget (one of {sorted(budget)})")
    extra = dict(parse_override(o) for o in args.overrides)
    reuse = dict(r.split("=", 1) for r in args.reuse)
    workdir, out = args.workdir.resolve(), args.out.resolve()
    data, donor = args.data.resolve(), args.donor.resolve()
    base = yaml.safe_load((PIPE / "params.yaml").read_text())
    env = environment(ROOT)
    provenance = {
        "commit": git(ROOT, "rev-parse", "HEAD"),
        "command": shlex.join(["python", "scripts/transfer_study.py", *(argv or sys.argv[1:])]),
        "donor": {"path": str(donor), "sha256": sha256_file(donor)},
        "data": {"path": str(data), "sha256": sha256_file(data)},
        "machine": env,
    }
    workdir.mkdir(parents=True, exist_ok=True)
    done = 0
    with open(workdir / "study.log", "ab") as log:
        first = run_params(base, data, "scratch", args.fractions[0], 0, donor, budget, extra)
        data_dir = prepare(workdir, first, log)
        n_train = len(np.load(data_dir / PATHS["shards"] / "train_y.npy"))
        extra.setdefault("train.epoch_maps", math.ceil(EPOCH_SHARE * n_train))
        for arm, fraction, seed in plan(args.seeds, args.full_seeds, args.fractions):
            name = run_name(arm, fraction, seed)
            if (out / name / "evaluate.json").is_file():
                print(f"[{name}] done already", flush=True)
                continue
            if args.max_runs and done >= args.max_runs:
                break
            # naive: local time; with an offset (…+00:00): compared as such
            deadline = args.no_start_after
            if deadline and datetime.now(deadline.tzinfo) > deadline:
                print(f"[{name}] not started: past {args.no_start_after:%H:%M}", flush=True)
                break
            params = run_params(base, data, arm, fraction, seed, donor, budget, extra)
            src = Path(reuse[name]).resolve() if name in reuse else None
            one_run(
                workdir,
                data_dir,
                out,
                params,
                name,
                src,
                log,
                provenance | {"arm": arm, "fraction": fraction, "seed": seed},
            )
            done += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
