"""Approximate nearest neighbours for an index of fab size (``index.search: hnsw``).

Exact search (scikit-learn's brute force, the default) costs one pass over every index feature
per query, so its time grows with the index (docs/SERVING.md measures both). ``hnsw`` adds
FAISS's HNSW graph (``IndexHNSWFlat``: Malkov & Yashunin, 2018) over the same L2-normalised
features to the index file; `wafer predict --neighbours` and the served knn novelty score then
search the graph, and the `index` stage reports its recall@k against exact search on the
validation maps, the maps the novelty threshold is set on (so the threshold is set on the
served, approximate distances). Leave-one-class-out scoring (the method's choice) stays exact.

The graph is built on one thread, so the same features give the same bytes (FAISS inserts in
order and draws levels from a fixed seed); queries use every thread.
"""

from __future__ import annotations

import contextlib
import importlib.util

import numpy as np

from wafer.core.errors import UsageError

EF_CONSTRUCTION = 100  # candidates kept while linking a node: build time against graph quality


def check_search(name: str, what: str = "index.search") -> None:
    """A one-line :class:`UsageError` when ``name`` needs a package this machine lacks."""
    if name == "hnsw" and importlib.util.find_spec("faiss") is None:
        raise UsageError(f"{what} 'hnsw' needs faiss: pip install 'wafer[ann]'")


@contextlib.contextmanager
def _faiss_threads(n: int | None):
    import faiss

    before = faiss.omp_get_max_threads()
    if n is not None:
        faiss.omp_set_num_threads(n)
    try:
        yield faiss
    finally:
        faiss.omp_set_num_threads(before)


def build_graph(features: np.ndarray, m: int) -> np.ndarray:
    """The serialised HNSW graph (uint8) over L2-normalised ``features`` ``(N, D)``."""
    with _faiss_threads(1) as faiss:
        index = faiss.IndexHNSWFlat(features.shape[1], m)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        index.add(np.ascontiguousarray(features, dtype=np.float32))
        return faiss.serialize_index(index)


class GraphSearch:
    """A loaded graph, searched like scikit-learn's ``NearestNeighbors.kneighbors``: Euclidean
    distances and positions in the index, nearest first."""

    def __init__(self, graph: np.ndarray, ef_search: int):
        with _faiss_threads(None) as faiss:
            self.index = faiss.deserialize_index(np.asarray(graph, dtype=np.uint8))
        self.ef_search = ef_search

    def kneighbors(self, queries: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.hnsw.efSearch = max(self.ef_search, n_neighbors)
        d2, pos = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), n_neighbors)
        return np.sqrt(np.maximum(d2, 0.0)), pos.astype(np.int64)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """The share of the exact k nearest (rows of ``exact``) that ``approx`` returns."""
    hits = [len(np.intersect1d(a, e)) / len(e) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits)) if hits else 1.0
