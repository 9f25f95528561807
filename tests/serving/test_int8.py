"""The int8 runtime served as evaluated: a tiny pipeline run with `infer.runtime: int8` records
the quantised graph in the served calibration, `wafer predict` rebuilds that very graph (the same
logits as `infer` wrote, bit for bit) and refuses a record that does not give it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from wafer.data.files import Logits, load_shard
from wafer.model.forward import predict_outputs
from wafer.model.runtime import NEEDS
from wafer.serving.predictor import Predictor

from conftest import ROOT, TINY_RUN, run_cli

pytestmark = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in NEEDS["int8"]),
    reason="infer.runtime int8 needs onnxruntime, onnx and onnxscript (pip install 'wafer[onnx]')",
)

TINY = [kv for kv in TINY_RUN if not kv.startswith("infer.views=")]
TINY += ["infer.views=2", "infer.runtime=int8", "infer.int8_calibration_maps=40"]


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("int8")
    args = [sys.executable, "-m", "wafer.tools.run_stages", "--synthetic", "--name", "int8"]
    args += [a for kv in TINY for a in ("-S", kv)]
    args += ["--skip", "gradcam", "--out", str(d / "out"), "--workdir", str(d / "work")]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return d / "work"


def test_the_evaluated_int8_graph_is_the_served_one(int8_run):
    w = int8_run
    cal = json.loads((w / "models/calibration.json").read_text())
    q = cal["quantization"]
    assert cal["runtime"] == "int8" and q["calibration_maps"] == 40 and len(q["graph_sha256"]) == 64
    lg = Logits.load(w / "data/logits.npz")
    assert lg.runtime == "int8" and lg.quantization == q
    assert json.loads((w / "metrics/evaluate.json").read_text())["runtime"] == "int8"
    p = Predictor.load(
        w / "models/model.pt", w / "models/calibration.json", w / "models/thresholds.json", "cpu"
    )
    assert p.runtime.name == "int8" and p.runtime.quantization["graph_sha256"] == q["graph_sha256"]
    val = load_shard(w / "data/shards", "val")
    got = predict_outputs(p.runtime, np.asarray(val.x), 512, views=cal["views"]).logits
    np.testing.assert_array_equal(got, lg.logits["val"])  # what infer wrote, bit for bit


def test_the_int8_graph_does_not_depend_on_where_the_package_lives(int8_run, tmp_path):
    """The exporter writes each node's stack trace (absolute source path and line) into the
    graph; kept, a served int8 record would rebuild only from the checkout that ran `infer`
    (found serving a 224-px ensemble evaluated in another clone). The same package copied
    elsewhere, with its lines moved, must rebuild the evaluated graph."""
    w = int8_run
    q = json.loads((w / "models/calibration.json").read_text())["quantization"]
    moved = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "src" / "wafer", moved / "wafer", ignore=shutil.ignore_patterns("*.pyc"))
    runtime = moved / "wafer" / "model" / "runtime.py"
    runtime.write_text("# a line moved\n\n" + runtime.read_text())  # every line number shifts
    code = (
        "import wafer, sys; from wafer.serving.predictor import Predictor; "
        "assert wafer.__file__.startswith(sys.argv[5]), wafer.__file__; "
        "p = Predictor.load(*sys.argv[1:4], 'cpu'); print(p.runtime.quantization['graph_sha256'])"
    )
    files = [str(w / f"models/{f}") for f in ("model.pt", "calibration.json", "thresholds.json")]
    env = {**os.environ, "PYTHONPATH": str(moved)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *files, "-", str(moved)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == q["graph_sha256"]


def test_a_record_that_does_not_rebuild_the_graph_is_refused(int8_run, tmp_path):
    w = int8_run
    cal = json.loads((w / "models/calibration.json").read_text())
    files = {
        "model": w / "models/model.pt",
        "calibration": tmp_path / "calibration.json",
        "thresholds": w / "models/thresholds.json",
        "index": w / "models/index.npz",  # built by the index stage on the int8 features
        "novelty": w / "models/novelty.json",
    }
    maps = tmp_path / "m.npy"
    np.save(maps, load_shard(w / "data/shards", "val").x[:3])
    args = [f"--{k}={v}" for k, v in files.items()]

    def predict(record: dict):
        files["calibration"].write_text(json.dumps(record))
        return run_cli(["predict", str(maps), "-o", str(tmp_path / "p.csv"), *args])

    res = predict(cal)
    assert res.exit_code == 0, res.stderr
    bad = cal | {"quantization": cal["quantization"] | {"graph_sha256": "0" * 64}}
    res = predict(bad)
    msg = res.stderr.strip()
    assert res.exit_code == 2 and msg.count("\n") == 0, msg
    assert str(files["calibration"]) in msg and "not the one evaluated" in msg
    ranges = cal["quantization"]["ranges"]
    res = predict(cal | {"quantization": cal["quantization"] | {"ranges": {"x": ranges}}})
    assert res.exit_code == 2 and "unusable int8 activation ranges" in res.stderr
    res = predict({k: v for k, v in cal.items() if k != "quantization"})
    assert res.exit_code == 2 and "missing field 'quantization'" in res.stderr
    res = predict(cal | {"runtime": "eager"})
    assert res.exit_code == 2 and "'quantization' given for runtime 'eager'" in res.stderr


def test_the_mixed_pipeline_refuses_int8(tmp_path):
    """Its served files have no quantization record: stopped before any stage runs."""
    pipe = ROOT / "pipelines" / "mixed"
    params = yaml.safe_load((pipe / "params.yaml").read_text())
    params["infer"]["runtime"] = "int8"
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cmd = [sys.executable, "../../stages/mixed/validate_params.py", "--synthetic", "x.npz"]
    cmd += ["--params", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "ok")]
    proc = subprocess.run(cmd, cwd=pipe, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "infer.runtime 'int8': served by the 9-class pipeline only" in proc.stderr
    assert not (tmp_path / "ok").exists()
