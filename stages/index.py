"""Stage `index`: the embedding index of the training maps, the novelty score and its threshold
(fit and chosen on validation), and how well both work on test.

Writes the index (wafer.serving.novelty.FeatureIndex: L2-normalised penultimate features of the
training maps with their ingested row ids and labels, the class means and shared precision for
Mahalanobis: what `wafer predict` searches), novelty.json (wafer.serving.files.Novelty: the method,
every method's threshold, k, the false-flag rate they were set for, bound to the model and the
index by SHA-256) and the
metrics:

* novelty: each method's leave-one-class-out validation AUROC (the choice) and its false-flag
  rate on known test maps; with `split.holdout`, the AUROC and the detection rate at the chosen
  threshold of the held-out class's test maps against the known ones, per method;
* retrieval: precision@5/@10 and mean average precision of same-class retrieval of the test
  maps among the training maps, per class, for the features and for the raw-pixel baseline
  (fail dies block-max resized to `baseline_size` px);
* the index's size, extrapolated to the full WM-811K (query time per map in
  metrics/timing/<--timing>.json, the stage's name, machine-dependent).

MSP and energy use the evaluated logits (the infer stage's) at the served temperature, so the
scores describe exactly what `wafer predict` serves. wafer.serving.novelty has the methods.
"""

# ruff: noqa: E402 - the kernel choice below must come before numpy loads OpenBLAS
import os

# numpy's (and scipy's) OpenBLAS chooses its kernels by CPU model, and two kernel sets round the
# index's products differently: from the same features (the model and logits bit-identical),
# an AMD EPYC on which OpenBLAS 0.3.31 chose its AVX-512 (SkylakeX) kernels and a Zen 5 on which
# it chose Haswell's wrote different index files, novelty thresholds and retrieval figures
# (OPENBLAS_CORETYPE=SkylakeX on the second reproduced the first's bytes). One kernel set, there
# on every x86-64 CPU with AVX2, makes them the same wherever the features are the same (a value
# set in the environment is kept; other BLAS libraries ignore the variable).
os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")

from dataclasses import replace
from pathlib import Path

import numpy as np
import typer

from wafer.config.params import load_section
from wafer.config.sections import IndexParams
from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError, one_line_errors
from wafer.core.io import sha256_file, write_json, write_timing
from wafer.data.files import Logits, SplitFile, load_shard
from wafer.data.shard import resize_stack
from wafer.model.checkpoint import load_model
from wafer.model.forward import predict_outputs, resolve_device
from wafer.model.runtime import QuantizationError, make_runtime
from wafer.serving.ann import recall_at_k
from wafer.serving.files import Calibration, Novelty
from wafer.serving.novelty import (
    METHODS,
    FeatureIndex,
    auroc,
    choose,
    one_blas_thread,
    retrieval_metrics,
    scores,
    time_queries,
)

app = typer.Typer(add_completion=False)

WM811K_LABELED, WM811K_ALL = 172_950, 811_457
RETRIEVAL_KS = (5, 10)


def pixels(x: np.ndarray, size: int) -> np.ndarray:
    """The raw-pixel baseline's vectors: the fail-die mask block-max resized to size x size."""
    return resize_stack((np.asarray(x) == 2).astype(np.uint8), size).reshape(len(x), -1)


def search_report(index: FeatureIndex, queries: np.ndarray, k: int) -> dict:
    """The served search; for hnsw its recall@k against exact search on ``queries`` (the
    validation maps: the threshold of the knn score is set on the graph's distances)."""
    if index.graph is None:
        return {"method": "exact"}
    _, truth = replace(index, graph=None, _nn={}).neighbours(queries, k)
    _, found = index.neighbours(queries, k)
    return {
        "method": "hnsw",
        "ef_search": index.ef_search,
        f"recall_at_{k}_val": recall_at_k(found, truth),
    }


@app.command()
@one_line_errors
def main(
    params: Path = typer.Option(..., "--params", help="params.yaml (section index)"),
    model: Path = typer.Option(..., "--model"),
    shards: Path = typer.Option(..., "--shards"),
    split: Path = typer.Option(..., "--split", help="its held-out classes"),
    logits: Path = typer.Option(..., "--logits"),
    calibration: Path = typer.Option(..., "--calibration"),
    out: Path = typer.Option(..., "--out"),
    novelty: Path = typer.Option(..., "--novelty"),
    metrics: Path = typer.Option(..., "--metrics"),
    timing_name: str = typer.Option(
        ..., "--timing", help="metrics/timing/<name>.json: the stage's name (index, index_student)"
    ),
) -> None:
    p = load_section(params, IndexParams)
    k, baseline_size = p.k, p.baseline_size
    dev = resolve_device(p.device)
    net, _ = load_model(model, dev)
    model_sha = sha256_file(model)
    cal = Calibration.load(calibration)
    temperature = cal.temperature
    lg = Logits.load(logits)
    for path, fit_for in ((calibration, cal.model_sha256), (logits, lg.model_sha256)):
        if fit_for != model_sha:
            raise WaferInputError(path, f"not made with {model} (model_sha256 differs)")
    if p.tta and lg.views == 1:
        raise WaferInputError(logits, "index.tta needs the served pipeline's TTA (infer.views > 1)")
    views = lg.views if p.tta else 1  # the features average the served views, or the map as given
    try:  # the served runtime: the features served (int8: the graph calibrate serves)
        run = make_runtime(net, dev, lg.runtime, cal.quantization)
    except QuantizationError as exc:
        raise WaferInputError(calibration, str(exc)) from None
    holdout = list(SplitFile.load(split).holdout)

    feats, labels, rows, x = {}, {}, {}, {}
    for part in ("train", "val", "test"):
        sh = load_shard(shards, part)
        if part != "train" and not np.array_equal(sh.rows, lg.rows[part]):
            raise WaferInputError(logits, f"{part} rows differ from {shards}'s")
        out_s = predict_outputs(
            run, sh.x, p.batch_size, views=views, progress=True, features="mean"
        )
        feats[part], labels[part], rows[part], x[part] = out_s.features, sh.y, sh.rows, sh.x
    # BLAS on one thread from here: the covariance, its inverse and the distances are then summed
    # in one order, so index.npz, novelty.json and the metrics are byte-identical whatever the
    # machine's core count (multithreaded BLAS moved the precision matrix by ~3e-6).
    with one_blas_thread():
        try:
            index = FeatureIndex.build(
                feats["train"], rows["train"], labels["train"], views, model_sha
            )
        except ValueError as exc:
            raise WaferInputError(model, str(exc)) from None
        if p.search == "hnsw":
            index = index.with_graph(p.hnsw_m, p.hnsw_ef_search)
        index.save(out)

        choice = choose(
            lg.logits["val"],
            feats["val"],
            labels["val"],
            index,
            temperature,
            k,
            p.false_flag_rate,
            p.method,
        )
        held = [CLASS_NAMES.index(c) for c in holdout]
        unknown = np.isin(labels["test"], held)
        test_scores = {
            m: scores(m, lg.logits["test"], feats["test"], index, temperature, k) for m in METHODS
        }
        test: dict = {
            "known_maps": int((~unknown).sum()),
            "known_false_flag_rate": {
                m: float(np.mean(s[~unknown] > choice.thresholds[m]))
                for m, s in test_scores.items()
            },
        }
        if held:
            test |= {
                "holdout": list(holdout),
                "unknown_maps": int(unknown.sum()),
                "auroc": {m: auroc(s[~unknown], s[unknown]) for m, s in test_scores.items()},
                "detection_rate": {
                    m: float(np.mean(s[unknown] > choice.thresholds[m]))
                    for m, s in test_scores.items()
                },
            }

        known = ~unknown  # retrieval: the test maps of classes the index holds
        q_lab, b_lab = labels["test"][known], labels["train"]
        retrieval = {
            "queries": int(known.sum()),
            "index_maps": int(len(b_lab)),
            "embedding": retrieval_metrics(
                feats["test"][known], q_lab, feats["train"], b_lab, RETRIEVAL_KS
            ),
            f"pixels_{baseline_size}px": retrieval_metrics(
                pixels(x["test"][known], baseline_size),
                q_lab,
                pixels(x["train"], baseline_size),
                b_lab,
                RETRIEVAL_KS,
            ),
        }
        per_map = index.nbytes() / len(index)
        write_json(
            metrics,
            {
                "index": {
                    "maps": len(index),
                    "dim": int(index.features.shape[1]),
                    "views": views,
                    "search": search_report(index, feats["val"], max(k, max(RETRIEVAL_KS))),
                    "bytes": index.nbytes(),
                    "bytes_per_map": per_map,
                    f"bytes_at_{WM811K_LABELED}_maps": per_map * WM811K_LABELED,
                    f"bytes_at_{WM811K_ALL}_maps": per_map * WM811K_ALL,
                },
                "novelty": {
                    "method": choice.method,
                    "false_flag_rate": p.false_flag_rate,
                    "k": k,
                    "validation": {
                        "proxy_auroc": choice.proxy_auroc,
                        "proxy_auroc_per_class": choice.proxy_per_class,
                        "thresholds": choice.thresholds,
                    },
                    "test": test,
                },
                "retrieval": retrieval,
            },
        )
        Novelty(
            method=choice.method,
            threshold=choice.threshold,
            thresholds=choice.thresholds,
            k=k,
            false_flag_rate=p.false_flag_rate,
            temperature=temperature,
            views=views,
            model_sha256=model_sha,
            index_sha256=sha256_file(out),
        ).save(novelty)
    timing = time_queries(index, feats["test"][:2000], max(k, max(RETRIEVAL_KS)))
    timing[f"ms_per_map_at_{WM811K_ALL}_maps"] = timing["ms_per_map"] * WM811K_ALL / len(index)
    write_timing(timing_name, timing)
    print(
        f"index: {len(index)} maps x {index.features.shape[1]} features "
        f"({index.nbytes() / 2**20:.1f} MiB); novelty method {choice.method} (validation "
        f"leave-one-class-out AUROC {choice.proxy_auroc[choice.method]:.3f}), threshold "
        f"{choice.threshold:.4g}; retrieval mAP {retrieval['embedding']['macro']['map']:.3f} "
        f"vs pixels {retrieval[f'pixels_{baseline_size}px']['macro']['map']:.3f}; "
        f"{timing['ms_per_map']:.2f} ms per query"
    )


if __name__ == "__main__":
    app()
