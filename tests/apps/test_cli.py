"""The `wafer predict` command line (wafer.apps.cli): it serves exactly the pipeline, one
line per bad input, Grad-CAM PNGs, streaming in chunks, novelty and neighbours."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from wafer.apps.rows import CSV_COLUMNS
from wafer.core.classes import CLASS_NAMES
from wafer.data.shard import resize_map
from wafer.inputs.png import encode_png
from wafer.serving.predictor import Predictor

from conftest import (
    BATCH,
    ROOT,
    expected,
    good_maps,
    lswmd_frame,
    run_cli,
    small_batch_args,
    wafer,
)

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

    res = run_cli(
        [
            "predict",
            *inputs,
            "--out",
            str(tmp_path / "p.json"),
            "--trust-pickle",
            *small_batch_args(tiny_pipeline),
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

    res = run_cli(
        ["predict", *inputs, "-o", str(tmp_path / "p.csv"), "--trust-pickle"]
        + small_batch_args(tiny_pipeline)
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

    res = run_cli(
        ["predict", str(pkl), str(pngs), "--out", str(out), "--trust-pickle"]
        + small_batch_args(tiny_pipeline)
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
    res = run_cli(
        ["predict", str(pkl), "--fail-fast", "--trust-pickle", "--out", str(out)]
        + small_batch_args(tiny_pipeline)
    )
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {pkl}, row 1: map has values outside {{0, 1, 2}}: [3]"
    ]
    assert not out.exists()


def test_cli_cam_dir(tmp_path, tiny_pipeline):
    np.save(tmp_path / "two.npy", np.stack([wafer(16, 16, (4, 4)), wafer(16, 16, (8, 8))]))
    res = run_cli(
        [
            "predict",
            str(tmp_path / "two.npy"),
            "--out",
            str(tmp_path / "p.csv"),
            "--cam-dir",
            str(tmp_path / "cams"),
            *small_batch_args(tiny_pipeline),
        ]
    )
    assert res.exit_code == 0, res.output
    pngs = sorted(p.name for p in (tmp_path / "cams").iterdir())
    assert len(pngs) == 2 and pngs[0].startswith("00000_") and pngs[0].endswith("row_0.png")
    with Image.open(tmp_path / "cams" / pngs[0]) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]


def test_cli_errors_and_help(tmp_path, tiny_pipeline):
    res = run_cli(["--help"])
    assert res.exit_code == 0 and "predict" in res.output
    res = run_cli(["predict", "--help"])
    assert res.exit_code == 0 and "--fail-fast" in res.output and "--cam-dir" in res.output
    np.save(tmp_path / "m.npy", wafer())
    args = small_batch_args(tiny_pipeline)
    missing = tmp_path / "nope.pt"
    res = run_cli(
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
    res = run_cli(["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.txt"), *args])
    assert res.exit_code == 2 and ".csv or .json" in res.output


def test_predict_streams_in_chunks(tmp_path, tiny_pipeline, monkeypatch):
    """Rows are predicted and written a chunk at a time: a 2-map chunk gives exactly the rows of
    one big chunk, errors in their places, for a .npy stack, a ragged .npz and a bad file."""
    from wafer.core.io import save_npz
    from wafer.serving import stream

    maps = [wafer(12 + k % 5, 11 + k % 3, (4, 5 + k % 4)) for k in range(7)]
    np.save(tmp_path / "a_stack.npy", np.stack([wafer(12, 12, (k % 9, 3)) for k in range(5)]))
    flat = np.concatenate([m.ravel() for m in maps]).astype(np.uint8)
    shapes = np.array([m.shape for m in maps], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum([m.size for m in maps])]).astype(np.int64)
    save_npz(tmp_path / "b_ragged.npz", flat=flat, shapes=shapes, offsets=offsets)
    (tmp_path / "c_bad.npy").write_bytes(b"not an array")
    outs = []
    for chunk in (2, 10_000):
        monkeypatch.setattr(stream, "CHUNK", chunk)
        out = tmp_path / f"p{chunk}.csv"
        res = run_cli(["predict", str(tmp_path), "-o", str(out), *small_batch_args(tiny_pipeline)])
        assert res.exit_code == 0, res.output
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    table = list(csv.DictReader(io.StringIO(outs[0])))
    assert len(table) == 5 + 7 + 1
    assert [bool(r["error"]) for r in table] == [False] * 12 + [True]


def test_every_row_gets_novelty_and_the_nearest_training_maps(tmp_path, tiny_pipeline):
    from wafer.serving.novelty import FeatureIndex

    maps = good_maps()
    np.save(tmp_path / "stack.npy", np.stack([resize_map(m, 16) for m in maps]))
    res = run_cli(
        ["predict", str(tmp_path / "stack.npy"), "-o", str(tmp_path / "p.json")]
        + small_batch_args(tiny_pipeline)
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
    res = run_cli(
        ["predict", str(tmp_path / "stack.npy"), "-o", str(tmp_path / "p.csv")]
        + small_batch_args(tiny_pipeline)
        + ["--neighbours", "2"]
    )
    with open(tmp_path / "p.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert all(r["novel"] in ("0", "1") and float(r["novelty_score"]) > 0 for r in table)
    assert all(len(r["neighbours"].split()) == 2 for r in table)


def test_without_the_index_rows_have_no_novelty_and_neighbours_are_refused(
    tmp_path, tiny_pipeline, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # no models/index.npz here
    np.save(tmp_path / "m.npy", wafer())
    three = {k: tiny_pipeline[k] for k in ("model", "calibration", "thresholds")}
    res = run_cli(["predict", "m.npy", "-o", "p.csv", *small_batch_args(three)])
    assert res.exit_code == 0 and "no novelty score" in res.stderr
    with open(tmp_path / "p.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["novelty_score"] == row["novel"] == row["neighbours"] == ""
    res = run_cli(
        ["predict", "m.npy", "-o", "q.csv", *small_batch_args(three), "--neighbours", "2"]
    )
    assert res.exit_code == 2 and "--neighbours needs the index" in res.output


def test_outside_a_checkout_the_files_must_be_given(tmp_path, monkeypatch):
    """Without --model etc. `wafer predict` serves the pipeline's files from dvc.yaml's paths;
    outside a checkout that is one line saying what to give, not a traceback."""
    np.save(tmp_path / "m.npy", good_maps()[0])
    monkeypatch.chdir(tmp_path)
    res = run_cli(["predict", str(tmp_path / "m.npy"), "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and not (tmp_path / "p.csv").exists()
    assert res.stderr.strip() == (
        "error: --model not given, and no dvc.yaml: run from the pipeline's checkout or give "
        "the files' paths"
    )


def test_prediction_sets_and_a_refused_operating_point(tmp_path, tiny_pipeline):
    """Every row carries its prediction set (most probable class first, the predicted class's
    neighbours at the stated coverage); --operating-point escape_budget, refused on
    validation, is one line and writes nothing."""
    np.save(tmp_path / "m.npy", np.stack([wafer(), wafer(12, 12, (4, 9))]))
    out = tmp_path / "p.csv"
    args = ["predict", str(tmp_path / "m.npy"), "-o", str(out)]
    res = run_cli([*args, *small_batch_args(tiny_pipeline)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    for r in rows:
        members = r["prediction_set"].split(";")
        assert members and set(members) <= set(CLASS_NAMES)
        probs = [float(r[f"p_{c}"]) for c in members]
        assert probs == sorted(probs, reverse=True)
    args = ["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "q.csv")]
    res = run_cli([*args, "--operating-point", "escape_budget", *small_batch_args(tiny_pipeline)])
    assert res.exit_code == 2 and not (tmp_path / "q.csv").exists()
    (line,) = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert "the escape_budget point is refused: 0 validation defects" in line
    res = run_cli([*args, "--operating-point", "macro_f1", *small_batch_args(tiny_pipeline)])
    assert res.exit_code == 0 and "macro_f1" in (tmp_path / "q.csv").read_text()


def test_cam_settings_come_from_the_served_pipelines_params(tmp_path, monkeypatch):
    """With --pipeline, Grad-CAM's method and layer are that pipeline's (pipelines/mixed has
    its own params.yaml), not the current directory's."""
    from wafer.apps.options import cam_settings

    pipe = tmp_path / "pipe"
    pipe.mkdir()
    gradcam = yaml.safe_load((ROOT / "pipelines" / "mixed" / "params.yaml").read_text())["gradcam"]
    (pipe / "params.yaml").write_text(yaml.safe_dump({"gradcam": gradcam | {"layer": "layer3"}}))
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    assert cam_settings(None, None, needed=False) == (None, None)
    assert cam_settings(None, None, needed=False, repo=pipe) == (gradcam["method"], "layer3")
    assert cam_settings("gradcam", None, needed=False, repo=pipe) == ("gradcam", "layer3")
