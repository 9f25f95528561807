"""Tests of Grad-CAM / Grad-CAM++ (wafer.explain.cam), of the report pieces (wafer.explain.report)
and of
the gradcam stage script."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from wafer.core.classes import CLASS_NAMES
from wafer.core.errors import WaferInputError
from wafer.explain.cam import (
    activations_and_gradients,
    area_share,
    compute_cam,
    energy_share,
    gradcam_pp_weights,
    pointing_hit,
    target_layer,
    upsample_to_grid,
)
from wafer.explain.report import (
    fmt,
    localisation_positions,
    read_predictions,
    render_example,
    select_examples,
)
from wafer.model.checkpoint import Checkpoint
from wafer.model.net import ModelConfig, build_model, one_hot
from wafer.report.predictions import Predictions

from conftest import params_file

STAGE = Path(__file__).resolve().parents[2] / "stages" / "gradcam.py"


# --------------------------------------------------------------------------- toy networks


class QuadrantNet(nn.Module):
    """Identity 1x1 conv features; logit 0 = sum of channel 0 over the top-left quadrant,
    logit 1 = sum of channel 1 over the bottom-right quadrant."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.feat.weight.copy_(torch.eye(2)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.feat(x))
        h, w = a.shape[-2:]
        tl = a[:, 0, : h // 2, : w // 2].sum(dim=(1, 2))
        br = a[:, 1, h // 2 :, w // 2 :].sum(dim=(1, 2))
        return torch.stack([tl, br], dim=1)


class FixedGradNet(nn.Module):
    """Logit = sum(A * G) with A = ident(x): the gradient at A is exactly G."""

    def __init__(self, g: torch.Tensor) -> None:
        super().__init__()
        self.ident = nn.Identity()
        self.register_buffer("g", g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.ident(x)
        return (a * self.g).sum(dim=(1, 2, 3))[:, None]


def _blobs() -> torch.Tensor:
    """Channel 0: a blob in the top-left quadrant; channel 1: a blob in the bottom-right one;
    plus weak noise everywhere."""
    gen = torch.Generator().manual_seed(0)
    x = 0.05 * torch.rand(1, 2, 8, 8, generator=gen)
    x[0, 0, 1:3, 1:3] += 1.0
    x[0, 1, 5:7, 5:7] += 1.0
    return x.repeat(2, 1, 1, 1)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_cam_peaks_where_the_logit_looks(method: str) -> None:
    net = QuadrantNet()
    cams = compute_cam(net, _blobs(), torch.tensor([0, 1]), net.feat, method)
    assert cams.shape == (2, 8, 8) and (cams >= 0).all()
    r0, c0 = np.unravel_index(np.argmax(cams[0]), (8, 8))
    r1, c1 = np.unravel_index(np.argmax(cams[1]), (8, 8))
    assert r0 < 4 and c0 < 4  # class 0: top-left
    assert r1 >= 4 and c1 >= 4  # class 1: bottom-right
    assert cams[0][4:, 4:].max() < 0.1 * cams[0].max()


def test_gradcam_pp_weights_by_hand() -> None:
    acts = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]]])  # (1, 2, 2, 2)
    grads = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    # channel 0: sum A = 10; alpha = g^2 / (2 g^2 + 10 g^3):
    #   g=1 -> 1/12 (relu g = 1), g=-1 -> -1/8 (relu g = 0), g=2 -> 4/88 (relu g = 2), g=0 -> 0/0
    #   w = 1/12 + 2 * 4/88 = 23/132;  channel 1: all-zero gradient -> 0 (no NaN)
    w = gradcam_pp_weights(acts, grads)
    assert w.shape == (1, 2)
    assert w[0, 0].item() == pytest.approx(23 / 132)
    assert w[0, 1].item() == 0.0


def test_compute_cam_by_hand() -> None:
    g = torch.tensor([[[1.0, -1.0], [2.0, 0.0]]])  # (K=1, 2, 2)
    net = FixedGradNet(g)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    pp = compute_cam(net, x, torch.tensor([0]), net.ident, "gradcam++")
    np.testing.assert_allclose(pp[0], 23 / 132 * x[0, 0].numpy(), rtol=1e-6)
    plain = compute_cam(net, x, torch.tensor([0]), net.ident, "gradcam")
    np.testing.assert_allclose(plain[0], 0.5 * x[0, 0].numpy(), rtol=1e-6)  # mean g = 0.5
    with pytest.raises(ValueError):
        compute_cam(net, x, torch.tensor([0]), net.ident, "cam")


def test_resnet_layer4_gradcam_is_cam_and_hooks_survive_inplace() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(stem="compact", cbam=True, cbam_reduction=16)).train()
    x = one_hot(torch.randint(0, 3, (2, 32, 32), dtype=torch.uint8))
    targets = torch.tensor([3, 8])
    cams = compute_cam(model, x, targets, target_layer(model, "layer4"), "gradcam")
    assert model.training  # mode restored
    # Behind global average pooling, Grad-CAM = CAM: relu(sum_k W_ck A_k) / (h w).
    acts = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: acts.setdefault("A", o))
    model.eval()
    with torch.no_grad():
        model(x)
        handle.remove()
        a = acts["A"]
        w = model.fc.weight[targets]
        ref = torch.relu(torch.einsum("bk,bkhw->bhw", w, a)) / a[0, 0].numel()
    np.testing.assert_allclose(cams, ref.numpy(), rtol=1e-4, atol=1e-6)
    # bn2 is followed by the in-place residual add and ReLU: the captured A must be bn2's own
    # output (without the clone in the hook it would be overwritten by the block's output).
    bn2 = target_layer(model, "layer4.stage.1.bn2")
    seen = {}

    def keep(_m, _i, out):
        seen["out"] = out.detach().clone()

    handle = bn2.register_forward_hook(keep)
    a, g, _ = activations_and_gradients(model, x, targets, bn2)
    handle.remove()
    torch.testing.assert_close(a, seen["out"])
    assert a.min() < 0 and g.shape == a.shape  # pre-ReLU values survived
    inner = compute_cam(model, x, targets, bn2, "gradcam++")
    assert inner.shape == (2, 2, 2) and np.isfinite(inner).all() and (inner >= 0).all()


def test_target_layer_names() -> None:
    model = build_model(ModelConfig(stem="compact", cbam=True, cbam_reduction=16))
    assert type(target_layer(model, "layer4")).__name__ == "StageWithCBAM"
    assert target_layer(model, "layer4.stage") is model.layer4.stage
    with pytest.raises(ValueError, match="layer9"):
        target_layer(model, "layer9")


# --------------------------------------------------------------------------- measures


def test_upsample_to_grid() -> None:
    up = upsample_to_grid(np.full((2, 2), 3.0), (5, 7))
    assert up.shape == (5, 7)
    np.testing.assert_allclose(up, 3.0)
    ramp = upsample_to_grid(np.array([[0.0, 1.0]]), (1, 4))
    np.testing.assert_allclose(ramp, [[0.0, 0.25, 0.75, 1.0]])  # align_corners=False
    assert (upsample_to_grid(np.array([[-1.0, 1.0]]), (3, 3)) >= 0).all()


def test_energy_share_pointing_and_chance() -> None:
    m = np.array([[0, 1, 1], [1, 2, 2], [0, 1, 2]], dtype=np.uint8)
    inside = m > 0
    region = m == 2
    cam = np.array([[9.0, 1.0, 0.0], [1.0, 4.0, 2.0], [5.0, 0.0, 2.0]])
    # wafer mass: 1 + 0 + 1 + 4 + 2 + 0 + 2 = 10 (the 9 and 5 are outside); on region: 8
    assert energy_share(cam, region, inside) == pytest.approx(0.8)
    assert pointing_hit(cam, region, inside) == 1.0  # max over the wafer: 4 at (1, 1)
    assert pointing_hit(cam, region) == 0.0  # over all cells the max (9) is off the region
    assert area_share(region, inside) == pytest.approx(3 / 7)
    tie = np.array([[0.0, 5.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.0]])
    assert pointing_hit(tie, region, inside) == 0.0  # first argmax (0, 1) is a passing die
    assert math.isnan(energy_share(np.zeros((3, 3)), region, inside))
    assert math.isnan(pointing_hit(np.zeros((3, 3)), region, inside))
    assert energy_share(cam, np.zeros((3, 3), bool), inside) == 0.0


# --------------------------------------------------------------------------- report pieces


def test_select_examples_rule_and_ties() -> None:
    c0, c1 = CLASS_NAMES[0], CLASS_NAMES[1]
    pred = Predictions(
        row=np.arange(6),
        actual=np.array([c0, c0, c0, c0, c0, c1], dtype=object),
        predicted=np.array([c0, c0, c0, c1, c1, c1], dtype=object),
        confidence=np.array([0.9, 0.5, 0.9, 0.8, 0.8, 0.7]),
    )
    picks = select_examples(pred)
    # ties go to the earlier test map: 0 (not 2) is the most confident, 3 (not 4) the mistake
    assert picks[c0] == [("confident_correct", 0), ("unsure_correct", 1), ("confident_mistake", 3)]
    assert picks[c1] == [("confident_correct", 5)]  # one correct map: no unsure slot
    assert all(picks[c] == [] for c in CLASS_NAMES[2:])


def test_localisation_positions_caps_per_class_in_test_order() -> None:
    y = np.array([0, 1, 0, 0, 1, 0, 0], dtype=np.int64)
    pos, counts = localisation_positions(y, max_maps=2, seed=0)
    assert counts[CLASS_NAMES[0]] == 5 and counts[CLASS_NAMES[1]] == 2
    assert counts[CLASS_NAMES[2]] == 0 and pos.dtype == np.int64
    zero, one = pos[y[pos] == 0], pos[y[pos] == 1]
    assert len(zero) == 2 and (np.diff(zero) > 0).all() and one.tolist() == [1, 4]
    np.testing.assert_array_equal(pos, localisation_positions(y, 2, seed=0)[0])  # seeded


def test_read_predictions_checks_against_the_shard(tmp_path: Path) -> None:
    rows, y = np.array([4, 7]), np.array([0, 1])
    good = pd.DataFrame(
        {"row": rows, "actual": [CLASS_NAMES[0], CLASS_NAMES[1]], "predicted": CLASS_NAMES[:2]}
    ).assign(confidence=[0.6, 0.9])
    path = tmp_path / "p.csv"
    good.to_csv(path, index=False)
    assert len(read_predictions(path, rows, y)) == 2
    for bad, why in (
        (good.drop(columns="confidence"), "missing column"),
        (good.assign(row=[4, 8]), "row differs"),
        (good.assign(predicted=["x", CLASS_NAMES[0]]), "unknown class"),
        (good.assign(actual=CLASS_NAMES[1:3]), "'actual' differs"),
    ):
        bad.to_csv(path, index=False)
        with pytest.raises(WaferInputError, match=why):
            read_predictions(path, rows, y)
    with pytest.raises(WaferInputError, match="no such file"):
        read_predictions(tmp_path / "missing.csv", rows, y)


def test_render_example_and_fmt() -> None:
    m = np.array([[0, 1, 2], [1, 2, 1], [0, 1, 0]], dtype=np.uint8)
    assert render_example(m, np.random.default_rng(0).random((3, 3)), "t")[:4] == b"\x89PNG"
    assert render_example(m, np.zeros((3, 3)), "all zero")[:4] == b"\x89PNG"
    assert fmt(None) == fmt(float("nan")) == "–" and fmt(0.25, 2) == "0.25"


# --------------------------------------------------------------------------- stage


def _setup(tmp_path: Path, masks: bool, cbam: bool, size: int = 16) -> dict[str, Path]:
    from wafer.core.io import save_npz
    from wafer.data.ingest import validate_frame
    from wafer.data.shard import resize_rows
    from wafer.data.synth import class_mix, generate

    df, mk = generate(60, class_mix(0.03), seed=0)
    if masks:
        df["patternMask"] = mk
    ing = validate_frame(df, "synthetic", "drop")
    ingested = tmp_path / "ingested.npz"
    save_npz(ingested, **ing.arrays())
    shards = tmp_path / "shards"
    shards.mkdir()
    rows = np.arange(0, len(ing.labels), 2, dtype=np.int64)  # every other map is "test"
    x = resize_rows(ing.flat, ing.shapes, ing.offsets, rows, size)
    y = ing.labels[rows].astype(np.int64)
    for name, arr in (("x", x), ("y", y), ("rows", rows)):
        np.save(shards / f"test_{name}.npy", arr)
    torch.manual_seed(1)
    cfg = ModelConfig(stem="compact", cbam=cbam, cbam_reduction=16)
    model_path = tmp_path / "model.pt"
    Checkpoint.of(build_model(cfg), cfg, size, {}).save(model_path)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(len(CLASS_NAMES)), size=len(y))
    pred_idx = np.where(rng.random(len(y)) < 0.7, y, probs.argmax(1))
    pred = pd.DataFrame(
        {
            "row": rows,
            "actual": [CLASS_NAMES[i] for i in y],
            "predicted": [CLASS_NAMES[i] for i in pred_idx],
            "confidence": rng.uniform(0.3, 1.0, len(y)),
        }
        | {f"p_{c}": probs[:, i] for i, c in enumerate(CLASS_NAMES)}
    )
    predictions = tmp_path / "predictions.csv"
    pred.to_csv(predictions, index=False)
    return {"model": model_path, "shards": shards, "ingested": ingested, "pred": predictions}


def _stage():
    from typer.testing import CliRunner

    spec = importlib.util.spec_from_file_location("gradcam_stage", STAGE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, CliRunner()


def _args(p: dict[str, Path], out: Path, metrics: Path, **changes) -> list[str]:
    params = params_file(
        p["model"].parent,
        {"gradcam.device": "cpu", "gradcam.max_maps": 4, "gradcam.batch_size": 16}
        | {f"gradcam.{k}": v for k, v in changes.items()},
    )
    return [
        "--params", str(params),
        "--model", str(p["model"]), "--shards", str(p["shards"]),
        "--ingested", str(p["ingested"]), "--predictions", str(p["pred"]),
        "--out-dir", str(out), "--metrics", str(metrics),
    ]  # fmt: skip


def test_stage_end_to_end_synthetic(tmp_path: Path) -> None:
    module, runner = _stage()
    assert runner.invoke(module.app, ["--help"]).exit_code == 0
    p = _setup(tmp_path, masks=True, cbam=False)
    out, metrics = tmp_path / "reports" / "gradcam", tmp_path / "metrics" / "gradcam.json"
    result = runner.invoke(module.app, _args(p, out, metrics))
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    for cls in CLASS_NAMES:
        assert f'id="{cls}"' in page
    pngs = sorted((out / "png").glob("*.png"))
    assert pngs and all(f.read_bytes()[:4] == b"\x89PNG" for f in pngs)
    assert page.count("data:image/png;base64,") == len(pngs)
    m = json.loads(metrics.read_text())
    # default layer 'auto': at 16 px with the compact stem only layer1 keeps >= 7x7 cells
    assert m["method"] == "gradcam++" and m["layer"] == "layer1" and m["cam_size"] == [8, 8]
    assert m["reference"] == "pattern_mask"
    for key in ("trained", "untrained"):
        assert {"mean_energy_share", "mean_pointing_hit", "mean_chance", "per_class"} <= set(m[key])
        assert "none" not in m[key]["per_class"]  # empty masks: not scored
        for v in m[key]["per_class"].values():
            assert {"energy_share", "pointing_hit", "chance", "n"} <= set(v)
            assert 0 < v["chance"] <= 1 and v["n"] + v["zero_cam"] <= 4


def test_stage_real_data_layout_cbam_and_bad_input(tmp_path: Path) -> None:
    module, runner = _stage()
    p = _setup(tmp_path, masks=False, cbam=True)
    out, metrics = tmp_path / "out", tmp_path / "gradcam.json"
    args = _args(p, out, metrics, layer="layer4.stage", method="gradcam", per_class=1)
    result = runner.invoke(module.app, args)
    assert result.exit_code == 0, result.output
    m = json.loads(metrics.read_text())
    assert m["reference"] == "failing_dies" and m["layer"] == "layer4.stage"
    assert "none" in m["trained"]["per_class"]
    assert len(list((out / "png").glob("*.png"))) <= len(CLASS_NAMES)
    bad = pd.read_csv(p["pred"]).iloc[:-1]
    bad.to_csv(p["pred"], index=False)
    result = runner.invoke(module.app, args)
    assert result.exit_code == 2 and "predictions" in result.output
    result = runner.invoke(module.app, _args(p, out, metrics, layer="layer9"))
    assert result.exit_code != 0


def test_auto_layer_keeps_at_least_7x7_cells():
    from wafer.explain.cam import auto_layer, resolve_layer_name

    assert auto_layer("standard", 224) == "layer4"  # 7x7, the seed's setting
    assert auto_layer("compact", 32) == "layer2"  # 8x8 (layer4 would be 2x2)
    assert auto_layer("compact", 64) == "layer3"
    assert auto_layer("standard", 16) == "layer1"
    assert resolve_layer_name("layer4.stage", "compact", 32) == "layer4.stage"
    assert resolve_layer_name("auto", "cifar", 32) == "layer3"
