"""Neighbours at fab scale: is an approximate index fast enough, and does it find the same maps?

The served search (`wafer predict --neighbours K`, the knn novelty score) is scikit-learn's exact
brute-force search over the index's L2-normalised features. This benchmark measures, against it
and in the same process, HNSW graphs from FAISS (``IndexHNSWFlat``) and USearch (``Index``,
f32): build time, the index's size, query time per map (a batch of queries, all threads, as
`wafer predict` queries a chunk) and recall@K (the share of the exact K nearest that the
approximate search returns), on

* the pipeline's own index (the training maps' features) with **validation** maps as queries,
  their features from the served forward pass (as `wafer predict` computes them);
* a synthetic index of WM-811K's full size (811,457 maps): features drawn from the real
  index's class means and shared covariance (the Mahalanobis statistics it stores), classes in
  WM-811K's labeled proportions (params.yaml's prior), queries drawn the same way.

    python benchmarks/ann_index.py --workdir /path/to/pipeline --out docs/benchmarks/ann_index.json
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import typer

from wafer.config.params import load_params, section_values
from wafer.config.pipeline import pipeline_paths
from wafer.config.sections import PriorParams
from wafer.core.io import write_json
from wafer.data.files import load_shard
from wafer.model.checkpoint import load_model
from wafer.model.forward import predict_outputs
from wafer.serving.novelty import FeatureIndex, normalise
from wafer.tools.machine import benchmark_header

app = typer.Typer(add_completion=False)
WM811K_ALL = 811_457


def exact(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """The served search (FeatureIndex.neighbours' searcher): positions, seconds."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(algorithm="brute", metric="euclidean").fit(base)
    t0 = time.perf_counter()
    _, pos = nn.kneighbors(queries, n_neighbors=k)
    return pos, time.perf_counter() - t0


def faiss_hnsw(base, queries, k, m, ef_construction, efs):
    import faiss

    t0 = time.perf_counter()
    index = faiss.IndexHNSWFlat(base.shape[1], m)
    index.hnsw.efConstruction = ef_construction
    index.add(base)
    build = time.perf_counter() - t0
    size = len(faiss.serialize_index(index))
    out = {}
    for ef in efs:
        index.hnsw.efSearch = max(ef, k)
        t0 = time.perf_counter()
        _, pos = index.search(queries, k)
        out[ef] = (pos, time.perf_counter() - t0)
    return build, size, out


def usearch_hnsw(base, queries, k, m, ef_construction, efs):
    from usearch.index import Index

    t0 = time.perf_counter()
    index = Index(
        ndim=base.shape[1],
        metric="l2sq",
        dtype="f32",
        connectivity=m,
        expansion_add=ef_construction,
    )
    index.add(np.arange(len(base)), base)
    build = time.perf_counter() - t0
    size = len(index.save())
    out = {}
    for ef in efs:
        index.expansion_search = max(ef, k)
        t0 = time.perf_counter()
        pos = index.search(queries, k).keys
        out[ef] = (pos.astype(np.int64), time.perf_counter() - t0)
    return build, size, out


LIBRARIES = {"faiss": faiss_hnsw, "usearch": usearch_hnsw}
MODULES = {"faiss": "faiss", "usearch": "usearch"}


def recall(approx: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(a) & set(t)) / len(t) for a, t in zip(approx, truth, strict=True)])
    )


def compare(base, queries, k, m, ef_construction, efs, libraries) -> dict:
    base = np.ascontiguousarray(base, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    truth, seconds = exact(base, queries, k)
    n = len(queries)
    row = {
        "maps": len(base),
        "queries": n,
        "dim": base.shape[1],
        "exact": {"ms_per_query": round(1000 * seconds / n, 3), "bytes": base.nbytes},
    }
    for lib in libraries:
        build, size, res = LIBRARIES[lib](base, queries, k, m, ef_construction, efs)
        row[lib] = {
            "M": m,
            "ef_construction": ef_construction,
            "build_s": round(build, 1),
            "bytes": size,
            "by_ef_search": {
                ef: {
                    "ms_per_query": round(1000 * s / n, 3),
                    f"recall_at_{k}": round(recall(pos, truth), 4),
                }
                for ef, (pos, s) in res.items()
            },
        }
        print(lib, len(base), row[lib], flush=True)
    return row


@app.command()
def main(
    workdir: Path = typer.Option(..., help="a pipeline folder after the `index` stage"),
    out: Path = typer.Option(...),
    k: int = typer.Option(10),
    m: int = typer.Option(16, help="HNSW links per node"),
    ef_construction: int = typer.Option(100),
    ef_search: list[int] = typer.Option([16, 32, 64, 128]),
    queries: int = typer.Option(2000),
    full_size: int = typer.Option(WM811K_ALL, help="maps of the synthetic index"),
    library: list[str] = typer.Option(["faiss", "usearch"]),
    full_size_library: list[str] = typer.Option(["faiss"], help="HNSW builds take minutes"),
    seed: int = 0,
) -> None:
    paths = pipeline_paths(workdir)  # dvc.yaml's paths, in that pipeline
    libraries = [lib for lib in library if importlib.util.find_spec(MODULES[lib]) is not None]
    index = FeatureIndex.load(paths["index"])
    net, _ = load_model(paths["model"], "cpu")
    val = load_shard(paths["shards"], "val")
    pick = np.random.default_rng(seed).permutation(len(val.y))[:queries]
    q = predict_outputs(
        net, np.asarray(val.x)[np.sort(pick)], 256, views=index.views, features="mean"
    ).features
    result: dict = {**benchmark_header("benchmarks/ann_index.py"), "k": k}
    result["real_index_val_queries"] = compare(
        index.features, normalise(q), k, m, ef_construction, ef_search, libraries
    )

    # synthetic features at full size from the real index's Gaussian statistics
    rng = np.random.default_rng(seed)
    prior = np.asarray(
        section_values(load_params(workdir / "params.yaml"), PriorParams).target_prior
    )
    known = ~np.isnan(index.class_means).all(axis=1)
    p = np.where(known, prior, 0.0)
    p /= p.sum()
    cov = np.linalg.inv(index.precision)
    chol = np.linalg.cholesky((cov + cov.T) / 2)

    def draw(n: int) -> np.ndarray:
        cls = rng.choice(len(p), size=n, p=p)
        z = rng.standard_normal((n, len(chol))) @ chol.T
        return normalise((index.class_means[cls] + z).astype(np.float32))

    result["synthetic_full_size"] = compare(
        draw(full_size),
        draw(queries),
        k,
        m,
        ef_construction,
        ef_search,
        [lib for lib in full_size_library if lib in libraries],
    )
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    app()
