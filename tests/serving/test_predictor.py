"""The served pipeline (wafer.serving.predictor.Predictor): the same answers as the pipeline
written out by hand, and served files refused unless they belong together."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wafer.core.classes import CLASS_NAMES
from wafer.explain.report import served_cam
from wafer.serving.predictor import Predictor

from conftest import (
    BATCH,
    expected,
    good_maps,
    run_cli,
    wafer,
)


def test_predictor_matches_cli_pipeline(tiny_pipeline):
    p = Predictor.load(
        tiny_pipeline["model"],
        tiny_pipeline["calibration"],
        tiny_pipeline["thresholds"],
        "cpu",
        cam_layer="auto",
        cam_method="gradcam++",
    )
    maps = good_maps()
    rows = p.predict(maps, batch_size=BATCH)
    _, d = expected(tiny_pipeline, maps)
    assert [r["predicted"] for r in rows] == [CLASS_NAMES[k] for k in d.pred]
    for r, probs in zip(rows, d.probs, strict=True):
        assert sum(r["probabilities"].values()) == pytest.approx(1.0)
        np.testing.assert_allclose(list(r["probabilities"].values()), probs, rtol=0, atol=1e-12)
        assert r["p_defect"] == pytest.approx(1 - r["probabilities"]["none"])
    grid = served_cam(p, maps[1], rows[1]["predicted"])
    assert grid.shape == maps[1].shape and (grid >= 0).all()


def _served_copy(tiny_pipeline, d: Path) -> dict[str, Path]:
    d.mkdir()
    out = {}
    for k, p in tiny_pipeline.items():
        out[k] = d / p.name
        out[k].write_bytes(p.read_bytes())
    return out


def _predict_with(tmp_path, files: dict[str, Path]):
    np.save(tmp_path / "m.npy", wafer())
    args = [f"--{k}={v}" for k, v in files.items()]
    return run_cli(["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv"), *args])


def test_served_files_of_another_model_are_refused(tmp_path, tiny_pipeline):
    """calibration.json and thresholds.json record the SHA-256 of the model (and of the logits)
    they were fit on; a mismatched set is refused with one line naming the files."""
    import torch

    from wafer.model.checkpoint import Checkpoint
    from wafer.model.net import ModelConfig, build_model

    files = _served_copy(tiny_pipeline, tmp_path / "other_model")
    torch.manual_seed(1)  # another model in place of the one the files were fit for
    cfg = ModelConfig(stem="compact", cbam=False, cbam_reduction=16)
    Checkpoint.of(build_model(cfg), cfg, 16, {"note": "another model"}).save(files["model"])
    res = _predict_with(tmp_path, files)
    assert res.exit_code == 2 and not (tmp_path / "p.csv").exists()
    msg = res.stderr.strip()
    assert msg.count("\n") == 0 and "Traceback" not in res.output
    assert str(files["calibration"]) in msg and "another model" in msg

    files = _served_copy(tiny_pipeline, tmp_path / "other_logits")
    thr = json.loads(files["thresholds"].read_text())
    thr["logits_sha256"] = "1" * 64  # thresholds fit on other logits than the calibration
    files["thresholds"].write_text(json.dumps(thr))
    res = _predict_with(tmp_path, files)
    msg = res.stderr.strip()
    assert res.exit_code == 2 and msg.count("\n") == 0 and "different logits" in msg
    assert str(files["calibration"]) in msg and str(files["thresholds"]) in msg


@pytest.mark.parametrize(
    ("file", "edit", "field"),
    [
        ("calibration", {"temperature": 0}, "temperature"),
        ("calibration", {"temperature": float("nan")}, "temperature"),
        ("calibration", {"temperature": -1.5}, "temperature"),
        ("thresholds", {"objective": "accuracy"}, "objective"),
        ("thresholds", {"cost_ratio": float("nan")}, "cost_ratio"),
        ("thresholds", {"tau": float("nan")}, "operating_points.cost.tau"),
        ("thresholds", {"tau": 1.5}, "operating_points.cost.tau"),
        ("thresholds", {"threshold": -0.1}, "operating_points.cost.class_thresholds.Center"),
        ("thresholds", {"drop_class": True}, "operating_points.cost.class_thresholds"),
        ("calibration", {"model_sha256": "abc"}, "model_sha256"),
        ("calibration", {"views": 3}, "views"),
        ("calibration", {"views": True}, "views"),
        ("calibration", {"runtime": "tensorrt"}, "runtime"),
    ],
)
def test_invalid_served_fields_are_refused(tmp_path, tiny_pipeline, file, edit, field):
    files = _served_copy(tiny_pipeline, tmp_path / "f")
    data = json.loads(files[file].read_text())
    point = data.get("operating_points", {}).get("cost", {})
    for k, v in edit.items():
        if k == "tau":
            point["tau"] = v
        elif k == "threshold":
            point["class_thresholds"]["Center"] = v
        elif k == "drop_class":
            del point["class_thresholds"]["Scratch"]
        else:
            data[k] = v
    files[file].write_text(json.dumps(data))  # NaN as the bare token a careless writer emits
    res = _predict_with(tmp_path, files)
    msg = res.stderr.strip()
    assert res.exit_code == 2 and msg.count("\n") == 0 and "Traceback" not in res.output
    assert str(files[file]) in msg and f"'{field}'" in msg


def test_served_point_is_reported_per_row(tiny_pipeline):
    p = Predictor.load(
        tiny_pipeline["model"], tiny_pipeline["calibration"], tiny_pipeline["thresholds"], "cpu"
    )
    assert p.serving.objective == "cost" and p.serving.tau == 0.5
    assert p.serving.at("macro_f1").tau == 0.6
    row = p.predict([wafer()])[0]
    assert row["operating_point"] == "cost" and row["tau"] == 0.5


def test_novelty_files_of_another_model_or_index_are_refused(tmp_path, tiny_pipeline):
    files = _served_copy(tiny_pipeline, tmp_path / "other")
    nov = json.loads(files["novelty"].read_text())
    files["novelty"].write_text(json.dumps(nov | {"model_sha256": "2" * 64}))
    res = _predict_with(tmp_path, files)
    msg = res.stderr.strip()
    assert res.exit_code == 2 and msg.count("\n") == 0 and "another model" in msg
    files["novelty"].write_text(json.dumps(nov | {"index_sha256": "3" * 64}))
    res = _predict_with(tmp_path, files)
    msg = res.stderr.strip()
    assert res.exit_code == 2 and "another index" in msg and str(files["index"]) in msg
    files["novelty"].write_text(json.dumps(nov | {"method": "oracle"}))
    res = _predict_with(tmp_path, files)
    assert res.exit_code == 2 and "field 'method'" in res.stderr
    assert not (tmp_path / "p.csv").exists()


def test_the_calibrations_runtime_is_served(tmp_path, tiny_pipeline):
    files = _served_copy(tiny_pipeline, tmp_path / "f")
    eager = Predictor.load(files["model"], files["calibration"], files["thresholds"], "cpu")
    cal = json.loads(files["calibration"].read_text())
    files["calibration"].write_text(json.dumps(cal | {"runtime": "bf16"}))
    bf16 = Predictor.load(files["model"], files["calibration"], files["thresholds"], "cpu")
    assert (eager.runtime.name, bf16.runtime.name) == ("eager", "bf16")
    maps = [wafer(h, w, (h // 2, 2)) for h, w in ((12, 12), (14, 10), (16, 16), (9, 13))]
    a, b = eager.outputs(maps).logits, bf16.outputs(maps).logits
    assert not np.array_equal(a, b)  # bf16 ran, and its logits are the served ones
    np.testing.assert_allclose(a, b, atol=0.05 * max(1.0, np.abs(a).max()))
