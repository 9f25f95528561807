"""One lease of the `device` tool's GPU, planned to fit its time: a 224-px throughput probe,
the seed's 224-px recipe at the most epochs that fit, then the held-out-class trainings of the
novelty study in what is left.

    # on the device machine (copy the subset to data/external/ first and carry that folder):
    PYTHONPATH=src python3 scripts/gpu_session.py --budget 540 | tee $OUT/log.txt
    # the CPU rehearsal: synthetic data, tiny sizes, the same code paths
    PYTHONPATH=src python scripts/gpu_session.py --tiny --budget 400 --out /tmp/gpu-rehearsal

Steps, each timed, each failure reported and the next step still run:

1. **probe**: the seed-224 model (standard ResNet-18 + CBAM, focal loss) trained by
   ``wafer.model.train.fit`` on random 224-px maps (two epochs of ``--probe-maps``; the second
   one's maps/s counts, the first warms cuDNN up) and its 8-view TTA inference maps/s.
2. **seed-224**: the whole pipeline with ``train.epochs`` set to the most epochs that fit the
   budget less ``--holdout-seconds`` per held-out class, estimated from the probe (capped at
   the recipe's 40), under ``--time-limit``.
3. **holdout-<class>** for each ``--holdout`` class, if at least ``--holdout-seconds`` are
   left: the ``cpu-headline`` recipe with ``split.holdout=[class]`` through ``train``, with
   ``--holdout-epochs``; its checkpoint comes back in fp16 (the tool returns files of at most
   16 MiB: the tar is split in parts, ``cat holdout-X.tar.part* | tar x`` joins them).

What the first lease (2026-11-27, H200) taught: ``--time-limit`` of ``wafer.tools.run_stages``
counts the data stages too; the 96-px, batch-64 cpu-headline recipe trains at only ~1,700
maps/s on the GPU (the per-step host work dominates small batches: ~25 s an epoch), so its
8 epochs do not fit 240 s; and the seed-224 run, the step that matters most, must not come
last. ``session.json`` (in ``--out``) records every step's seconds, the probe's figures and
the epochs chosen.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = "data/external/LSWMD-subset.pkl.xz"
TRAIN_MAPS, VAL_MAPS, TEST_MAPS = 37028, 5290, 10585  # the real subset's split (split.json)
PART_BYTES = 15 * 2**20


def probe(size: int, maps: int, batch_size: int) -> dict:
    """Train maps/s (fit, 2nd epoch) and TTA inference maps/s of the seed-224 model."""
    import numpy as np
    import torch

    from wafer.config.params import config_from, section_values
    from wafer.config.sections import TrainParams
    from wafer.model.forward import predict_outputs, resolve_device
    from wafer.model.losses import make_loss
    from wafer.model.net import ModelConfig, build_model
    from wafer.model.train import TrainConfig, fit
    from wafer.tools.recipes import apply_overrides, load_recipe, load_yaml

    device = resolve_device("auto")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (maps, size, size), dtype=np.uint8)
    y = rng.integers(0, 9, maps)
    # the seed-224 recipe's model and loss (recipes/seed-224.yaml over params.yaml)
    params = apply_overrides(load_yaml((ROOT / "params.yaml").read_text()), load_recipe("seed-224"))
    train = section_values(params, TrainParams)
    model = build_model(config_from(ModelConfig, train))
    criterion, _ = make_loss(train.loss, y, train.focal_gamma, train.focal_alpha or None)
    cfg = config_from(
        TrainConfig,
        train,
        epochs=2,
        batch_size=batch_size,
        patience=2,
        device=str(device),
        progress=False,
    )
    result = fit(model, criterion, x, y, x[: maps // 4], y[: maps // 4], cfg)
    out = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "size": size,
        "batch_size": batch_size,
        "train_maps_per_s": result.history[-1]["train_maps_per_s"],
        "train_maps_per_s_first_epoch": result.history[0]["train_maps_per_s"],
    }
    for tta in (True, False):
        predict_outputs(model, x[:batch_size], 512, device, views=8 if tta else 1)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        predict_outputs(model, x, 512, device, views=8 if tta else 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[f"infer_maps_per_s_{'tta' if tta else 'no_tta'}"] = maps / (time.perf_counter() - t0)
    return out


def run_stages(args: list[str], timeout: float) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "wafer.tools.run_stages", *args]
    print("$", " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return 124


def export_holdout(name: str, workdir: Path, results: Path, out: Path) -> list[str]:
    """Pack the run's results and its checkpoint (weights in fp16) into parts of a tar."""
    import torch

    ckpt = torch.load(workdir / "models" / "model.pt", map_location="cpu", weights_only=True)
    ckpt["state_dict"] = {
        k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()
    }
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        tar.add(results, arcname=name)
        info = tarfile.TarInfo(f"{name}/model-fp16.pt")
        info.size = buf.getbuffer().nbytes
        buf.seek(0)
        tar.addfile(info, buf)
    data = tar_bytes.getvalue()
    parts = []
    for i in range(math.ceil(len(data) / PART_BYTES)):
        path = out / f"{name}.tar.part{i}"
        path.write_bytes(data[i * PART_BYTES : (i + 1) * PART_BYTES])
        parts.append(path.name)
    return parts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=540, help="seconds for the whole session")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results/gpu")))
    p.add_argument("--holdout", action="append", default=None, help="class (repeatable)")
    p.add_argument("--probe-maps", type=int, default=3072)
    p.add_argument("--tiny", action="store_true", help="CPU rehearsal on the synthetic data")
    p.add_argument("--max-epochs", type=int, default=40, help="the seed-224 recipe's epochs")
    p.add_argument("--holdout-seconds", type=int, default=150, help="per held-out class")
    p.add_argument("--holdout-epochs", type=int, default=4)
    args = p.parse_args()
    start = time.monotonic()
    deadline = start + args.budget
    args.out.mkdir(parents=True, exist_ok=True)
    holdouts = args.holdout or ["Scratch", "Donut"]
    size = 32 if args.tiny else 224
    data = ["--synthetic"] if args.tiny else ["--data", DATA]
    tiny = ["-S", "synthesize.n_maps=600", "-S", "shard.input_px=32"] if args.tiny else []
    scale = 480 / TRAIN_MAPS if args.tiny else 1.0  # the synthetic train split at 600 maps
    session: dict = {"budget_s": args.budget, "steps": []}

    def step(name: str, fn) -> object:
        t0 = time.monotonic()
        print(f"\n=== {name} ({t0 - start:.0f} s into the session)", flush=True)
        try:
            value, ok = fn(), True
        except Exception:  # noqa: BLE001 - report, then go on with the next step
            traceback.print_exc()
            value, ok = None, False
        session["steps"].append(
            {"step": name, "seconds": round(time.monotonic() - t0, 1), "ok": ok}
        )
        (args.out / "session.json").write_text(json.dumps(session, indent=2) + "\n")
        return value

    probe_maps = 256 if args.tiny else args.probe_maps
    figures = step("probe", lambda: probe(size, probe_maps, 128))
    session["probe"] = figures
    print(json.dumps(figures, indent=2), flush=True)

    # seed-224 with the epochs that fit: data stages + per-epoch cost + what follows training
    left = deadline - time.monotonic() - args.holdout_seconds * len(holdouts)
    if figures:
        train_mps = figures["train_maps_per_s"]
        tta_mps = figures["infer_maps_per_s_tta"]
        val_mps = figures["infer_maps_per_s_no_tta"]
    else:  # no probe: a guess that errs on the short side
        train_mps, tta_mps, val_mps = 1000.0, 500.0, 3000.0
    per_epoch = scale * (TRAIN_MAPS / train_mps + VAL_MAPS / val_mps) * 1.1
    fixed = 120.0 + scale * (VAL_MAPS + TEST_MAPS) / tta_mps  # ingest/split/shard, eval, CAMs
    epochs = max(1, min(args.max_epochs, int((left - fixed - 20) // per_epoch)))
    if args.tiny:
        epochs = min(epochs, 2)
    session["seed-224-plan"] = {
        "seconds_left": round(left, 1),
        "estimated_epoch_s": round(per_epoch, 1),
        "estimated_fixed_s": round(fixed, 1),
        "epochs": epochs,
    }
    print(json.dumps(session["seed-224-plan"]), flush=True)

    started = time.monotonic()

    def seed224() -> int:
        limit = max(30, int(left - (time.monotonic() - started) - 15))
        rc = run_stages(
            ["seed-224", *data, *tiny, "-S", f"train.epochs={epochs}"]
            + ["--name", "seed-224", "--archive-dir", str(args.out), "--time-limit", str(limit)]
            + ["--out", str(ROOT / "results" / "gpu" / "seed-224")],
            timeout=limit + 10,
        )
        if rc != 0:
            raise RuntimeError(f"seed-224: run_stages exit {rc}")
        return rc

    step("seed-224", seed224)
    for cls in holdouts:
        name = f"holdout-{cls.lower()}"
        workdir = Path(f"/tmp/wafer-{name}")
        results = ROOT / "results" / "gpu" / name

        if deadline - time.monotonic() < args.holdout_seconds:
            print(f"skip {name}: less than {args.holdout_seconds} s left", flush=True)
            continue

        def one(cls=cls, name=name, workdir=workdir, results=results) -> list[str]:
            n = 1 if args.tiny else args.holdout_epochs
            epochs = ["-S", f"train.epochs={n}", "-S", f"train.patience={n}"]
            rc = run_stages(
                ["cpu-headline", *data, *tiny, *epochs, "-S", f"split.holdout=[{cls}]"]
                + ["--name", name, "--workdir", str(workdir), "--keep-workdir"]
                + ["--out", str(results), "--time-limit", str(args.holdout_seconds - 10)]
                + [
                    a
                    for s in ("infer", "calibrate", "thresholds", "index", "evaluate", "gradcam")
                    for a in ("--skip", s)
                ],
                timeout=args.holdout_seconds,
            )
            if rc != 0:
                raise RuntimeError(f"{name}: run_stages exit {rc}")
            return export_holdout(name, workdir, results, args.out)

        session[name] = step(name, one)

    session["total_s"] = round(time.monotonic() - start, 1)
    (args.out / "session.json").write_text(json.dumps(session, indent=2) + "\n")
    print(json.dumps(session, indent=2))
    return 0 if all(s["ok"] for s in session["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
