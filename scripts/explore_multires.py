"""Would members at different input sizes make a better ensemble? A validation-only look, before
any serving code is written for it (docs/CROSSFIT.md, "Members at different input sizes").

Reads the validation logits of two or more served models (each a `infer` stage's logits file,
wafer.data.files.Logits: the mean over its TTA views, at its own runtime), checks that they hold
the same validation maps in the same order, and writes for each model and for the equal-weight
logit and probability averages of all of them (as the crossfit `ensemble` stage measures its
averages) the argmax macro-F1 on validation, raw and prevalence-corrected (params.yaml's
`prior.target_prior`). The test arrays are never read: np.load opens an .npz lazily and only
the ``val_*`` entries are touched, so no test figure can steer what is built next.

    python scripts/explore_multires.py --out results/multires-explore/val.json \\
        160px=results/cpu-headline-160-warmup-seed0/logits.npz \\
        224px=results/gpu/seed-224/logits.npz

The averages are not what a served multi-size ensemble would score: each member here sees the
map resized from the raw map at its own size, and the figures are argmax, before temperature and
thresholds. They say whether the route is worth building, nothing more.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from wafer.config.params import load_section
from wafer.config.rules import AVERAGES
from wafer.config.sections import PriorParams
from wafer.core.io import sha256_file, write_json
from wafer.model.net import combine
from wafer.report.evaluate import prior_from_list
from wafer.report.metrics import macro_f1, prevalence_weights

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


def scores(y: np.ndarray, logits: np.ndarray, weights: np.ndarray) -> dict:
    pred = logits.argmax(1)
    return {
        "macro_f1": round(macro_f1(y, pred), 6),
        "macro_f1_prevalence_corrected": round(macro_f1(y, pred, weights), 6),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="NAME=path/to/logits.npz (two or more)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="for the prior")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    named = [m.partition("=") for m in a.models]
    if len(named) < 2 or any(not n or not p for n, _, p in named):
        ap.error("give two or more NAME=path arguments")
    runs = {n: (Path(p), val_arrays(Path(p))) for n, _, p in named}
    (first, (_, ref)), *rest = runs.items()
    for _, (path, v) in rest:
        if not (np.array_equal(v["rows"], ref["rows"]) and np.array_equal(v["y"], ref["y"])):
            print(f"{path}: its validation maps differ from {first}'s", file=sys.stderr)
            return 1
    prior = prior_from_list(load_section(a.params, PriorParams).target_prior)
    weights = prevalence_weights(ref["y"], prior)
    stacked = torch.stack([torch.from_numpy(v["logits"]) for _, v in runs.values()])
    out = {
        "split": "val",
        "maps": len(ref["y"]),
        "models": {
            name: {
                "logits": str(path),
                "logits_sha256": sha256_file(path),
                "model_sha256": v["model_sha256"],
                "views": v["views"],
                "runtime": v["runtime"],
                **scores(ref["y"], v["logits"], weights),
            }
            for name, (path, v) in runs.items()
        },
        **{
            f"average_{avg}": scores(ref["y"], combine(stacked, avg).numpy(), weights)
            for avg in AVERAGES
        },
    }
    write_json(a.out, out)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
