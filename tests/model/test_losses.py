import numpy as np
import torch
import torch.nn.functional as F

from wafer.model.losses import FocalLoss, balanced_class_weights, make_loss


def test_focal_with_gamma_zero_equals_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(32, 9) * 3, torch.randint(0, 9, (32,))
    assert torch.allclose(FocalLoss(0.0)(logits, target), F.cross_entropy(logits, target))


def test_focal_down_weights_easy_examples():
    logits = torch.tensor([[6.0, 0.0], [0.2, 0.0]])  # first easy, second hard; both class 0
    target = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, target, reduction="none")
    fl = torch.stack([FocalLoss(2.0)(logits[i : i + 1], target[i : i + 1]) for i in range(2)])
    assert (fl / ce)[0] < 0.01 and (fl / ce)[1] > 0.2


def test_focal_alpha_weights_classes():
    logits, target = torch.zeros(2, 3), torch.tensor([0, 2])
    a = FocalLoss(0.0, alpha=[1.0, 1.0, 3.0])(logits, target)
    assert torch.isclose(a, torch.tensor(np.log(3) * (1 + 3) / 2, dtype=torch.float32))


def test_balanced_class_weights_match_sklearn_formula():
    y = np.array([8] * 80 + [0] * 15 + [7] * 5)
    w = balanced_class_weights(y)
    present = 3
    assert np.isclose(w[8], 100 / (present * 80)) and np.isclose(w[7], 100 / (present * 5))
    assert w[1] == 0.0  # absent class
    loss, weights = make_loss("ce", y, 2.0)
    assert np.allclose(loss.weight.numpy(), w) and weights == w.tolist()
    focal, fw = make_loss("focal", y, focal_gamma=2.0)
    assert isinstance(focal, FocalLoss) and fw is None


def test_focal_loss_on_one_hot_soft_targets_is_the_hard_label_loss():
    import torch.nn.functional as F

    from wafer.model.losses import FocalLoss

    torch.manual_seed(0)
    logits, y = torch.randn(6, 9), torch.randint(0, 9, (6,))
    for alpha in (None, [0.5 + 0.1 * i for i in range(9)]):
        loss = FocalLoss(2.0, alpha)
        hard = loss(logits, y)
        soft = loss(logits, F.one_hot(y, 9).float())
        assert torch.allclose(hard, soft, atol=1e-6)
    # a mix of targets is that mix of the losses (the loss is linear in its target)
    t = torch.softmax(torch.randn(6, 9), 1)
    loss = FocalLoss(2.0)
    mixed = loss(logits, 0.3 * t + 0.7 * F.one_hot(y, 9).float())
    assert torch.allclose(mixed, 0.3 * loss(logits, t) + 0.7 * loss(logits, y), atol=1e-6)


def test_soft_targets_mix_the_teacher_at_its_temperature_with_the_labels():
    from wafer.model.losses import soft_targets

    teacher = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    labels = np.array([0, 1])
    t = soft_targets(labels, teacher, alpha=0.5, temperature=2.0)
    assert t.dtype == np.float32 and np.allclose(t.sum(1), 1)
    p = np.exp(teacher / 2.0) / np.exp(teacher / 2.0).sum(1, keepdims=True)
    assert np.allclose(t, 0.5 * p + 0.5 * np.eye(3)[labels], atol=1e-6)
    assert np.allclose(soft_targets(labels, teacher, 0.0, 1.0), np.eye(3)[labels])
