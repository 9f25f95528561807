"""Run the pipeline's stages without DVC, exactly as ``dvc repro`` would run their commands.

For machines without DVC (the GPU machine of the ``device`` tool): reads dvc.yaml and
params.yaml at run time, applies a named recipe (``recipes/<name>.yaml``) and ``-S key=value``
overrides, renders each stage's ``cmd``, deps and outs as DVC renders them (``${name.key}``
to the value, from params.yaml and dvc.yaml's ``vars``), writes the effective params.yaml the
stage scripts read, and runs the stages in dependency order (ties in dvc.yaml's
order) with ``PYTHONPATH=src``, stopping at the first failure.

The stages run in a scratch work directory (links to the repository's code, fresh folders for
the outputs), so neither params.yaml nor any tracked metrics or plots of the checkout change.
The run's metrics, timing, plots, effective params.yaml, command, commit, environment (torch,
GPU and CPU names), log and served files (:mod:`wafer.tools.returned`: with ``--archive-dir``,
the large ones in parts beside the results tar) are then copied to ``--out`` (default
``results/gpu/<name>``). ``--train-time-limit``/``--after-train`` bound training by its own time
(``WAFER_TRAIN_TIME_LIMIT``), ``--use PATH=FILE`` takes a skipped stage's output from a file::

    python -m wafer.tools.run_stages seed-224 --dry-run          # print the rendered commands
    python -m wafer.tools.run_stages seed-224 --data data/external/LSWMD-subset.pkl.xz
    python -m wafer.tools.run_stages --synthetic -S shard.input_px=32 -S train.epochs=1 --name tiny

Imports the standard library, PyYAML and NumPy (wafer.core.io); torch only to name the machine.

Why this runner still exists (issue 28, measured 2026-12-02 on the CPU machine): a user's GPU
box has DVC, and the lent GPU machine could have it too. DVC 3.67.1 needs 64 packages that its
image lacks; as Python 3.12 manylinux wheels they weigh 19 MiB (``pip download --no-deps
--only-binary=:all:`` of each, antlr4-python3-runtime 4.9.3 built from its pure-Python sdist),
which with the tracked tree (7 MiB) and the real subset (6.3 MiB) fits the 64 MiB that travels.
But ``dvc exp run`` also needs the git repository there (``.git``, 11.7 MiB, carried by name)
and a ``git`` binary, which the image's package list does not promise, and none of this can be
checked without a lease: this session had none, and a lease's 15 minutes belong to the
``seed-224`` training first. So the runner stays, and its commands are tested against DVC's own
rendering (tests/tools/test_run_stages.py). The next lease can settle it in one minute before
training: carry ``.whl`` and ``.git``, install with ``pip install --no-index --no-deps --target``,
and run ``git --version && python -m dvc exp run --dry``; if both answer, the GPU recipe runs as
``dvc exp run`` and this module goes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from wafer.tools.machine import environment, git
from wafer.tools.recipes import (
    ROOT,
    RecipeError,
)
from wafer.tools.render import (
    RunError,
    Stage,
    choose_stages,
    effective_params,
    missing_inputs,
    producers,
    render_stages,
    served_paths,
    topo_order,
)
from wafer.tools.returned import pack

DEFAULT_DATA = Path("data/external/LSWMD-subset.pkl.xz")
KEYCRE = re.compile(r"(?<!\\)\$\{(?P<inner>.*?)\}")
PLOT_SUFFIXES = (".png", ".csv")


def prepare_workdir(repo: Path, workdir: Path, stages: Sequence[Stage], params: dict) -> None:
    """Links to the repository's top-level entries that hold no stage output (stages/, src/,
    ...), links to existing dependencies inside output folders that no stage writes (such as
    an in-repo data file under data/), the effective params.yaml and a ``python`` shim."""
    roots = {Path(p).parts[0] for s in stages for p in s.products}
    skip = roots | {".git", ".dvc", "results", "params.yaml", ".venv", ".pytest_cache"}
    workdir.mkdir(parents=True, exist_ok=True)
    for entry in repo.iterdir():
        if entry.name not in skip and not (workdir / entry.name).exists():
            (workdir / entry.name).symlink_to(entry.resolve())
    for s in stages:
        for d in s.deps:
            src, dst = repo / d, workdir / d
            inside = not Path(d).is_absolute() and ".." not in Path(d).parts
            if inside and not producers(stages, d) and src.exists() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src.resolve())
        for p in s.products:
            (workdir / p).parent.mkdir(parents=True, exist_ok=True)
    (workdir / ".dvc").mkdir(exist_ok=True)
    for name in ("config", "config.local"):
        if (repo / ".dvc" / name).is_file():
            shutil.copy2(repo / ".dvc" / name, workdir / ".dvc" / name)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shim = workdir / ".bin" / "python"  # `python` in a cmd = this interpreter (python3 only?)
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    shim.chmod(0o755)


def stage_env(repo: Path, workdir: Path) -> dict[str, str]:
    """The environment of a stage: ``PYTHONPATH=<repo>/src``, the python shim first on PATH."""
    env = dict(os.environ)
    src = str((repo / "src").resolve())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join([str(workdir / ".bin"), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_command(
    cmd: str, cwd: Path, env: Mapping[str, str], log, deadline: float | None
) -> tuple[int | None, float]:
    """Run ``cmd`` in a shell, its output teed to stdout and ``log``. Returns the exit status
    (None when ``deadline``, a time.monotonic() value, passed and it was stopped) and the peak
    resident memory in MiB of the command (its largest process: ``os.wait4``'s ``ru_maxrss``,
    which on Linux covers the shell's children too)."""
    proc = subprocess.Popen(
        cmd,
        shell=True,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    timed_out, peak_mib = False, float("nan")
    try:
        while True:
            chunk = proc.stdout.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                log.write(chunk)
            if proc.returncode is None:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    peak_mib = usage.ru_maxrss / 1024  # KiB on Linux
            if proc.returncode is not None and not chunk:
                break
            if deadline is not None and time.monotonic() > deadline:
                if not timed_out:
                    timed_out, deadline = True, time.monotonic() + 15  # then SIGKILL
                    os.killpg(proc.pid, signal.SIGTERM)
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.05)
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    return (None if timed_out else proc.returncode), peak_mib


def use_files(uses: Sequence[str], workdir: Path, stages: Sequence[Stage], run: Sequence[Stage]):
    """Link each ``PATH=FILE`` of ``--use`` into the work folder: PATH must be an output of a
    stage of dvc.yaml that does not run (one that runs would write over it)."""
    for text in uses:
        path, sep, file = text.partition("=")
        path = os.path.normpath(path.strip())
        given = Path(file.strip()).expanduser()
        if not sep or not path or not file.strip():
            raise RunError(f"--use {text!r}: write PATH=FILE")
        writers = producers(stages, path)
        if not writers:
            raise RunError(f"--use {text!r}: {path} is no stage's output in dvc.yaml")
        running = [w.name for w in writers if w in run]
        if running:
            raise RunError(f"--use {text!r}: stage {running[0]} runs and writes {path}: --skip it")
        if not given.is_file():
            raise RunError(f"--use {text!r}: no file {given}")
        dst = workdir / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        dst.symlink_to(given.resolve())


# --- what the run leaves behind ---------------------------------------------------------------


def collect(workdir: Path, out: Path, stages: Sequence[Stage]) -> list[str]:
    """Copy the declared metrics (``*.json``) to ``out/``, ``metrics/timing/*.json`` to
    ``out/timing/`` and the declared plot files (png, csv; not under data/) to ``out/``."""
    copied = []
    for s in stages:
        files = [m for m in s.metrics if m.endswith(".json")]
        files += [p for p in s.products if p.endswith(PLOT_SUFFIXES) and Path(p).parts[0] != "data"]
        for f in files:
            if (workdir / f).is_file():
                shutil.copy2(workdir / f, out / Path(f).name)
                copied.append(Path(f).name)
    timing = workdir / "metrics" / "timing"
    for f in sorted(timing.glob("*.json")) if timing.is_dir() else []:
        (out / "timing").mkdir(exist_ok=True)
        shutil.copy2(f, out / "timing" / f.name)
        copied.append(f"timing/{f.name}")
    return copied


def summary(out: Path) -> str:
    """One line: device, train throughput, epochs and test macro-F1 of a finished run."""

    def read(name: str) -> dict:
        try:
            return json.loads((out / name).read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    env, timing, train, ev = (
        read("env.json"),
        read("timing/train.json"),
        read("train.json"),
        read("evaluate.json"),
    )
    parts = [f"device {env.get('device_name', '?')}"]
    if timing:
        parts.append(
            f"train {timing.get('train_maps_per_s', 0):.0f} maps/s over "
            f"{timing.get('epochs_run', '?')} epochs ({timing.get('train_seconds', 0):.0f} s)"
        )
    if train:
        parts.append(f"{train.get('input_size', '?')} px, best epoch {train.get('best_epoch')}")
    if "macro_f1" in ev:
        parts.append(f"test macro-F1 {ev['macro_f1']:.4f}")
    return ", ".join(parts)


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The runner's options (see the module docstring)."""
    p = argparse.ArgumentParser(
        prog="python -m wafer.tools.run_stages",
        description="Run dvc.yaml's stages without DVC, with a named recipe and overrides.",
    )
    p.add_argument("recipe", nargs="?", help="recipes/<recipe>.yaml (none: params.yaml as is)")
    p.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params.yaml value (repeatable)",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument(
        "--data",
        default=str(DEFAULT_DATA),
        help="WM-811K data for ingest.input (a ragged-maps .npz, or a pickle: naming it here is "
        "trusting it, ingest.trust_pickle=true), relative to the repository "
        f"(default: {DEFAULT_DATA})",
    )
    data.add_argument(
        "--synthetic",
        action="store_true",
        help="keep params.yaml's ingest.input (the synthesize stage's output)",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="STAGE",
        help="leave this stage out (repeatable), for example --skip gradcam",
    )
    p.add_argument(
        "--no-prune",
        action="store_true",
        help="also run stages whose outputs no running stage reads",
    )
    p.add_argument("--name", help="run name (default: the recipe's, or 'params')")
    p.add_argument("--out", type=Path, help="results folder (default: results/gpu/<name>)")
    p.add_argument(
        "--archive-dir",
        type=Path,
        help="also pack the results into <dir>/<name>.tar.gz (the device tool "
        "returns at most 8 files: pass $OUT)",
    )
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a new temp folder)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the scratch folder")
    p.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop the running stage after this long in all, then save what exists",
    )
    p.add_argument(
        "--train-time-limit",
        type=float,
        metavar="SECONDS",
        help="stop training between epochs so that it ends within this many seconds of "
        "training (steps and validation only: not the data stages or what follows; "
        "WAFER_TRAIN_TIME_LIMIT); the run goes on with the best epoch so far",
    )
    p.add_argument(
        "--after-train",
        type=float,
        metavar="SECONDS",
        help="with --time-limit: keep this many seconds of it for what follows training (its "
        "end, infer, calibrate, thresholds, evaluate...): training's own limit becomes at most "
        "what is left of --time-limit when train starts, less this",
    )
    p.add_argument(
        "--return-file",
        action="append",
        default=[],
        metavar="PATH",
        help="also copy this output (a path of dvc.yaml, e.g. data/logits.npz) to the results "
        "(repeatable)",
    )
    p.add_argument(
        "--use",
        action="append",
        default=[],
        metavar="PATH=FILE",
        help="take FILE as the output PATH of a stage that does not run (with --skip), e.g. "
        "to build the index here from a returned model: --skip train --use "
        "models/model.pt=results/gpu/seed-224/served/model.pt (repeatable)",
    )
    p.add_argument("--repo", type=Path, default=ROOT, help="repository root (dvc.yaml)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Render, run, collect; exit status 0, 1 (a stage failed), 2 (bad input), 124 (time)."""
    args = parse_args(argv)
    repo = args.repo.resolve()
    started = time.monotonic()
    deadline = started + args.time_limit if args.time_limit else None
    try:
        data = None if args.synthetic else args.data
        if data is not None and not Path(data).is_absolute() and ".." in Path(data).parts:
            data = str((repo / data).resolve())  # the stages run in a work folder elsewhere
        params, changes = effective_params(repo, args.recipe, args.overrides, data)
        stages = topo_order(render_stages(repo, params))
        run, skipped = choose_stages(stages, args.skip, prune=not args.no_prune)
        if data is not None and not args.dry_run:
            given = Path(data)
            if not (given if given.is_absolute() else repo / given).is_file():
                raise RunError(
                    f"no data file {data}: copy the subset there, e.g. mkdir -p "
                    f"{DEFAULT_DATA.parent} && cp ../shared/data/wm811k-subset/"
                    f"LSWMD-subset.pkl.xz {DEFAULT_DATA} (or pass --data PATH / --synthetic)"
                )
    except (RecipeError, RunError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name = args.name or args.recipe or "params"
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        print(f"error: run name {name!r}: use letters, digits, '.', '_', '-'", file=sys.stderr)
        return 2
    command = shlex.join(["python", "-m", "wafer.tools.run_stages", *(argv or sys.argv[1:])])
    for stage, why in skipped.items():
        print(f"skip {stage}: {why}")
    if args.dry_run:
        for s in run:
            for cmd in s.cmds:
                print(f"{s.name}: {cmd}" if s.wdir == "." else f"{s.name} (in {s.wdir}): {cmd}")
        return 0

    # the git state before the run writes anything: its own results folder (untracked, or a
    # committed earlier run it replaces) would otherwise read as an uncommitted change
    commit, machine = git(repo, "rev-parse", "HEAD") or "unknown", environment(repo)
    out = (args.out or repo / "results" / "gpu" / name).resolve()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix=f"wafer-{name}-"))).resolve()
    if out == workdir or out in workdir.parents or workdir in out.parents:
        print("error: --out and --workdir must not hold one another", file=sys.stderr)
        return 2
    try:
        prepare_workdir(repo, workdir, stages, params)
        use_files(args.use, workdir, stages, run)
        missing = missing_inputs(run, workdir)
        if missing:
            raise RunError(f"inputs that no running stage writes are missing: {'; '.join(missing)}")
    except (RunError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = stage_env(repo, workdir)
    if args.train_time_limit is not None:
        env["WAFER_TRAIN_TIME_LIMIT"] = str(args.train_time_limit)
    record: dict[str, Any] = {"name": name, "recipe": args.recipe, "changes": changes}
    record["stages"], status = [], 0
    print(f"run {name}: {len(run)} stages in {workdir}, results to {out}")
    with open(out / "log.txt", "wb") as log:
        for s in run:
            t0, peak = time.monotonic(), 0.0
            stage_env_ = env
            if s.name == "train" and deadline is not None and args.after_train is not None:
                left = deadline - time.monotonic() - args.after_train
                limit = min(args.train_time_limit or left, left)
                if limit <= 0:
                    msg = f"error: no time left to train ({left:.0f} s after --after-train)\n"
                    print(msg, end="", file=sys.stderr)
                    log.write(msg.encode())
                    record["stages"].append({"stage": s.name, "seconds": 0.0, "exit": None})
                    status, args.keep_workdir = 124, True
                    break
                stage_env_ = {**env, "WAFER_TRAIN_TIME_LIMIT": f"{limit:.0f}"}
                note = f"train: time limit {limit:.0f} s of training (--after-train)\n"
                print(note, end="")
                log.write(note.encode())
            for cmd in s.cmds:
                banner = f"== {s.name}: {cmd}\n".encode()
                sys.stdout.buffer.write(banner)
                sys.stdout.flush()
                log.write(banner)
                rc, cmd_peak = run_command(cmd, workdir / s.wdir, stage_env_, log, deadline)
                peak = max(peak, cmd_peak)
                if rc != 0:
                    break
            seconds = round(time.monotonic() - t0, 2)
            record["stages"].append(
                {"stage": s.name, "seconds": seconds, "peak_rss_mib": round(peak, 1), "exit": rc}
            )
            if rc != 0:
                rest = [r.name for r in run[run.index(s) + 1 :]]
                reason = "stopped at --time-limit" if rc is None else f"failed (exit {rc})"
                msg = f"error: stage {s.name} {reason} after {seconds} s; not run: "
                msg += f"{', '.join(rest) or 'none'}; work folder kept: {workdir}"
                print(msg, file=sys.stderr)
                log.write(f"{msg}\n".encode())
                status, args.keep_workdir = (124 if rc is None else 1), True
                break
    record["total_seconds"] = round(time.monotonic() - started, 2)
    record["skipped"] = skipped
    collect(workdir, out, stages)
    for f in args.return_file:
        if (workdir / f).is_file():
            shutil.copy2(workdir / f, out / Path(f).name)
    (out / "timing").mkdir(exist_ok=True)
    (out / "timing" / "run_stages.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (out / "command.txt").write_text(command + "\n")
    (out / "commands.sh").write_text(
        "# the stage commands as run (DVC's rendering of dvc.yaml), from a work folder that\n"
        "# links the repository's stages/ and src/; PYTHONPATH=src\n"
        + "".join(f"{c}\n" for s in run for c in s.cmds)
    )
    (out / "commit.txt").write_text(commit + "\n")
    (out / "env.json").write_text(json.dumps(machine, indent=2) + "\n")
    print(f"{name}: {summary(out)}; results in {out}")
    if args.archive_dir:
        args.archive_dir.mkdir(parents=True, exist_ok=True)
    served = pack(workdir, out, name, served_paths(repo, params), args.archive_dir)
    for artifact, e in served["served"].items():
        where = e.get("left_behind") or (f"{len(e['parts'])} parts" if e["parts"] else "served/")
        print(f"{name}: served {artifact} ({e['file']}): {where}")
    if args.archive_dir:
        with tarfile.open(args.archive_dir / f"{name}.tar.gz", "w:gz") as tar:
            tar.add(out, arcname=name)
        print(f"{name}: packed into {args.archive_dir / f'{name}.tar.gz'}")
    if not args.keep_workdir and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
