"""Never-seen patterns and similar historical wafers, from the network's penultimate features.

**The index** (:class:`FeatureIndex`, dvc.yaml's ``paths.index``): the L2-normalised penultimate
features of the training maps (averaged over the served TTA views with ``index.tta``), with their
ingested row ids and labels, plus the class means and shared precision matrix
of the raw features (for the Mahalanobis score). Nearest neighbours: scikit-learn's exact
brute-force search on the normalised features (Euclidean, i.e. cosine ranking), or with
``index.search: hnsw`` an HNSW graph stored in the index file (:mod:`wafer.serving.ann`).

**Novelty scores** (:data:`METHODS`; higher = less like anything known):

* ``msp``: 1 - the largest calibrated class probability (Hendrycks & Gimpel, 2017), the baseline;
* ``energy``: ``-T logsumexp(logits / T)`` at the served temperature (Liu et al., 2020);
* ``knn``: distance to the k-th nearest training feature (Sun et al., 2022);
* ``mahalanobis``: smallest Mahalanobis distance to a class mean under one shared covariance
  (Lee et al., 2018).

**Choice, on validation only** (:func:`choose`): a threshold per method is the
``1 - false_flag_rate`` quantile of its scores on the validation maps (all of known classes),
so about that share of known maps is flagged. The method is the one with the best mean
*leave-one-class-out* AUROC on validation: each defect class in turn is made unknown to the
scorer (its logit dropped for msp/energy, its maps removed from the index for knn, its mean
for mahalanobis) and its validation maps are scored against the others'. No held-out class,
and no test map, enters either choice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from wafer.config.rules import NOVELTY_METHODS, TTA_VIEWS
from wafer.core.classes import CLASS_NAMES, NONE_INDEX
from wafer.core.errors import WaferInputError
from wafer.core.io import load_npz, save_npz, sha256_file
from wafer.core.probs import softmax
from wafer.serving.ann import GraphSearch, build_graph, check_search
from wafer.serving.files import Novelty

METHODS = NOVELTY_METHODS
RIDGE = 1e-6  # added to the covariance's diagonal (relative to its mean variance)


@contextlib.contextmanager
def one_blas_thread():
    """BLAS (numpy's and scikit-learn's matrix products, the inverse) on one thread inside:
    its sums then run in one order, so the index, scores and thresholds computed inside are
    the same bytes on any machine of the same processor kind, whatever its core count."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def gaussian_stats(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class means ``(C, D)`` (NaN rows for absent classes) and the precision matrix of the
    shared within-class covariance (float64)."""
    f = np.asarray(features, dtype=np.float64)
    means = np.full((len(CLASS_NAMES), f.shape[1]), np.nan)
    centred = np.empty_like(f)
    for c in np.unique(labels):
        members = labels == c
        means[c] = f[members].mean(axis=0)
        centred[members] = f[members] - means[c]
    cov = centred.T @ centred / max(1, len(f))
    cov += np.eye(len(cov)) * RIDGE * max(float(np.trace(cov)) / len(cov), 1e-12)
    return means, np.linalg.inv(cov)


@dataclass
class FeatureIndex:
    """The index file (``paths.index``): what `wafer predict` needs to score novelty and find
    neighbours."""

    features: np.ndarray  # (N, D) float32, L2-normalised
    rows: np.ndarray  # (N,) int64 rows of the ingested file
    labels: np.ndarray  # (N,) int8 class index
    class_means: np.ndarray  # (C, D) float64 raw-feature means (NaN: class not in the index)
    precision: np.ndarray  # (D, D) float64
    views: int  # TTA views the features average (1: the map as given)
    model_sha256: str
    # index.search hnsw: the serialised HNSW graph over ``features`` (wafer.serving.ann) and the
    # candidates searched per query; None: exact search
    graph: np.ndarray | None = None
    ef_search: int = 0
    _nn: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        features: np.ndarray,
        rows: np.ndarray,
        labels: np.ndarray,
        views: int,
        model_sha256: str,
    ) -> FeatureIndex:
        """The index of these features; ValueError when any is NaN or infinite (a broken
        model: every novelty score and neighbour would be meaningless)."""
        if not np.isfinite(features).all():
            raise ValueError("the training maps' features hold NaN or infinite values")
        labels = np.asarray(labels, dtype=np.int8)
        means, precision = gaussian_stats(features, labels)
        return cls(
            normalise(features),
            np.asarray(rows, dtype=np.int64),
            labels,
            means,
            precision,
            int(views),
            model_sha256,
        )

    def save(self, path: str | Path) -> None:
        save_npz(
            path,
            features=self.features,
            rows=self.rows,
            labels=self.labels,
            class_means=self.class_means,
            precision=self.precision,
            views=np.array(self.views),
            model_sha256=np.array(self.model_sha256),
            **(
                {"graph": self.graph, "ef_search": np.array(self.ef_search)}
                if self.graph is not None
                else {}
            ),
        )

    def with_graph(self, m: int, ef_search: int) -> FeatureIndex:
        """This index with an HNSW graph (``m`` links per node) searched at ``ef_search``."""
        return replace(self, graph=build_graph(self.features, m), ef_search=ef_search, _nn={})

    @classmethod
    def load(cls, path: str | Path) -> FeatureIndex:
        """Read and check an index file (``allow_pickle=False``); a bad file raises
        :class:`WaferInputError` naming it and the reason."""
        z = load_npz(path, ("features", "rows", "labels", "class_means", "precision", "views"))
        f, rows, labels = z["features"], z["rows"], z["labels"]
        n, d = f.shape if f.ndim == 2 else (-1, -1)
        means = z["class_means"]
        floating = f.ndim == 2 and np.issubdtype(f.dtype, np.floating)
        absent = np.isnan(means).all(axis=1) if means.ndim == 2 else np.zeros(0, bool)
        problems = [
            (not floating, "features must be (N, D)"),
            (floating and not np.isfinite(f).all(), "features hold NaN or infinite values"),
            (rows.shape != (n,) or labels.shape != (n,), "rows/labels must have N entries"),
            (z["class_means"].shape != (len(CLASS_NAMES), d), "class_means must be (9, D)"),
            (z["precision"].shape != (d, d), "precision must be (D, D)"),
            (
                means.shape == (len(CLASS_NAMES), d) and not np.isfinite(means[~absent]).all(),
                "class_means hold infinite or partly NaN rows (a class absent from the index "
                "is a row of NaN)",
            ),
            (not np.isfinite(z["precision"]).all(), "precision holds NaN or infinite values"),
            (n < 1, "the index is empty"),
            (
                z["views"].shape != () or int(z["views"]) not in TTA_VIEWS,
                f"views must be one of {', '.join(map(str, TTA_VIEWS))}",
            ),
            (
                bool(labels.size) and not (0 <= labels.min() and labels.max() < len(CLASS_NAMES)),
                "labels must be class indices 0..8",
            ),
        ]
        for bad, why in problems:
            if bad:
                raise WaferInputError(path, why)
        graph, ef_search = None, 0
        if "graph" in z:
            check_search("hnsw", f"{path}: its HNSW graph")
            graph, ef_search = z["graph"], int(z["ef_search"])
            if graph.dtype != np.uint8 or graph.ndim != 1 or ef_search < 1:
                raise WaferInputError(path, "graph must be uint8 bytes with ef_search >= 1")
        return cls(
            f.astype(np.float32, copy=False),
            rows.astype(np.int64, copy=False),
            labels.astype(np.int8, copy=False),
            z["class_means"].astype(np.float64, copy=False),
            z["precision"].astype(np.float64, copy=False),
            int(z["views"]),
            str(z["model_sha256"]) if "model_sha256" in z else "",
            graph,
            ef_search,
        )

    def __len__(self) -> int:
        return len(self.rows)

    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (self.features, self.rows, self.labels, self.class_means, self.precision)
        ) + (0 if self.graph is None else self.graph.nbytes)

    def searcher(
        self, exclude_class: int | None = None
    ) -> tuple[NearestNeighbors | GraphSearch, np.ndarray]:
        """A fitted nearest-neighbour search over the index (or over the maps not of
        ``exclude_class``), and the positions in the index it searches: the HNSW graph over the
        whole index when it has one, else (and always for a class left out) exact search."""
        if exclude_class not in self._nn:
            keep = np.flatnonzero(self.labels != (-1 if exclude_class is None else exclude_class))
            if exclude_class is None and self.graph is not None:
                nn = GraphSearch(self.graph, self.ef_search)
            else:
                nn = NearestNeighbors(algorithm="brute", metric="euclidean")
                nn.fit(self.features[keep])
            self._nn[exclude_class] = (nn, keep)
        return self._nn[exclude_class]

    def neighbours(
        self, features: np.ndarray, k: int, exclude_class: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, positions)`` of the ``k`` nearest index maps of each query (raw
        features; normalised here), nearest first."""
        nn, keep = self.searcher(exclude_class)
        k = min(k, len(keep))
        dist, pos = nn.kneighbors(normalise(features), n_neighbors=k)
        return dist.astype(np.float32), keep[pos]


# --- scores -----------------------------------------------------------------------------------


def msp_score(logits: np.ndarray, temperature: float) -> np.ndarray:
    return 1.0 - softmax(logits, temperature).max(axis=1)


def energy_score(logits: np.ndarray, temperature: float) -> np.ndarray:
    return -temperature * logsumexp(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def knn_score(
    index: FeatureIndex, features: np.ndarray, k: int, exclude_class: int | None = None
) -> np.ndarray:
    dist, _ = index.neighbours(features, k, exclude_class)
    return dist[:, -1].astype(np.float64)


def mahalanobis_score(
    index: FeatureIndex, features: np.ndarray, exclude_class: int | None = None
) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    best = np.full(len(f), np.inf)
    for c, mu in enumerate(index.class_means):
        if c == exclude_class or np.isnan(mu).any():
            continue
        d = f - mu
        best = np.minimum(best, ((d @ index.precision) * d).sum(axis=1))
    return best


def scores(
    method: str,
    logits: np.ndarray,
    features: np.ndarray,
    index: FeatureIndex,
    temperature: float,
    k: int,
    exclude_class: int | None = None,
) -> np.ndarray:
    """Novelty score of each map by ``method`` (higher = more novel). With ``exclude_class``,
    as if that class were unknown: its logit dropped, its maps/mean left out of the index."""
    if method in ("msp", "energy"):
        if exclude_class is not None:
            logits = np.delete(logits, exclude_class, axis=1)
        fn = msp_score if method == "msp" else energy_score
        return fn(logits, temperature)
    if method == "knn":
        return knn_score(index, features, k, exclude_class)
    if method == "mahalanobis":
        return mahalanobis_score(index, features, exclude_class)
    raise ValueError(f"novelty method must be one of {', '.join(METHODS)}, not {method!r}")


def threshold_at(known_scores: np.ndarray, false_flag_rate: float) -> float:
    """The score above which ``false_flag_rate`` of these known maps lie (a quantile)."""
    return float(np.quantile(np.asarray(known_scores, dtype=np.float64), 1.0 - false_flag_rate))


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    y = np.r_[np.zeros(len(known)), np.ones(len(unknown))]
    return float(roc_auc_score(y, np.r_[known, unknown]))


@dataclass(frozen=True)
class Choice:
    method: str
    threshold: float
    thresholds: dict[str, float]  # every method's threshold on validation
    proxy_auroc: dict[str, float]  # mean leave-one-class-out validation AUROC per method
    proxy_per_class: dict[str, dict[str, float]]  # method -> class -> AUROC


def choose(
    val_logits: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    index: FeatureIndex,
    temperature: float,
    k: int,
    false_flag_rate: float,
    method: str,
    min_support: int = 10,
) -> Choice:
    """Thresholds and the method, from validation only (module docstring)."""
    thresholds = {
        m: threshold_at(scores(m, val_logits, val_features, index, temperature, k), false_flag_rate)
        for m in METHODS
    }
    per_class: dict[str, dict[str, float]] = {m: {} for m in METHODS}
    in_index = set(np.unique(index.labels).tolist())
    for c in range(len(CLASS_NAMES)):
        members = val_labels == c
        if c == NONE_INDEX or c not in in_index or members.sum() < min_support:
            continue
        for m in METHODS:
            s = scores(m, val_logits, val_features, index, temperature, k, exclude_class=c)
            per_class[m][CLASS_NAMES[c]] = auroc(s[~members], s[members])
    proxy = {
        m: float(np.mean(list(v.values()))) if v else float("nan") for m, v in per_class.items()
    }
    if method == "auto":
        ranked = [m for m in METHODS if not np.isnan(proxy[m])]
        method = max(ranked, key=lambda m: proxy[m]) if ranked else "msp"
    elif method not in METHODS:
        raise ValueError(f"novelty method must be auto or one of {', '.join(METHODS)}")
    return Choice(method, thresholds[method], thresholds, proxy, per_class)


# --- retrieval --------------------------------------------------------------------------------


def retrieval_metrics(
    query: np.ndarray,
    query_labels: np.ndarray,
    base: np.ndarray,
    base_labels: np.ndarray,
    ks: Sequence[int] = (5, 10),
    chunk: int = 256,
) -> dict:
    """Same-class retrieval of each query among ``base`` (cosine ranking of the L2-normalised
    rows): precision@k and average precision over the whole ranking, per class (queries of
    that class) and their macro mean over the classes queried."""
    q, b = normalise(query), normalise(base)
    counts = np.bincount(base_labels, minlength=len(CLASS_NAMES))
    prec = {kk: np.zeros(len(q)) for kk in ks}
    ap = np.zeros(len(q))
    for i in range(0, len(q), chunk):
        sim = q[i : i + chunk] @ b.T
        order = np.argsort(-sim, axis=1, kind="stable")
        hits = base_labels[order] == query_labels[i : i + chunk, None]
        for kk in ks:
            prec[kk][i : i + chunk] = hits[:, :kk].mean(axis=1)
        cum = np.cumsum(hits, axis=1)
        ranks = np.arange(1, hits.shape[1] + 1)
        n_pos = np.maximum(counts[query_labels[i : i + chunk]], 1)
        ap[i : i + chunk] = (hits * cum / ranks).sum(axis=1) / n_pos
    per_class = {}
    for c in np.unique(query_labels):
        m = query_labels == c
        per_class[CLASS_NAMES[c]] = {
            **{f"p@{kk}": float(prec[kk][m].mean()) for kk in ks},
            "map": float(ap[m].mean()),
            "queries": int(m.sum()),
        }
    macro = {
        key: float(np.mean([v[key] for v in per_class.values()]))
        for key in [*(f"p@{kk}" for kk in ks), "map"]
    }
    return {"macro": macro, "per_class": per_class}


def time_queries(index: FeatureIndex, features: np.ndarray, k: int) -> dict:
    """Wall time of the exact k-NN search per query map (the searcher already fitted)."""
    index.searcher()
    t0 = time.perf_counter()
    index.neighbours(features, k)
    seconds = time.perf_counter() - t0
    return {
        "queries": int(len(features)),
        "k": int(k),
        "seconds": seconds,
        "ms_per_map": 1000.0 * seconds / max(1, len(features)),
    }


# --- served --------------------------------------------------------------------------------


@dataclass
class NoveltyScorer:
    """The served novelty score, flag and nearest historical maps: index + novelty.json."""

    index: FeatureIndex
    config: Novelty

    @classmethod
    def load(
        cls,
        index: str | Path,
        novelty: str | Path,
        model_sha256: str,
        temperature: float,
        views: int,
    ) -> NoveltyScorer:
        """Read both files and check that they belong to the served model, to each other and
        to its temperature and TTA views; else one line naming the file."""
        cfg = Novelty.load(novelty)
        if cfg.model_sha256 != model_sha256:
            raise WaferInputError(
                novelty, "set for another model (model_sha256 differs): re-run `dvc repro`"
            )
        if not Path(index).is_file():
            raise WaferInputError(index, "no such file")
        if sha256_file(index) != cfg.index_sha256:
            raise WaferInputError(
                f"{novelty} / {index}", "set for another index (index_sha256 differs)"
            )
        if not np.isclose(cfg.temperature, temperature, rtol=1e-6, atol=1e-9):
            raise WaferInputError(
                novelty,
                f"set at temperature {cfg.temperature}, the calibration serves {temperature}",
            )
        if cfg.views not in (1, views):
            raise WaferInputError(
                novelty, f"features of {cfg.views} TTA views, the served pipeline runs {views}"
            )
        return cls(FeatureIndex.load(index), cfg)

    @property
    def features_mode(self) -> str:
        """Which features of the served forward pass the index was built from."""
        return "mean" if self.config.views > 1 else "first"

    def score(self, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        c = self.config
        return scores(c.method, logits, features, self.index, c.temperature, c.k)

    def flag(self, score: np.ndarray) -> np.ndarray:
        return np.asarray(score) > self.config.threshold
