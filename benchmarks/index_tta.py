"""Do TTA-averaged features make a better index? The `index` stage's figures with the features
of the map as given (``index.tta: false``, the default) against the mean over its 8 D4 views,
on a subset of a trained pipeline's maps, in one run.

Measured for both, on validation maps only (the figures decide a default, so no test map is
read): same-class retrieval (macro precision@5/@10 and mAP of validation queries among the
indexed training maps) and the feature scores' leave-one-class-out validation AUROC (knn,
mahalanobis: the figure that chooses the novelty method), plus the seconds each took.

    python benchmarks/index_tta.py --workdir /path/to/pipeline --train-maps 8000 \\
        --queries 2000 --out docs/benchmarks/index_tta.json

``--workdir`` holds a pipeline's outputs (model, shards, logits and calibration at dvc.yaml's
``paths``), e.g. a `dvc exp` workspace or a `wafer.tools.run_stages --keep-workdir` folder; k, the
batch size and the false-flag rate are its params.yaml's `index` values unless given.
"""

import time
from pathlib import Path

import numpy as np
import typer

from wafer.config.params import load_section
from wafer.config.pipeline import pipeline_paths
from wafer.config.sections import IndexParams
from wafer.core.io import write_json
from wafer.data.files import Logits, load_shard
from wafer.model.checkpoint import load_model
from wafer.model.forward import predict_outputs
from wafer.serving.files import Calibration
from wafer.serving.novelty import FeatureIndex, choose, retrieval_metrics
from wafer.tools.machine import benchmark_header

app = typer.Typer(add_completion=False)


@app.command()
def main(
    workdir: Path = typer.Option(..., help="a pipeline's outputs"),
    train_maps: int = typer.Option(8000, help="training maps indexed (random subset)"),
    queries: int = typer.Option(2000, help="validation maps (random subset)"),
    k: int = typer.Option(None, help="[default: index.k]"),
    batch_size: int = typer.Option(None, help="[default: index.batch_size]"),
    seed: int = typer.Option(0, help="draw of the subsets"),
    out: Path = typer.Option(None, help="write the figures here (JSON)"),
) -> None:
    paths = pipeline_paths(workdir)
    params = load_section(workdir / "params.yaml", IndexParams)
    k, batch_size = k or params.k, batch_size or params.batch_size
    net, _ = load_model(paths["model"], "cpu")
    temperature = Calibration.load(paths["calibration"]).temperature
    lg = Logits.load(paths["logits"])
    rng = np.random.default_rng(seed)
    pick = {}
    shards = {}
    for part, n in (("train", train_maps), ("val", queries)):
        sh = load_shard(paths["shards"], part)
        pick[part] = np.sort(rng.choice(len(sh.y), min(n, len(sh.y)), replace=False))
        shards[part] = sh
    result: dict = {
        **benchmark_header("benchmarks/index_tta.py"),
        "workdir": str(workdir),
        "train_maps": len(pick["train"]),
        "queries": len(pick["val"]),
    }
    for tta in (False, True):
        t0 = time.perf_counter()
        feats = {
            part: predict_outputs(
                net,
                np.asarray(shards[part].x[pick[part]]),
                batch_size,
                "cpu",
                views=8 if tta else 1,
                features="mean",
            ).features
            for part in ("train", "val")
        }
        seconds = time.perf_counter() - t0
        y = {part: shards[part].y[pick[part]] for part in feats}
        index = FeatureIndex.build(feats["train"], pick["train"], y["train"], 8 if tta else 1, "")
        c = choose(
            lg.logits["val"][pick["val"]],
            feats["val"],
            y["val"],
            index,
            temperature,
            k,
            params.false_flag_rate,
            "auto",
        )
        r = retrieval_metrics(feats["val"], y["val"], feats["train"], y["train"])
        result["tta" if tta else "plain"] = {
            "feature_seconds": seconds,
            "retrieval_macro": r["macro"],
            "proxy_auroc": {m: c.proxy_auroc[m] for m in ("knn", "mahalanobis")},
        }
        print(f"tta={tta}: {result['tta' if tta else 'plain']}", flush=True)
    if out is not None:
        write_json(out, result)


if __name__ == "__main__":
    app()
