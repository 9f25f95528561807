"""Tests of batch prediction (wafer.serve.Predictor, wafer.readers) and the `wafer predict` CLI
(wafer.cli)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from wafer.classes import CLASS_NAMES
from wafer.cli import CSV_COLUMNS, app
from wafer.gradcam_report import served_cam
from wafer.io import WaferInputError
from wafer.model import load_checkpoint
from wafer.readers import (
    check_map,
    decode_png,
    encode_png,
    looks_like_wafer,
    png_pixels,
    read_maps,
)
from wafer.serve import Predictor, ServingConfig, predict_outputs
from wafer.shard import resize_map

from conftest import lswmd_frame, wafer, write_legacy_pickle
from conftest import pipeline_args as _pipeline_args

BATCH = 4  # small: several chunks and several forward passes


def good_maps() -> list[np.ndarray]:
    return [
        wafer(12, 12, (5, 5)),
        wafer(25, 27, (3, 12)),
        wafer(30, 20, None),
        wafer(9, 14, (4, 2)),
        wafer(40, 40, (20, 20)),
    ]


def run(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


def pipeline_args(p: dict[str, Path]) -> list[str]:
    return _pipeline_args(p, "--batch-size", str(BATCH))


def expected(p: dict[str, Path], maps: list[np.ndarray]):
    """The served pipeline written out by hand: block-max resize -> TTA logits -> decide."""
    model, payload = load_checkpoint(p["model"], "cpu")
    x = np.stack([resize_map(m, payload["input_size"]) for m in maps])
    serving = ServingConfig.load(p["calibration"], p["thresholds"])
    assert serving.tta
    logits = predict_outputs(model, x, BATCH, "cpu", tta=True).logits
    return serving, serving.decide(logits)


# --------------------------------------------------------------------------- PNG encoding


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (25, 27), (64, 40), (5, 300)])
def test_png_round_trip(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(3):
        m = rng.integers(0, 3, shape).astype(np.uint8)
        m.flat[0] = 1  # at least one die
        data = encode_png(m)
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "L" and im.size == (shape[1], shape[0])
            assert set(np.unique(np.asarray(im))) <= {0, 128, 255}
        np.testing.assert_array_equal(decode_png(data), m)


def test_png_decoding_thresholds_colour_and_16_bit(tmp_path):
    grey = np.array([[0, 63, 64, 128, 191, 192, 255]], dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buf, format="PNG")
    np.testing.assert_array_equal(decode_png(buf.getvalue()), [[0, 0, 1, 1, 1, 2, 2]])
    m = wafer(10, 10, (4, 4))
    levels = np.array([0, 128, 255], dtype=np.uint8)[m]
    Image.fromarray(np.stack([levels] * 3, axis=-1), mode="RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(decode_png(tmp_path / "rgb.png"), m)
    Image.fromarray(levels.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(decode_png(tmp_path / "g16.png"), m)


def test_encode_png_rejects_invalid_maps():
    with pytest.raises(WaferInputError, match="values outside"):
        encode_png(np.full((3, 3), 3))
    with pytest.raises(WaferInputError, match="no die"):
        encode_png(np.zeros((3, 3)))


def test_looks_like_wafer():
    assert looks_like_wafer(wafer(25, 27, (3, 12))) == (True, "")
    assert looks_like_wafer(
        decode_png(encode_png(wafer(30, 20))), png_pixels(encode_png(wafer(30, 20)))
    )[0]
    ok, why = looks_like_wafer(np.ones((20, 20), dtype=np.uint8))
    assert not ok and "too few distinct levels" in why
    square = np.ones((20, 20), dtype=np.uint8)
    square[5, 5] = 2
    ok, why = looks_like_wafer(square)
    assert not ok and "not roughly round" in why
    ok, why = looks_like_wafer(np.pad(wafer(2000, 2000), 1))
    assert not ok and "too large" in why
    photo = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8)
    ok, why = looks_like_wafer(np.digitize(photo, (64, 192)), photo)
    assert not ok and "not close to the grey levels" in why


def test_check_map_reasons():
    assert check_map(np.array([[0, 1], [2, 0]], dtype=np.int64), "f").dtype == np.uint8
    assert check_map(np.array([[0.0, 1.0]]), "f").tolist() == [[0, 1]]
    for bad, reason in [
        (np.array([[0, 3]]), "values outside"),
        (np.array([1, 2]), "1 dimension"),
        (np.zeros((0, 0)), "empty"),
        (np.zeros((4, 4)), "no die"),
        (np.array([[0.5, 1]]), "values outside"),
    ]:
        with pytest.raises(WaferInputError, match=reason) as info:
            check_map(bad, "f.pkl", row=7)
        assert str(info.value).startswith("f.pkl, row 7: ")


# --------------------------------------------------------------------------- reading inputs


def test_read_maps_formats(tmp_path):
    maps = good_maps()
    np.save(tmp_path / "one.npy", maps[0])
    np.save(tmp_path / "stack.npy", np.stack([maps[0], maps[0]]))
    np.savez(tmp_path / "z.npz", a=maps[1], b=np.stack([maps[2], maps[2]]))
    write_legacy_pickle(lswmd_frame([(maps[3], "Center"), (maps[4], None)]), tmp_path / "old.pkl")
    (tmp_path / "notes.txt").write_text("ignored in a folder")
    got = {it.source: it for it in read_maps(tmp_path, trust_pickle=True)}
    d = str(tmp_path)
    assert list(got) == [
        f"{d}/old.pkl row 0",
        f"{d}/old.pkl row 1",  # unlabeled rows are predicted too
        f"{d}/one.npy",
        f"{d}/stack.npy row 0",
        f"{d}/stack.npy row 1",
        f"{d}/z.npz[a]",
        f"{d}/z.npz[b] row 0",
        f"{d}/z.npz[b] row 1",
    ]
    assert all(it.error is None and it.warning is None for it in got.values())
    np.testing.assert_array_equal(got[f"{d}/old.pkl row 1"].map, maps[4])
    np.testing.assert_array_equal(got[f"{d}/z.npz[b] row 1"].map, maps[2])


def test_read_maps_refuses_object_arrays(tmp_path):
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = wafer(6, 6, (2, 2)), wafer(7, 7, (3, 3))
    np.save(tmp_path / "ragged.npy", ragged, allow_pickle=True)
    np.savez(tmp_path / "ragged.npz", ok=wafer(6, 6, (2, 2)), bad=ragged)
    (item,) = read_maps(tmp_path / "ragged.npy")
    assert item.map is None
    msg = str(item.error)
    assert msg.startswith(f"{tmp_path / 'ragged.npy'}: object array")
    assert ".npz" in msg and "wafer convert" in msg and "\n" not in msg
    assert "allow_pickle" not in msg
    items = {it.source.rsplit("[", 1)[1]: it for it in read_maps(tmp_path / "ragged.npz")}
    assert items["ok]"].error is None
    assert "object array" in str(items["bad]"].error)


def test_read_maps_unreadable_and_missing(tmp_path):
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "junk.txt").write_text("?")
    for name, reason in [
        ("junk.pkl", "not a readable pickle"),
        ("junk.npy", "not a readable .npy"),
        ("junk.txt", "unsupported input"),
        ("missing.png", "no such file"),
    ]:
        (item,) = read_maps(tmp_path / name, trust_pickle=True)
        assert str(item.error).startswith(f"{tmp_path / name}: {reason}")
    (tmp_path / "empty").mkdir()
    (item,) = read_maps(tmp_path / "empty")
    assert "no input files" in str(item.error)


# --------------------------------------------------------------------------- the CLI


def write_inputs(d: Path, maps: list[np.ndarray]) -> list[str]:
    """maps[0:2] in an xz pickle, maps[2:4] in an npz (a 2-D and a 3-D member), maps[4] and
    maps[0] as PNGs in a folder; returns the CLI inputs."""
    lswmd_frame([(maps[0], "Center"), (maps[1], None)]).to_pickle(d / "w.pkl.xz")
    np.savez(d / "w.npz", a=maps[2], b=maps[3][None])
    (d / "pngs").mkdir()
    (d / "pngs" / "b.png").write_bytes(encode_png(maps[0]))
    (d / "pngs" / "a.png").write_bytes(encode_png(maps[4]))
    return [str(d / "w.pkl.xz"), str(d / "w.npz"), str(d / "pngs")]


def test_cli_serves_exactly_the_pipeline(tmp_path, tiny_pipeline):
    maps = good_maps()
    inputs = write_inputs(tmp_path, maps)
    order = [maps[0], maps[1], maps[2], maps[3], maps[4], maps[0]]  # pkl, npz, sorted PNGs
    serving, d = expected(tiny_pipeline, order)

    res = run(
        [
            "predict",
            *inputs,
            "--out",
            str(tmp_path / "p.json"),
            "--trust-pickle",
            *pipeline_args(tiny_pipeline),
        ]
    )
    assert res.exit_code == 0, res.output
    assert "maps/s" in res.stdout.strip().splitlines()[-1]
    rows = json.loads((tmp_path / "p.json").read_text())
    assert [r["source"] for r in rows] == [
        f"{inputs[0]} row 0",
        f"{inputs[0]} row 1",
        f"{inputs[1]}[a]",
        f"{inputs[1]}[b] row 0",
        f"{inputs[2]}/a.png",
        f"{inputs[2]}/b.png",
    ]
    for i, r in enumerate(rows):
        assert r["error"] is None and r["warning"] is None
        assert r["predicted"] == CLASS_NAMES[d.pred[i]]
        assert r["defect"] == bool(d.defect[i]) and r["tau"] == serving.tau
        probs = np.array([r["probabilities"][c] for c in CLASS_NAMES])
        np.testing.assert_allclose(probs, d.probs[i], atol=1e-6)
        assert r["confidence"] == pytest.approx(d.probs[i, d.pred[i]], abs=1e-6)
        top = np.argsort(-d.probs[i], kind="stable")[:3]
        assert [t["class"] for t in r["top3"]] == [CLASS_NAMES[k] for k in top]

    res = run(
        ["predict", *inputs, "-o", str(tmp_path / "p.csv"), "--trust-pickle"]
        + pipeline_args(tiny_pipeline)
    )
    assert res.exit_code == 0, res.output
    with open(tmp_path / "p.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == CSV_COLUMNS
    head = ["source", "predicted", "confidence", "defect", "tau", "operating_point", "top3"]
    assert CSV_COLUMNS[:7] == head
    for i, r in enumerate(table):
        assert r["predicted"] == CLASS_NAMES[d.pred[i]] and r["error"] == ""
        assert r["operating_point"] == serving.objective == "cost"
        assert int(r["defect"]) == int(d.defect[i])
        probs = np.array([float(r[f"p_{c}"]) for c in CLASS_NAMES])
        np.testing.assert_allclose(probs, d.probs[i], atol=1e-6)
        assert r["top3"].split(";")[0].split(":")[0] == r["predicted"] or serving.tau > 0


def test_cli_bad_inputs_are_one_line_each_and_the_batch_goes_on(tmp_path, tiny_pipeline):
    good = wafer(20, 20, (9, 9))
    rows = [
        (good, "Center"),
        (np.where(good == 2, 3, good), "Loc"),  # value 3
        (np.array([0, 1, 2]), None),  # 1-D
        (np.zeros((0, 0), dtype=np.uint8), None),  # empty
        (good, None),
    ]
    lswmd_frame(rows).to_pickle(tmp_path / "mixed.pkl")
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "a_good.png").write_bytes(encode_png(good))
    (tmp_path / "pngs" / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    photo = np.random.default_rng(1).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    Image.fromarray(photo, mode="RGB").save(tmp_path / "pngs" / "c_photo.png")
    pkl, pngs = tmp_path / "mixed.pkl", tmp_path / "pngs"
    out = tmp_path / "p.csv"

    res = run(
        ["predict", str(pkl), str(pngs), "--out", str(out), "--trust-pickle"]
        + pipeline_args(tiny_pipeline)
    )
    assert res.exit_code == 0, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 5
    assert lines[:3] == [
        f"error: {pkl}, row 1: map has values outside {{0, 1, 2}}: [3]",
        f"error: {pkl}, row 2: map has 1 dimension(s), shape (3,)",
        f"error: {pkl}, row 3: map is empty, shape (0, 0)",
    ]
    assert lines[3].startswith(f"error: {pngs / 'b_broken.png'}: not a readable image: ")
    assert lines[4].startswith(f"warning: {pngs / 'c_photo.png'}: does not look like a wafer map")
    assert "not close to the grey levels" in lines[-1]
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 8
    predicted = table[table["error"] == ""]
    assert list(predicted["source"]) == [
        f"{pkl} row 0",
        f"{pkl} row 4",
        f"{pngs / 'a_good.png'}",
        f"{pngs / 'c_photo.png'}",
    ]
    assert (predicted["predicted"] != "").all()
    assert predicted["warning"].tolist()[:3] == ["", "", ""]
    assert predicted["warning"].tolist()[3].startswith("does not look like a wafer map")
    failed = table[table["error"] != ""]
    assert list(failed["predicted"]) == [""] * 4
    assert failed["error"].tolist()[0] == f"{pkl}, row 1: map has values outside {{0, 1, 2}}: [3]"

    out.unlink()
    res = run(
        ["predict", str(pkl), "--fail-fast", "--trust-pickle", "--out", str(out)]
        + pipeline_args(tiny_pipeline)
    )
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {pkl}, row 1: map has values outside {{0, 1, 2}}: [3]"
    ]
    assert not out.exists()


def test_cli_cam_dir(tmp_path, tiny_pipeline):
    np.save(tmp_path / "two.npy", np.stack([wafer(16, 16, (4, 4)), wafer(16, 16, (8, 8))]))
    res = run(
        [
            "predict",
            str(tmp_path / "two.npy"),
            "--out",
            str(tmp_path / "p.csv"),
            "--cam-dir",
            str(tmp_path / "cams"),
            *pipeline_args(tiny_pipeline),
        ]
    )
    assert res.exit_code == 0, res.output
    pngs = sorted(p.name for p in (tmp_path / "cams").iterdir())
    assert len(pngs) == 2 and pngs[0].startswith("00000_") and pngs[0].endswith("row_0.png")
    with Image.open(tmp_path / "cams" / pngs[0]) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]


def test_cli_errors_and_help(tmp_path, tiny_pipeline):
    res = run(["--help"])
    assert res.exit_code == 0 and "predict" in res.output
    res = run(["predict", "--help"])
    assert res.exit_code == 0 and "--fail-fast" in res.output and "--cam-dir" in res.output
    np.save(tmp_path / "m.npy", wafer())
    args = pipeline_args(tiny_pipeline)
    missing = tmp_path / "nope.pt"
    res = run(
        [
            "predict",
            str(tmp_path / "m.npy"),
            "-o",
            str(tmp_path / "p.csv"),
            *args,
            "--model",
            str(missing),
        ]
    )
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: {missing}: no such file"
    res = run(["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.txt"), *args])
    assert res.exit_code == 2 and ".csv or .json" in res.output


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
    return run(["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv"), *args])


def test_served_files_of_another_model_are_refused(tmp_path, tiny_pipeline):
    """calibration.json and thresholds.json record the SHA-256 of the model (and of the logits)
    they were fit on; a mismatched set is refused with one line naming the files."""
    import torch

    from wafer.model import ModelConfig, build_model, save_checkpoint

    files = _served_copy(tiny_pipeline, tmp_path / "other_model")
    torch.manual_seed(1)  # another model in place of the one the files were fit for
    cfg = ModelConfig(stem="compact", cbam=False, cbam_reduction=16)
    save_checkpoint(files["model"], build_model(cfg), cfg, 16, {"note": "another model"})
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


def test_predict_streams_in_chunks(tmp_path, tiny_pipeline, monkeypatch):
    """Rows are predicted and written a chunk at a time: a 2-map chunk gives exactly the rows of
    one big chunk, errors in their places, for a .npy stack, a ragged .npz and a bad file."""
    from wafer import cli
    from wafer.io import save_npz

    maps = [wafer(12 + k % 5, 11 + k % 3, (4, 5 + k % 4)) for k in range(7)]
    np.save(tmp_path / "a_stack.npy", np.stack([wafer(12, 12, (k % 9, 3)) for k in range(5)]))
    flat = np.concatenate([m.ravel() for m in maps]).astype(np.uint8)
    shapes = np.array([m.shape for m in maps], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([m.size for m in maps])]).astype(np.int64)
    save_npz(tmp_path / "b_ragged.npz", flat=flat, shapes=shapes, offsets=offsets)
    (tmp_path / "c_bad.npy").write_bytes(b"not an array")
    outs = []
    for chunk in (2, 10_000):
        monkeypatch.setattr(cli, "PREDICT_CHUNK", chunk)
        out = tmp_path / f"p{chunk}.csv"
        res = run(["predict", str(tmp_path), "-o", str(out), *pipeline_args(tiny_pipeline)])
        assert res.exit_code == 0, res.output
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    table = list(csv.DictReader(io.StringIO(outs[0])))
    assert len(table) == 5 + 7 + 1
    assert [bool(r["error"]) for r in table] == [False] * 12 + [True]


def test_readers_are_lazy_and_read_stored_arrays_in_place(tmp_path):
    """read_maps knows the count at once and makes each item only when taken; an uncompressed
    stack is read from the file map by map (FileArray), a compressed one the ordinary way, and
    both give the same maps."""
    from wafer.readers import FileArray, Items

    made = []
    items = Items(3, lambda i: made.append(i) or i)
    assert len(items) == 3 and made == []
    assert list(items) == [0, 1, 2] and items[-1] == 2 and items[1:] == [1, 2]

    stack = np.stack([wafer(10, 10, (k, 2)) for k in range(6)])
    np.save(tmp_path / "s.npy", stack)
    np.savez_compressed(tmp_path / "z.npz", s=stack)
    np.savez(tmp_path / "u.npz", s=stack)
    for name in ("s.npy", "z.npz", "u.npz"):
        got = read_maps(tmp_path / name)
        assert len(got) == 6
        for k, it in enumerate(got):
            np.testing.assert_array_equal(it.map, stack[k], err_msg=name)
    with open(tmp_path / "s.npy", "rb") as fh:
        np.lib.format.read_magic(fh)
        np.lib.format.read_array_header_1_0(fh)
        offset = fh.tell()
    fa = FileArray(tmp_path / "s.npy", offset, stack.shape, stack.dtype)
    np.testing.assert_array_equal(fa[4], stack[4])
    np.testing.assert_array_equal(fa[1:3], stack[1:3])


def test_every_row_gets_novelty_and_the_nearest_training_maps(tmp_path, tiny_pipeline):
    from wafer.novelty import FeatureIndex

    maps = good_maps()
    np.save(tmp_path / "stack.npy", np.stack([resize_map(m, 16) for m in maps]))
    res = run(
        ["predict", str(tmp_path / "stack.npy"), "-o", str(tmp_path / "p.json")]
        + pipeline_args(tiny_pipeline)
        + ["--neighbours", "3"]
    )
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "p.json").read_text())
    index = FeatureIndex.load(tiny_pipeline["index"])
    for r in rows:
        near = r["neighbours"]
        assert len(near) == 3 and r["novelty_method"] == "knn"
        assert [n["distance"] for n in near] == sorted(n["distance"] for n in near)
        for n in near:
            pos = int(np.flatnonzero(index.rows == n["row"])[0])
            assert n["label"] == CLASS_NAMES[index.labels[pos]]
        # knn with k = 3: the score is the distance to the third neighbour
        assert r["novelty_score"] == pytest.approx(near[2]["distance"], rel=1e-5)
        assert r["novel"] == (r["novelty_score"] > 0.05)
    # the same through the library, and the CSV carries the same columns
    p = Predictor.load(
        *(tiny_pipeline[k] for k in ("model", "calibration", "thresholds")),
        "cpu",
        index=tiny_pipeline["index"],
        novelty=tiny_pipeline["novelty"],
    )
    lib = p.predict([resize_map(m, 16) for m in maps], batch_size=BATCH, neighbours=3)
    for a, b in zip(lib, rows, strict=True):
        assert a["novelty_score"] == pytest.approx(b["novelty_score"], rel=1e-6)
    res = run(
        ["predict", str(tmp_path / "stack.npy"), "-o", str(tmp_path / "p.csv")]
        + pipeline_args(tiny_pipeline)
        + ["--neighbours", "2"]
    )
    with open(tmp_path / "p.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert all(r["novel"] in ("0", "1") and float(r["novelty_score"]) > 0 for r in table)
    assert all(len(r["neighbours"].split()) == 2 for r in table)


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


def test_without_the_index_rows_have_no_novelty_and_neighbours_are_refused(
    tmp_path, tiny_pipeline, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # no models/index.npz here
    np.save(tmp_path / "m.npy", wafer())
    three = {k: tiny_pipeline[k] for k in ("model", "calibration", "thresholds")}
    res = run(["predict", "m.npy", "-o", "p.csv", *pipeline_args(three)])
    assert res.exit_code == 0 and "no novelty score" in res.stderr
    with open(tmp_path / "p.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["novelty_score"] == row["novel"] == row["neighbours"] == ""
    res = run(["predict", "m.npy", "-o", "q.csv", *pipeline_args(three), "--neighbours", "2"])
    assert res.exit_code == 2 and "--neighbours needs the index" in res.output


def test_outside_a_checkout_the_files_must_be_given(tmp_path, monkeypatch):
    """Without --model etc. `wafer predict` serves the pipeline's files from dvc.yaml's paths;
    outside a checkout that is one line saying what to give, not a traceback."""
    np.save(tmp_path / "m.npy", good_maps()[0])
    monkeypatch.chdir(tmp_path)
    res = run(["predict", str(tmp_path / "m.npy"), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and not (tmp_path / "p.csv").exists()
    assert res.stderr.strip() == (
        "error: --model not given, and no dvc.yaml: run from the pipeline's checkout or give "
        "the files' paths"
    )
