"""Multi-label losses, per-label temperatures, per-label thresholds and metrics."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, hamming_loss

from wafer.mixed import metrics
from wafer.mixed.calibration import fit_temperatures, label_ece, sigmoid
from wafer.mixed.thresholds import DEFAULT, fit_thresholds, predict
from wafer.model.losses import BinaryFocalLoss, make_multilabel_loss


def test_bce_focal_and_asl():
    z = torch.tensor([[3.0, -2.0, 0.5], [-1.0, 4.0, -6.0]])
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    assert torch.isclose(make_multilabel_loss("bce", 2, 4, 0.05)(z, y), bce)
    focal = make_multilabel_loss("focal", 2.0, 4, 0.05)(z, y)
    assert 0 < focal < bce  # easy labels weigh less
    asl = make_multilabel_loss("asl", 0.0, 4.0, 0.05)(z, y)
    assert 0 < asl < bce
    # a clipped negative (p < clip) costs nothing
    assert BinaryFocalLoss(0, 4, 0.05)(torch.tensor([[-6.0]]), torch.tensor([[0.0]])) == 0
    assert torch.isfinite(make_multilabel_loss("asl", 1, 4, 0.05)(z * 100, y))
    with pytest.raises(ValueError):
        make_multilabel_loss("ce", 0, 0, 0)


def test_per_label_temperatures_are_recovered():
    rng = np.random.default_rng(0)
    true_z = rng.normal(0, 2.5, size=(6000, 3))
    y = (rng.random(true_z.shape) < sigmoid(true_z)).astype(np.uint8)
    served = true_z * np.array([3.0, 1.0, 0.5])  # over-, well and under-confident
    t = fit_temperatures(served, y)
    assert np.allclose(t, [3.0, 1.0, 0.5], rtol=0.12)
    assert label_ece(sigmoid(served, t), y, 15).mean() < label_ece(sigmoid(served), y, 15).mean()
    y[:, 1] = 0  # no positive: nothing to fit
    assert fit_temperatures(served, y)[1] == 1.0


def test_cost_thresholds_sit_below_f1_thresholds_and_thin_labels_keep_default():
    rng = np.random.default_rng(1)
    y = (rng.random((3000, 2)) < 0.3).astype(np.uint8)
    p = np.clip(0.35 * y + rng.random(y.shape) * 0.65, 0, 1)
    cost, _ = fit_thresholds(p, y, "cost", 10.0, 5)
    f1, _ = fit_thresholds(p, y, "macro_f1", 10.0, 5)
    assert (cost < f1).all()
    fn_cost = ((y == 1) & (predict(p, cost) == 0)).sum()
    assert fn_cost <= ((y == 1) & (predict(p, f1) == 0)).sum()
    y[:, 1] = 0
    y[:3, 1] = 1
    t, unfit = fit_thresholds(p, y, "macro_f1", 10.0, 5)
    assert t[1] == DEFAULT and unfit == ["Donut"]


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(2)
    y = (rng.random((400, 8)) < 0.3).astype(np.uint8)
    pred = np.where(rng.random(y.shape) < 0.85, y, 1 - y)
    y[:, 5] = 0  # a label no map has: left out of the macro mean
    present = [k for k in range(8) if y[:, k].any()]
    want = f1_score(y[:, present], pred[:, present], average="macro", zero_division=0)
    assert metrics.macro_f1(y, pred) == pytest.approx(want)
    assert metrics.micro_f1(y, pred) == pytest.approx(f1_score(y, pred, average="micro"))
    assert metrics.hamming_loss(y, pred) == pytest.approx(hamming_loss(y, pred))
    assert metrics.exact_match(y, pred) == pytest.approx((y == pred).all(axis=1).mean())
    lab = metrics.per_label(y, pred)
    assert lab["Center"]["escapes"] == int(((y[:, 0] == 1) & (pred[:, 0] == 0)).sum())
    assert lab["Near-full"]["escape_rate"] is None
    m = metrics.label_matrix(y, pred)
    assert m[0, 0] == pytest.approx(lab["Center"]["recall"])
    only_center = (y[:, 0] == 1) & (y[:, 1] == 0)  # co-occurring Donut is not a false alarm
    assert m[0, 1] == pytest.approx(pred[only_center, 1].mean())
    assert m[8, 8] == pytest.approx((pred[y.sum(axis=1) == 0].sum(axis=1) == 0).mean())
    assert np.isnan(m[5]).all()
    ci = metrics.bootstrap(y, pred, 50, 0)
    assert ci["macro_f1"][0] <= metrics.macro_f1(y, pred) <= ci["macro_f1"][1]
    pats = metrics.per_pattern(y, pred)
    assert sum(v["maps"] for v in pats.values()) == 400
