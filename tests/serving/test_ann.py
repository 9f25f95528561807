"""The HNSW option of the index (index.search: hnsw, wafer.serving.ann): it finds the exact
neighbours on small data, builds the same bytes twice, round-trips through the index file,
leaves leave-one-class-out search exact, and fails in one line without faiss."""

import importlib.util

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from wafer.core.errors import UsageError, WaferInputError
from wafer.core.io import load_npz, save_npz
from wafer.serving.novelty import FeatureIndex, normalise

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("faiss") is None, reason="faiss absent (pip install 'wafer[ann]')"
)


def _index(n: int = 600, d: int = 24, seed: int = 0) -> tuple[FeatureIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 9, n)
    f = (rng.normal(size=(9, d))[y] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    queries = (rng.normal(size=(9, d))[rng.integers(0, 9, 50)] + rng.normal(size=(50, d))).astype(
        np.float32
    )
    return FeatureIndex.build(f, np.arange(n), y, 1, "a" * 64), queries


def test_the_graph_finds_the_exact_neighbours(tmp_path):
    from wafer.serving.ann import GraphSearch, build_graph, recall_at_k

    index, queries = _index()
    graph = build_graph(index.features, 16)
    assert np.array_equal(graph, build_graph(index.features, 16))  # one thread: same bytes
    exact = NearestNeighbors(algorithm="brute").fit(index.features)
    d_true, truth = exact.kneighbors(normalise(queries), n_neighbors=10)
    d, found = GraphSearch(graph, 200).kneighbors(normalise(queries), 10)
    assert recall_at_k(found, truth) >= 0.99
    np.testing.assert_allclose(d[:, 0], d_true[:, 0], rtol=1e-4, atol=1e-5)

    hnsw = index.with_graph(16, 200)
    hnsw.save(tmp_path / "index.npz")
    back = FeatureIndex.load(tmp_path / "index.npz")
    assert back.ef_search == 200 and np.array_equal(back.graph, hnsw.graph)
    assert recall_at_k(back.neighbours(queries, 10)[1], truth) >= 0.99
    assert isinstance(back.searcher(exclude_class=3)[0], NearestNeighbors)  # the choice: exact
    assert not isinstance(back.searcher()[0], NearestNeighbors)  # served: the graph


def test_bad_graph_fields_and_missing_faiss_fail_in_one_line(tmp_path, monkeypatch):
    from wafer.serving.ann import check_search

    index, _ = _index(n=100)
    index.with_graph(8, 32).save(tmp_path / "index.npz")
    z = dict(load_npz(tmp_path / "index.npz"))
    save_npz(tmp_path / "bad.npz", **(z | {"ef_search": np.array(0)}))
    with pytest.raises(WaferInputError, match="ef_search"):
        FeatureIndex.load(tmp_path / "bad.npz")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m: None if m == "faiss" else real(m))
    with pytest.raises(UsageError, match=r"needs faiss: pip install 'wafer\[ann\]'"):
        check_search("hnsw")
    with pytest.raises(UsageError, match="its HNSW graph"):
        FeatureIndex.load(tmp_path / "index.npz")
    check_search("exact")  # exact search needs nothing more
