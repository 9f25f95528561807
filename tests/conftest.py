"""Shared fixtures: tiny LSWMD-format frames, a legacy (Python-2-era) pickle writer, paths."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

# `pytest` runs two xdist workers (pyproject addopts) on a 2-core machine: one thread each, in
# the worker and in every process it starts (dvc stages, torchrun), set before torch is imported.
# Left at the default, each worker's torch/OpenMP pool takes both cores and the suite runs slower
# than one worker alone. Tests that are about thread counts set their own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
SUBSET = ROOT.parent / "shared" / "data" / "wm811k-subset" / "LSWMD-subset.pkl.xz"


def label(name: str | None) -> np.ndarray:
    """A failureType cell nested as in LSWMD.pkl; None -> the empty array of unlabeled rows."""
    if name is None:
        return np.zeros((0, 0), dtype=object)
    return np.array([[name]], dtype=object)


def wafer(h: int = 12, w: int = 12, fail: tuple[int, int] | None = (5, 5)) -> np.ndarray:
    yy, xx = np.ogrid[:h, :w]
    inside = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1
    m = inside.astype(np.uint8)
    if fail is not None:
        m[fail] = 2
    return m


def lswmd_frame(rows: list[tuple[object, str | None]]) -> pd.DataFrame:
    """Frame with the columns of Kaggle's LSWMD.pkl (waferMap, dieSize, lotName, waferIndex,
    trianTestLabel, failureType)."""
    maps = [m for m, _ in rows]
    return pd.DataFrame(
        {
            "waferMap": maps,
            "dieSize": [
                float(np.count_nonzero(np.asarray(m))) if np.ndim(m) else 0.0 for m in maps
            ],
            "lotName": [f"lot{i // 25}" for i in range(len(rows))],
            "waferIndex": [float(i % 25 + 1) for i in range(len(rows))],
            "trianTestLabel": [label("Training" if i % 3 else "Test") for i in range(len(rows))],
            "failureType": [label(lab) for _, lab in rows],
        }
    )


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler lets us override how bytes look
    """Writes ``bytes`` as Python-2 ``str`` opcodes (BINSTRING), as Python 2 pickles did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def write_legacy_pickle(df: pd.DataFrame, path: Path) -> None:
    """Reproduce both quirks of Kaggle's LSWMD.pkl: numpy buffers as Python-2 strings (loadable
    only with encoding='latin1') and class references under pandas' old module paths
    (``pandas.indexes.*``, ``numpy.core.*``)."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(df)
    data = buf.getvalue()
    data = data.replace(b"\ncpandas.core.indexes.", b"\ncpandas.indexes.")
    data = data.replace(b"cpandas.core.indexes.", b"cpandas.indexes.")
    data = data.replace(b"cnumpy._core.", b"cnumpy.core.")
    assert b"pandas.indexes." in data and b"pandas.core.indexes" not in data
    path.write_bytes(data)


@pytest.fixture
def subset_path() -> Path:
    if not SUBSET.exists():
        pytest.skip(f"real WM-811K subset not present at {SUBSET}")
    return SUBSET


@pytest.fixture
def load_stage():
    """Import a stage script (stages/ is not a package) as a module."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(
            f"stage_{name.replace('/', '_')}", ROOT / "stages" / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> dict[str, Path]:
    """The served files of an untrained compact ResNet-18 at 16 px (the pipeline's outputs, in
    miniature): model.pt, calibration.json (T = 1.3, TTA on), thresholds.json, index.npz and
    novelty.json (knn, k = 3)."""
    import json

    import torch

    from wafer.core.classes import CLASS_NAMES
    from wafer.core.io import sha256_file
    from wafer.model.checkpoint import Checkpoint
    from wafer.model.net import ModelConfig, build_model

    d = tmp_path_factory.mktemp("tiny_pipeline")
    torch.manual_seed(0)
    cfg = ModelConfig(stem="compact", cbam=False, cbam_reduction=16)
    Checkpoint.of(build_model(cfg), cfg, 16, {"note": "untrained, for tests"}).save(d / "model.pt")
    model_sha, logits_sha = sha256_file(d / "model.pt"), "0" * 64
    (d / "calibration.json").write_text(
        json.dumps(
            {"temperature": 1.3, "views": 8, "runtime": "eager", "fit_on": "val", "n_val": 0}
            | {"model_sha256": model_sha, "logits_sha256": logits_sha}
        )
    )
    point = {"tau": 0.5, "class_thresholds": {c: 0.2 for c in CLASS_NAMES} | {"none": 0.0}}
    (d / "thresholds.json").write_text(
        json.dumps(
            {
                "objective": "cost",
                "operating_points": {"cost": point, "macro_f1": point | {"tau": 0.6}},
                "cost_ratio": 10.0,
                "temperature": 1.3,
                "model_sha256": model_sha,
                "logits_sha256": logits_sha,
                # the budget the untrained model's 0 validation maps could not guarantee
                "escape_budget": {
                    "alpha": 0.005,
                    "confidence": 0.95,
                    "attainable": False,
                    "tau": None,
                    "bound": 1.0,
                    "why": "0 validation defects, about 598 needed (mix ratio 1.00)",
                },
                "prediction_sets": {
                    "method": "aps",
                    "alpha": 0.1,
                    "qhat": 0.8,
                    "lambda": 0.01,
                    "k_reg": 1,
                },
            }
        )
    )
    # the index stage's two files: features of 45 random "training" maps, 5 per class
    import numpy as np

    from wafer.model.checkpoint import load_model
    from wafer.model.forward import predict_outputs
    from wafer.serving.files import Novelty
    from wafer.serving.novelty import METHODS, FeatureIndex

    net, _ = load_model(d / "model.pt")
    x = np.random.default_rng(0).integers(0, 3, (45, 16, 16), dtype=np.uint8)
    feats = predict_outputs(net, x, 64, "cpu", features="first").features
    labels = np.arange(45) % len(CLASS_NAMES)
    FeatureIndex.build(feats, np.arange(45) + 1000, labels, 1, model_sha).save(d / "index.npz")
    Novelty(
        method="knn",
        threshold=0.05,
        thresholds={m: 0.05 for m in METHODS},
        k=3,
        false_flag_rate=0.05,
        temperature=1.3,
        views=1,
        model_sha256=model_sha,
        index_sha256=sha256_file(d / "index.npz"),
    ).save(d / "novelty.json")
    return {
        "model": d / "model.pt",
        "calibration": d / "calibration.json",
        "thresholds": d / "thresholds.json",
        "index": d / "index.npz",
        "novelty": d / "novelty.json",
    }


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "browser: drives the Gradio demo in headless Chromium (needs gradio, selenium, chromium, "
        "chromium-driver; skips without them)",
    )


def params_file(d: Path, changes: dict | None = None) -> Path:
    """The checkout's params.yaml with ``changes`` (``{"section.key": value}``) applied, written
    as ``d/params.yaml`` (what a stage script reads with --params)."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in (changes or {}).items():
        section, key = dotted.split(".")
        params[section][key] = value
    path = Path(d) / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def pipeline_args(p: dict[str, Path], *extra: str) -> list[str]:
    """`wafer predict` options that serve the three files of ``p`` (e.g. tiny_pipeline) on CPU."""
    return [
        "--model",
        str(p["model"]),
        "--calibration",
        str(p["calibration"]),
        "--thresholds",
        str(p["thresholds"]),
        *(["--index", str(p["index"]), "--novelty", str(p["novelty"])] if "index" in p else []),
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def tiny_repo(dst: Path, changes: dict | None = None, repro: str | None = None) -> dict:
    """A throw-away git repository in ``dst``: a copy of the checkout with tiny params (120
    synthetic maps, 8 px, one epoch) and ``changes`` (``{"section.key": value}``), committed;
    with ``repro`` also ``dvc repro <repro>`` run and its results committed. Returns the
    environment to run dvc in it (PATH with this Python, PYTHONPATH its src/, a git identity).
    Skips the test where git is missing."""
    import shutil

    if shutil.which("git") is None:
        pytest.skip("git is needed for dvc")
    skip = ("metrics/", "plots/train", "dvc.lock", "results/", "docs/", "benchmarks/")
    copy_checkout(dst, skip)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["synthesize"].update(n_maps=120, floor=0.1)
    params["shard"]["input_px"] = 8
    params["train"].update(epochs=1, batch_size=32, patience=1, device="cpu")
    for dotted, value in (changes or {}).items():
        section, key = dotted.split(".")
        params[section][key] = value
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(dst / "src")
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t")
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    sh(["git", "init", "-q"], dst, env)
    sh(["git", "add", "-A"], dst, env)
    sh(["git", "commit", "-qm", "tiny"], dst, env)
    if repro is not None:
        sh([sys.executable, "-m", "dvc", "repro", repro], dst, env)
        sh(["git", "add", "-A"], dst, env)
        sh(["git", "commit", "-qm", f"repro {repro}"], dst, env)
    return env


def sh(args: list[str], cwd: Path, env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    """Run ``args`` in ``cwd``; with ``ok`` assert it succeeded (its output in the message)."""
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def copy_checkout(dst: Path, skip: tuple[str, ...] = ()) -> None:
    """Copy the files git tracks (and untracked, not ignored ones) into ``dst``, but those whose
    path starts with one of ``skip``: a throw-away repository for dvc runs."""
    import shutil
    import subprocess

    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not f.startswith(skip):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)


# `-S` overrides of a whole synthetic run through wafer.tools.run_stages in seconds (tiny maps
# and model, one epoch, no TTA)
TINY_RUN = [
    "synthesize.n_maps=180",
    "synthesize.floor=0.08",
    "shard.input_px=32",
    "train.cbam=false",
    "train.epochs=1",
    "train.batch_size=64",
    "train.patience=1",
    "infer.views=1",
    "evaluate.bootstrap=10",
]

BATCH = 4  # wafer predict's --batch-size in tests: small: several chunks and several forward passes


def good_maps() -> list[np.ndarray]:
    return [
        wafer(12, 12, (5, 5)),
        wafer(25, 27, (3, 12)),
        wafer(30, 20, None),
        wafer(9, 14, (4, 2)),
        wafer(40, 40, (20, 20)),
    ]


def run_cli(args: list[str]):
    """`wafer <args>` in this process (typer's runner), exceptions raised."""
    from typer.testing import CliRunner

    from wafer.apps.cli import app

    return CliRunner().invoke(app, args, catch_exceptions=False)


def small_batch_args(p: dict[str, Path]) -> list[str]:
    """`wafer predict` options serving ``p`` with the small batch :data:`BATCH`."""
    return pipeline_args(p, "--batch-size", str(BATCH))


def expected(p: dict[str, Path], maps: list[np.ndarray]):
    """The served pipeline of ``p`` by hand: block-max resize -> TTA logits -> decide."""
    from wafer.data.shard import resize_map
    from wafer.model.checkpoint import load_model
    from wafer.model.forward import predict_outputs
    from wafer.serving.decision import ServingConfig

    model, ckpt = load_model(p["model"], "cpu")
    x = np.stack([resize_map(m, ckpt.input_size) for m in maps])
    serving = ServingConfig.load(p["calibration"], p["thresholds"])
    assert serving.views == 8
    logits = predict_outputs(model, x, BATCH, "cpu", views=8).logits
    return serving, serving.decide(logits)


def one_line_error(res, *needles: str) -> str:
    """The CLI run failed with exit 2 and a single ``error: ...`` line holding every needle;
    no traceback, and no hint to turn a safety check off."""
    err = res.stderr.strip()
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert "allow_pickle=True" not in err and "weights_only=False" not in err
    return lines[0]


class Evil:
    """Unpickling this touches ``marker``: stands for any code a crafted pickle runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(Evil(marker)))
    return path
