"""Would an ensemble of these models be better than the first? A validation-only look, before
any serving code is written or any pipeline run is paid for (docs/CROSSFIT.md: "Members at
different input sizes", "A CPU route: members fine-tuned from the 224-px model").

Each NAME=PATH is a served model's validation logits (an `infer` stage's logits file,
wafer.data.files.Logits: the mean over its TTA views, at its own runtime) or a model file
(``.pt``), whose validation logits are computed here as `infer` computes them in eager fp32 at
``infer.views`` of ``--params``, on the validation maps of ``--shards``. The models must hold
the same validation maps in the same order. For each model and for the equal-weight logit and
probability averages of all of them (as the crossfit `ensemble` stage combines its members) it
writes the macro-F1 on validation: argmax, raw and prevalence-corrected (``prior.target_prior``),
and prevalence-corrected at the `macro_f1` point fit on those same logits as `calibrate` and
`thresholds` fit it (wafer.serving.refit: in-sample, so optimistic); then each average's
paired-bootstrap gain over the first model, and a control: the first model's logits plus
Gaussian noise (sd 0.3, seed 0), which hold nothing new, scored the same way, to show how far
the in-sample point moves by chance. The test split is never read: np.load opens an .npz lazily
and only the ``val_*`` entries are touched, and a shard folder's validation maps alone are
loaded, so no test figure can steer what is built next.

    python scripts/explore_multires.py --out results/multires-explore/val.json \\
        160px=results/cpu-headline-160-warmup-seed0/logits.npz \\
        224px=results/gpu/seed-224/logits.npz

Models at different input sizes are not scored as a served multi-size ensemble would be: each
saw the map resized from the raw map at its own size. The figures say whether a route is worth
building, nothing more.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from wafer.config.params import load_params, load_section
from wafer.config.rules import AVERAGES
from wafer.config.sections import InferParams, PriorParams
from wafer.core.errors import WaferInputError
from wafer.core.io import sha256_file, write_json
from wafer.data.files import Shard, load_shard
from wafer.model.checkpoint import Checkpoint
from wafer.model.forward import predict_outputs
from wafer.model.net import combine
from wafer.report.evaluate import prior_from_list
from wafer.report.metrics import macro_f1, prevalence_weights
from wafer.serving.refit import paired_vs, point_labels, quality
from wafer.tools.machine import benchmark_header

NOISE_SD = 0.3  # the control's Gaussian noise on the first model's logits (seed 0)

ROOT = Path(__file__).resolve().parents[1]


def val_arrays(path: Path) -> dict:
    """The validation entries of a logits file, and nothing of its test split."""
    with np.load(path, allow_pickle=False) as z:
        return {
            "logits": np.asarray(z["val_logits"], dtype=np.float32),
            "y": np.asarray(z["val_y"]),
            "rows": np.asarray(z["val_rows"]),
            "views": int(z["views"]),
            "runtime": str(z["runtime"]),
            "model_sha256": str(z["model_sha256"]),
        }


def model_val_arrays(path: Path, val: Shard, shards: Path, infer: InferParams) -> dict:
    """A model file's validation logits on the shards' validation maps ``val``, as `infer`
    computes them in eager fp32 (predict_outputs: the mean over ``infer.views`` views)."""
    ckpt = Checkpoint.load(path)
    if val.size != ckpt.input_size:
        raise WaferInputError(path, f"takes {ckpt.input_size}-px maps, not {shards}' {val.size}")
    out = predict_outputs(ckpt.build("cpu"), val.x, infer.batch_size, "cpu", views=infer.views)
    return {
        "logits": out.logits,
        "y": np.asarray(val.y),
        "rows": np.asarray(val.rows),
        "views": infer.views,
        "runtime": "eager",
        "model_sha256": sha256_file(path),
    }


def scores(y: np.ndarray, logits: np.ndarray, weights: np.ndarray) -> dict:
    pred = logits.argmax(1)
    return {
        "macro_f1": round(macro_f1(y, pred), 6),
        "macro_f1_prevalence_corrected": round(macro_f1(y, pred, weights), 6),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=path/to/logits.npz or NAME=model.pt (2+)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="prior, thresholds")
    ap.add_argument("--shards", type=Path, help="the shards a model file's logits are computed on")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    named = [m.partition("=") for m in a.models]
    if len(named) < 2 or any(not n or not p for n, _, p in named):
        ap.error("give two or more NAME=path arguments")
    names = [n for n, _, _ in named]
    if len(set(names)) < len(names) or any(n.startswith(("average_", "control_")) for n in names):
        ap.error("the NAMEs must differ, and none may start with average_ or control_")
    if any(p.endswith(".pt") for _, _, p in named) and a.shards is None:
        ap.error("a model file (.pt) needs --shards")
    infer = load_section(a.params, InferParams)
    val = load_shard(a.shards, "val") if a.shards is not None else None  # read once
    try:
        runs = {
            n: (
                Path(p),
                model_val_arrays(Path(p), val, a.shards, infer)
                if p.endswith(".pt")
                else val_arrays(Path(p)),
            )
            for n, _, p in named
        }
    except WaferInputError as exc:
        print(exc, file=sys.stderr)
        return 1
    (first, (_, ref)), *rest = runs.items()
    for _, (path, v) in rest:
        if not (np.array_equal(v["rows"], ref["rows"]) and np.array_equal(v["y"], ref["y"])):
            print(f"{path}: its validation maps differ from {first}'s", file=sys.stderr)
            return 1
    params = load_params(a.params)
    y = ref["y"]
    prior = prior_from_list(load_section(a.params, PriorParams).target_prior)
    weights = prevalence_weights(y, prior)
    stacked = torch.stack([torch.from_numpy(v["logits"]) for _, v in runs.values()])
    logits = {name: v["logits"] for name, (_, v) in runs.items()}
    logits |= {f"average_{avg}": combine(stacked, avg).numpy() for avg in AVERAGES}
    points = {name: point_labels(lg, y, params) for name, lg in logits.items()}  # one fit each

    def labels(name: str) -> dict:
        return {"argmax": logits[name].argmax(1), "macro_f1_point": points[name][1]}

    noisy = ref["logits"] + np.random.default_rng(0).normal(0.0, NOISE_SD, ref["logits"].shape)
    out = {
        **benchmark_header("scripts/explore_multires.py", argv),  # as every benchmark's JSON
        "split": "val",
        "maps": len(y),
        "models": {
            name: {
                "file": str(path),
                "sha256": sha256_file(path),
                "model_sha256": v["model_sha256"],
                "views": v["views"],
                "runtime": v["runtime"],
                **scores(y, v["logits"], weights),
                "refit": quality(v["logits"], y, params, points[name]),
            }
            for name, (path, v) in runs.items()
        },
        **{
            f"average_{avg}": {
                **scores(y, logits[f"average_{avg}"], weights),
                "refit": quality(logits[f"average_{avg}"], y, params, points[f"average_{avg}"]),
                f"gain_vs_{first}": paired_vs(labels(f"average_{avg}"), labels(first), y, params),
            }
            for avg in AVERAGES
        },
        f"control_{first}_plus_noise": {
            "sd": NOISE_SD,
            "seed": 0,
            "refit": quality(noisy.astype(np.float32), y, params),
        },
    }
    write_json(a.out, out)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
