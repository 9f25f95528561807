import numpy as np
import pytest
import torch

from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError
from wafer.model.forward import predict_outputs
from wafer.model.net import ModelConfig, build_model
from wafer.serving.novelty import (
    METHODS,
    FeatureIndex,
    auroc,
    choose,
    energy_score,
    mahalanobis_score,
    msp_score,
    retrieval_metrics,
    scores,
    threshold_at,
)


def _clusters(n_per=40, classes=(0, 1, 2, 8), d=16, seed=0, spread=0.3):
    """Well-separated Gaussian clusters, one per class, and logits that point at them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(CLASS_NAMES), d)) * 3
    f = np.concatenate([centres[c] + spread * rng.normal(size=(n_per, d)) for c in classes])
    y = np.repeat(np.array(classes), n_per)
    logits = np.full((len(y), len(CLASS_NAMES)), -2.0)
    logits[np.arange(len(y)), y] = 4.0
    return f.astype(np.float32), y, logits + 0.1 * rng.normal(size=logits.shape), centres


def test_msp_and_energy_are_higher_for_flat_logits():
    sharp, flat = np.array([[8.0, 0, 0]]), np.array([[1.0, 1, 1]])
    assert msp_score(flat, 1.0)[0] > msp_score(sharp, 1.0)[0]
    assert energy_score(flat, 1.0)[0] > energy_score(sharp, 1.0)[0]
    assert energy_score(np.zeros((1, 3)), 2.0)[0] == pytest.approx(-2.0 * np.log(3))


def test_index_round_trip_and_neighbours(tmp_path):
    f, y, _, _ = _clusters()
    idx = FeatureIndex.build(f, np.arange(len(y)) + 100, y, views=1, model_sha256="a" * 64)
    idx.save(tmp_path / "index.npz")
    back = FeatureIndex.load(tmp_path / "index.npz")
    assert np.array_equal(back.features, idx.features) and np.array_equal(back.rows, idx.rows)
    assert back.model_sha256 == "a" * 64 and back.views == 1
    np.testing.assert_allclose(np.linalg.norm(back.features, axis=1), 1.0, rtol=1e-5)
    dist, pos = back.neighbours(f[:3], k=5)
    assert pos[:, 0].tolist() == [0, 1, 2] and np.all(np.diff(dist, axis=1) >= 0)
    assert np.all(back.labels[pos] == y[0])  # a tight cluster: its own class first


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda z: z.pop("precision"), "missing array"),
        (lambda z: z.update(rows=z["rows"][:-1]), "rows/labels"),
        (lambda z: z.update(labels=z["labels"] + 20), "class indices"),
        (lambda z: z.update(features=z["features"][:, :3]), "class_means"),
        # non-finite values (issue 29): a traceback with knn and --neighbours, and an inf class
        # mean made every Mahalanobis score null and the flag silently off
        (lambda z: z["features"].__setitem__((0, 0), np.nan), "features hold NaN or infinite"),
        (lambda z: z["class_means"].__setitem__((1, 2), np.inf), "class_means hold infinite"),
        (lambda z: z["precision"].__setitem__((0, 0), np.nan), "precision holds NaN"),
    ],
)
def test_bad_index_files_are_refused_in_one_line(tmp_path, change, reason):
    f, y, _, _ = _clusters()
    FeatureIndex.build(f, np.arange(len(y)), y, 1, "").save(tmp_path / "i.npz")
    with np.load(tmp_path / "i.npz") as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(WaferInputError, match=reason) as err:
        FeatureIndex.load(tmp_path / "bad.npz")
    assert "\n" not in str(err.value) and "bad.npz" in str(err.value)
    with pytest.raises(WaferInputError, match="no such file"):
        FeatureIndex.load(tmp_path / "absent.npz")


def test_an_index_of_non_finite_features_is_not_built():
    f, y, _, _ = _clusters()
    f[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        FeatureIndex.build(f, np.arange(len(y)), y, 1, "")


def test_the_index_stage_is_the_same_bytes_whatever_the_thread_count(tmp_path):
    """The covariance, its inverse and the k-NN distances run on one BLAS thread
    (one_blas_thread): the index, novelty.json and the metrics do not move with the core count
    (the precision matrix moved by 3e-6 between 1 and 2 threads, changing dvc.lock)."""
    import os
    import subprocess
    import sys

    f, y, _, _ = _clusters()
    code = (
        "import sys, numpy as np\n"
        "from wafer.serving.novelty import FeatureIndex, mahalanobis_score, one_blas_thread\n"
        "f, y = np.load(sys.argv[1]), np.load(sys.argv[2])\n"
        "with one_blas_thread():\n"
        "    idx = FeatureIndex.build(f, np.arange(len(y)), y, 1, '')\n"
        "    s = mahalanobis_score(idx, f)\n"
        "np.save(sys.argv[3], np.concatenate([idx.precision.ravel(), s]))\n"
    )
    big = np.tile(f, (40, 8)).astype(np.float32) + np.arange(f.shape[1] * 8, dtype=np.float32)
    big += np.random.default_rng(1).normal(0, 0.01, big.shape).astype(np.float32)
    np.save(tmp_path / "f.npy", big)
    np.save(tmp_path / "y.npy", np.tile(y, 40))
    outs = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
        out = tmp_path / f"o{threads}.npy"
        args = [str(tmp_path / "f.npy"), str(tmp_path / "y.npy"), str(out)]
        subprocess.run([sys.executable, "-c", code, *args], env=env, check=True)
        outs.append(np.load(out))
    assert np.array_equal(outs[0], outs[1])


def test_feature_scores_flag_a_class_the_index_never_held():
    f, y, logits, centres = _clusters(classes=(0, 1, 2, 8))
    idx = FeatureIndex.build(f, np.arange(len(y)), y, 1, "")
    rng = np.random.default_rng(5)
    new = (centres[7] + 0.3 * rng.normal(size=(30, f.shape[1]))).astype(np.float32)
    known_q = f[::4] + 0.05
    for method in ("knn", "mahalanobis"):
        s_known = scores(method, logits[::4], known_q, idx, 1.0, 3)
        s_new = scores(method, np.zeros((30, len(CLASS_NAMES))), new, idx, 1.0, 3)
        assert auroc(s_known, s_new) > 0.95, method
    # the Mahalanobis score is the squared distance to the nearest class mean
    m = mahalanobis_score(idx, idx.class_means[[0]])
    assert m[0] == pytest.approx(0.0, abs=1e-6)


def test_choose_sets_thresholds_on_validation_and_picks_the_best_proxy():
    f, y, logits, _ = _clusters(n_per=60)
    idx = FeatureIndex.build(f[::2], np.arange(len(y))[::2], y[::2], 1, "")
    vf, vy, vl = f[1::2], y[1::2], logits[1::2]
    c = choose(vl, vf, vy, idx, 1.0, 3, 0.1, "auto")
    assert set(c.thresholds) == set(METHODS) and c.method in METHODS
    assert c.proxy_auroc[c.method] == max(c.proxy_auroc.values())
    assert set(c.proxy_per_class["knn"]) == {"Center", "Donut", "Edge-Loc"}  # never 'none'
    for m in METHODS:  # about 10 % of the validation maps lie above each threshold
        s = scores(m, vl, vf, idx, 1.0, 3)
        assert np.mean(s > c.thresholds[m]) == pytest.approx(0.1, abs=0.03)
    forced = choose(vl, vf, vy, idx, 1.0, 3, 0.1, method="msp")
    assert forced.method == "msp" and forced.threshold == c.thresholds["msp"]
    with pytest.raises(ValueError, match="novelty method"):
        choose(vl, vf, vy, idx, 1.0, 3, 0.1, method="oracle")


def test_threshold_at_is_the_quantile():
    s = np.arange(100, dtype=float)
    assert threshold_at(s, 0.05) == pytest.approx(94.05)
    assert np.mean(s > threshold_at(s, 0.05)) == pytest.approx(0.05)


def test_retrieval_metrics_by_hand():
    base = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    base_y = np.array([0, 1, 1, 1])
    q = np.array([[1, 0.05], [0, 1]], dtype=np.float32)
    out = retrieval_metrics(q, np.array([0, 1]), base, base_y, ks=(1, 2))
    # query 0 (class 0): ranking 0 (hit), 1, 3, 2 -> P@1 1, P@2 0.5, AP 1
    # query 1 (class 1): ranking 2, 3, 1 (hits), 0 -> P@1 1, P@2 1, AP 1
    assert out["per_class"]["Center"] == {"p@1": 1.0, "p@2": 0.5, "map": 1.0, "queries": 1}
    assert out["per_class"]["Donut"]["map"] == pytest.approx(1.0)
    assert out["macro"]["p@2"] == pytest.approx(0.75)
    # a class-1 query whose only hits come last: AP = mean of (1/2, 2/3, 3/4)... here 2 hits
    far = retrieval_metrics(
        np.array([[1, 0]], dtype=np.float32), np.array([1]), base[[0, 2]], np.array([0, 1]), ks=(1,)
    )
    assert far["per_class"]["Donut"]["map"] == pytest.approx(0.5)


def test_features_come_from_the_same_pass_as_the_served_logits():
    torch.manual_seed(0)
    net = build_model(ModelConfig(stem="compact", cbam=False, cbam_reduction=16)).eval()
    x = np.random.default_rng(0).integers(0, 3, (5, 16, 16), dtype=np.uint8)
    plain = predict_outputs(net, x, 4, "cpu", views=1, features="first")
    np.testing.assert_array_equal(plain.logits, predict_outputs(net, x, 4, "cpu").logits)
    assert plain.features.shape == (5, 512)
    with torch.no_grad():  # the head maps the features to the logits
        head = net.fc(torch.from_numpy(plain.features)).numpy()
    np.testing.assert_allclose(head, plain.logits, rtol=1e-4, atol=1e-5)
    tta = predict_outputs(net, x, 16, "cpu", views=8, features="mean")
    np.testing.assert_array_equal(tta.logits, predict_outputs(net, x, 16, "cpu", views=8).logits)
    with torch.no_grad():  # linear head: mean feature -> mean logits
        head = net.fc(torch.from_numpy(tta.features)).numpy()
    np.testing.assert_allclose(head, tta.logits, rtol=1e-4, atol=1e-4)
    first = predict_outputs(net, x, 16, "cpu", views=8, features="first")
    np.testing.assert_allclose(first.features, plain.features, rtol=1e-4, atol=1e-5)
    assert predict_outputs(net, x, 4, "cpu").features is None
    with pytest.raises(ValueError, match="features must be"):
        predict_outputs(net, x, 4, "cpu", features="all")
