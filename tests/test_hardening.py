"""The catalogue of bad inputs and faults the project survives (issue 16's hostile-user cases).

Each test names its case in its docstring; every case ends in a one-line error or a counted
skip: no traceback, no hang, no silent wrong answer, no code run from an input file, and no
previous good output destroyed. Sections:

1. params: every value of params.yaml checked by one table before any stage runs
2. pickles: no unpickling without --trust-pickle; the safe conversion path
3. bounded resources: the map-size cap, checked from the file header before decoding
4. `wafer predict` options and faults: --out, --cam-dir, --device, full disk, checkpoints
5. bad input files (the cases that already passed, kept as regressions)
6. the demo
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from wafer.cli import app
from wafer.params import ParamError, load_params, rules, validate_all
from wafer.readers import encode_png, read_maps

from conftest import (
    ROOT,
    lswmd_frame,
    params_file,
    pipeline_args,
    sh,
    tiny_repo,
    wafer,
    write_legacy_pickle,
)

# --------------------------------------------------------------------------- helpers


def run(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


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


# --------------------------------------------------------------------------- 1. params

BAD_PARAMS = [
    # (section, key, value, what the one-line error says)
    ("train", "loss", "foo", "train.loss: 'foo' is not one of ce, focal"),
    ("thresholds", "cost_ratio", -1.0, "thresholds.cost_ratio: -1.0 is not above 0"),
    ("thresholds", "cost_ratio", float("nan"), "thresholds.cost_ratio: nan is not a finite"),
    ("thresholds", "cost_ratio", "nan", "thresholds.cost_ratio: 'nan' is not a number"),
    ("prior", "target_prior", [0] * 9, "prior.target_prior: all values are 0"),
    ("prior", "target_prior", [-1] + [1] * 8, "prior.target_prior: value 0: -1 is below"),
    ("prior", "target_prior", [1] * 8, "prior.target_prior: has 8 value(s), expected 9"),
    ("evaluate", "bootstrap", 0, "evaluate.bootstrap: 0 is below 1"),
    ("evaluate", "bootstrap", -5, "evaluate.bootstrap: -5 is below 1"),
    ("calibrate", "n_bins", 0, "calibrate.n_bins: 0 is below 1"),
    ("split", "val", 1.5, "split.val: 1.5 is not below 1"),
    ("split", "test", -0.1, "split.test: -0.1 is below 0"),
    ("split", "val", 0.85, "split: split.val + split.test = 1.05 leaves no training maps"),
    ("ingest", "on_invalid", "skip", "ingest.on_invalid: 'skip' is not one of drop, fail"),
    ("infer", "batch_size", 0, "infer.batch_size: 0 is below 1"),
    ("gradcam", "layer", "fc", "gradcam.layer: 'fc' is not 'auto' or a ResNet stage"),
    ("gradcam", "layer", "avgpool", "gradcam.layer: 'avgpool' is not"),
    ("gradcam", "per_class", 4, "gradcam.per_class: 4 is above 3"),
    ("train", "device", "tpu9", "train.device: 'tpu9' is not auto, cpu"),
    ("train", "epochs", 1.5, "train.epochs: 1.5 is not an integer"),
    ("train", "cbam", "yes", "train.cbam: 'yes' is not true/false"),
    ("train", "focal_alpha", [1, 2], "train.focal_alpha: has 2 value(s), expected 0 or 9"),
    ("shard", "input_px", 4, "shard.input_px: 4 is below 8"),
    ("synthesize", "floor", 0.5, "synthesize.floor: 0.5 is above"),
]


def test_params_yaml_is_valid():
    """The shipped params.yaml passes the table (and the table covers every section)."""
    params = load_params(ROOT / "params.yaml")
    validate_all(params)
    assert set(rules()) == set(params)
    for section, table in rules().items():
        assert set(table) == set(params[section]), section


@pytest.mark.parametrize(("section", "key", "value", "message"), BAD_PARAMS)
def test_bad_param_is_one_line_naming_it(section, key, value, message):
    """Each unchecked param of the issue (and a few more) is refused with a one-line error
    naming section.key and the reason."""
    params = load_params(ROOT / "params.yaml")
    params[section][key] = value
    with pytest.raises(ParamError) as info:
        validate_all(params)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_unknown_and_missing_params_are_errors():
    """A misspelt key is not silently ignored; a missing key or section is named."""
    params = load_params(ROOT / "params.yaml")
    params["train"]["los"] = "ce"
    with pytest.raises(ParamError, match=r"^train\.los: unknown parameter"):
        validate_all(params)
    del params["train"]["los"], params["train"]["loss"]
    with pytest.raises(ParamError, match=r"^train\.loss: missing"):
        validate_all(params)
    with pytest.raises(ParamError, match=r"^calibrate: section missing"):
        fresh = load_params(ROOT / "params.yaml")
        validate_all({k: v for k, v in fresh.items() if k != "calibrate"})


def test_gradcam_per_class_bound_matches_the_report_slots():
    """gradcam.per_class's upper bound is the number of example slots of the report."""
    from wafer.gradcam_report import SLOTS

    assert rules()["gradcam"]["per_class"].hi == len(SLOTS)


def test_unreadable_params_file(tmp_path):
    """A params.yaml that is not YAML: one line naming the file."""
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ParamError, match="params.yaml: not readable as YAML") as info:
        load_params(tmp_path / "params.yaml")
    assert "\n" not in str(info.value)


def test_stage_scripts_check_their_section_with_the_same_table(load_stage, tmp_path):
    """A stage run by hand on a params file with a bad value stops with the table's one-line
    message, before reading or writing anything (its other options name missing files)."""
    cases = [
        ("train", {"train.loss": "foo"}, "train.loss: 'foo' is not one of ce, focal"),
        ("thresholds", {"thresholds.cost_ratio": -2}, "thresholds.cost_ratio: -2 is not above 0"),
        (
            "thresholds",
            {"thresholds.objective": "accuracy"},
            "thresholds.objective: 'accuracy' is not one of cost, macro_f1",
        ),
        ("thresholds", {"prior.target_prior": [0] * 9}, "prior.target_prior: all values are 0"),
        ("train", {"train.precision": "fp8"}, "train.precision: 'fp8' is not one of fp32, bf16"),
        ("calibrate", {"calibrate.n_bins": 0}, "calibrate.n_bins: 0 is below 1"),
        ("infer", {"infer.batch_size": 0}, "infer.batch_size: 0 is below 1"),
        ("gradcam", {"gradcam.layer": "fc"}, "gradcam.layer: 'fc' is not"),
        ("split", {"split.val": 2}, "split.val: 2 is not below 1"),
        ("ingest", {"ingest.on_invalid": "skip"}, "ingest.on_invalid: 'skip' is not one of drop"),
        ("evaluate", {"evaluate.bootstrap": 0}, "evaluate.bootstrap"),
        ("evaluate", {"prior.target_prior": [1] * 8}, "prior.target_prior: has 8 value(s)"),
        ("index", {"index.k": 0}, "index.k: 0 is below 1"),
        ("synthesize", {"synthesize.floor": 0.5}, "synthesize.floor: 0.5 is above"),
        ("shard", {"shard.input_px": 4}, "shard.input_px: 4 is below 8"),
    ]
    import typer

    missing = tmp_path / "missing"
    for stage, changes, message in cases:
        app = load_stage(stage).app
        args = ["--params", str(params_file(tmp_path, changes))]
        for opt in typer.main.get_command(app).params:  # every other option: a missing path
            if opt.required and opt.opts[0] != "--params":
                args += [opt.opts[0], str(missing / opt.name)]
        res = CliRunner().invoke(app, args, catch_exceptions=False)
        assert res.exit_code == 2, (stage, res.output)
        assert res.stderr.strip() == f"error: {message}" or res.stderr.startswith(
            f"error: {message}"
        ), (stage, res.stderr)


@pytest.mark.slow
def test_bad_param_in_dvc_exp_run_deletes_no_output(tmp_path):
    """`dvc exp run -S train.loss=foo` fails in the validate_params stage, before DVC deletes
    the train stage's outputs (model, metrics/train.json, plots/train_curves.csv: the last two
    are not in the DVC cache); afterwards `git checkout params.yaml && dvc checkout` gives a
    workspace that `dvc status` reports up to date."""
    if shutil.which("git") is None:
        pytest.skip("git is needed for dvc")
    env = tiny_repo(tmp_path)
    dvc = [sys.executable, "-m", "dvc"]
    sh(["git", "init", "-q"], tmp_path, env)
    sh(["git", "add", "-A"], tmp_path, env)
    sh(["git", "commit", "-qm", "tiny"], tmp_path, env)
    sh([*dvc, "repro", "train"], tmp_path, env)
    sh(["git", "add", "-A"], tmp_path, env)
    sh(["git", "commit", "-qm", "trained"], tmp_path, env)
    outs = ["models/model.pt", "metrics/train.json", "plots/train_curves.csv"]
    before = {f: (tmp_path / f).read_bytes() for f in outs}

    proc = sh([*dvc, "exp", "run", "-S", "train.loss=foo", "train"], tmp_path, env, ok=False)
    assert proc.returncode != 0
    assert "error: train.loss: 'foo' is not one of ce, focal" in proc.stdout + proc.stderr
    assert "Running stage 'train'" not in proc.stdout
    for f in outs:
        assert (tmp_path / f).read_bytes() == before[f], f

    sh(["git", "checkout", "params.yaml"], tmp_path, env)
    sh([*dvc, "checkout", "--with-deps", "train"], tmp_path, env)
    status = sh([*dvc, "status", "--with-deps", "train"], tmp_path, env).stdout
    assert "up to date" in status, status
    assert (tmp_path / "data/params.ok").read_text() == "ok\n"


# --------------------------------------------------------------------------- 2. pickles


class _Evil:
    """Unpickling this touches ``marker``: stands for any code a crafted pickle runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(_Evil(marker)))
    return path


def test_crafted_pickle_named_runs_no_code(tmp_path, tiny_pipeline):
    """A crafted pickle given to `wafer predict` by name is not unpickled without
    --trust-pickle: no code runs, one error line, exit 2 (nothing else was predicted)."""
    marker = tmp_path / "pwned"
    evil = _evil_pickle(tmp_path / "evil.pkl", marker)
    out = tmp_path / "p.csv"
    res = run(["predict", str(evil), "-o", str(out), *pipeline_args(tiny_pipeline)])
    assert not marker.exists()
    assert res.exit_code == 2 and not out.exists()
    assert f"error: {evil}: a pickle can run code" in res.stderr
    assert "--trust-pickle" in res.stderr and "wafer convert" in res.stderr


def test_crafted_pickle_in_a_folder_is_skipped_and_counted(tmp_path, tiny_pipeline):
    """A folder scan skips pickles (also compressed ones) without --trust-pickle, says so on
    stderr and in the summary, and predicts the rest."""
    marker = tmp_path / "pwned"
    d = tmp_path / "maps"
    d.mkdir()
    _evil_pickle(d / "a.pkl", marker)
    _evil_pickle(d / "b.pickle.gz", marker)  # not gzip at all: it is never opened
    np.save(d / "c.npy", wafer(12, 12))
    out = tmp_path / "p.csv"
    res = run(["predict", str(d), "-o", str(out), *pipeline_args(tiny_pipeline)])
    assert res.exit_code == 0, res.output
    assert not marker.exists()
    skipped = [ln for ln in res.stderr.splitlines() if ln.startswith("skipped: ")]
    assert len(skipped) == 2 and "--trust-pickle" in skipped[0]
    assert "2 skipped file(s)" in res.stdout
    assert out.read_text().count("\n") == 2  # header + c.npy


def test_trust_pickle_is_the_explicit_opt_in(tmp_path, tiny_pipeline):
    """With --trust-pickle the pickle is read (the user's explicit choice)."""
    lswmd_frame([(wafer(14, 14), "Center"), (wafer(10, 12), None)]).to_pickle(tmp_path / "w.pkl")
    out = tmp_path / "p.csv"
    args = ["predict", str(tmp_path / "w.pkl"), "-o", str(out), "--trust-pickle"]
    res = run(args + pipeline_args(tiny_pipeline))
    assert res.exit_code == 0, res.output
    assert out.read_text().count("\n") == 3


def test_convert_then_predict_and_ingest_without_unpickling(tmp_path, tiny_pipeline):
    """`wafer convert` (the one-time, trusted step) turns a legacy LSWMD pickle into a
    ragged-maps .npz; `wafer predict` reads it without --trust-pickle (rows keep the pickle's
    row numbers, unlabeled rows included) and ingest gives the same intermediate as from the
    pickle."""
    from wafer.ingest import ingest_file

    maps = [wafer(14, 14), wafer(9, 12, (2, 2)), np.array([1, 2]), wafer(20, 18, (9, 9))]
    frame = lswmd_frame(list(zip(maps, ["Center", None, "Loc", "Donut"], strict=True)))
    frame["patternMask"] = [np.zeros(np.shape(m), dtype=bool) for m in maps]
    write_legacy_pickle(frame, tmp_path / "LSWMD.pkl")
    npz = tmp_path / "LSWMD.npz"
    res = run(["convert", str(tmp_path / "LSWMD.pkl"), "--out", str(npz)])
    assert res.exit_code == 0, res.output
    assert "dropped 1 row(s)" in res.stdout and "3 of 4 rows (2 labeled)" in res.stdout
    with zipfile.ZipFile(npz) as zf:  # plain arrays only: nothing in it can be unpickled
        for name in zf.namelist():
            with zf.open(name) as fh:
                np.lib.format.read_magic(fh)
                assert not np.lib.format.read_array_header_1_0(fh)[2].hasobject

    got = read_maps(npz)
    assert [it.source for it in got] == [f"{npz} row {i}" for i in (0, 1, 3)]
    np.testing.assert_array_equal(got[2].map, maps[3])
    out = tmp_path / "p.json"
    res = run(["predict", str(npz), "-o", str(out), *pipeline_args(tiny_pipeline)])
    assert res.exit_code == 0, res.output
    assert [r["source"] for r in json.loads(out.read_text())] == [it.source for it in got]

    a, b = ingest_file(tmp_path / "LSWMD.pkl", "drop"), ingest_file(npz, "drop")
    for key, arr in a.arrays().items():
        np.testing.assert_array_equal(arr, b.arrays()[key], err_msg=key)
    assert a.dropped["unlabeled"] == b.dropped["unlabeled"] == 1
    assert b.first_dropped["unlabeled"] == 1  # the pickle's row, not the .npz position


def test_convert_help_says_it_unpickles():
    """`wafer convert --help` warns that it unpickles and must only get trusted files."""
    res = run(["convert", "--help"])
    assert res.exit_code == 0 and "UNPICKLES" in res.output and "trust" in res.output


def test_ingest_stage_reads_the_converted_npz(tmp_path, load_stage):
    """ingest.input may name the converted .npz; a missing input is one line, not a
    traceback from hashing a file that does not exist."""
    lswmd_frame([(wafer(14, 14), "Center"), (wafer(12, 12), "none")]).to_pickle(tmp_path / "w.pkl")
    assert run(["convert", str(tmp_path / "w.pkl"), "-o", str(tmp_path / "w.npz")]).exit_code == 0
    stage = load_stage("ingest").app
    args = ["--out", str(tmp_path / "i.npz"), "--metrics", str(tmp_path / "m.json")]
    params = params_file(tmp_path, {"ingest.input": str(tmp_path / "w.npz")})
    res = CliRunner().invoke(stage, ["--params", str(params), *args])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "m.json").read_text())["rows_kept"] == 2
    params = params_file(tmp_path, {"ingest.input": str(tmp_path / "missing.pkl")})
    res = CliRunner().invoke(stage, ["--params", str(params), *args])
    assert res.exit_code == 2 and res.stderr.strip() == (
        f"error: {tmp_path / 'missing.pkl'}: no such file"
    )


# --------------------------------------------------------------------------- 3. resources


def _npy_header_only(shape: tuple[int, ...], dtype=np.uint8) -> bytes:
    """A .npy header claiming ``shape`` with (almost) no data after it: a tiny file that would
    decode into a huge array."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf,
        {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": shape,
        },
    )
    return buf.getvalue() + b"\0" * 64


def test_oversized_png_is_refused_from_its_header(tmp_path):
    """A 12000 x 12000 PNG (a small file) is refused before its pixels are decoded."""
    import time

    Image.new("1", (12000, 12000)).save(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size < 1_000_000
    t0 = time.perf_counter()
    (item,) = read_maps(tmp_path / "big.png")
    assert time.perf_counter() - t0 < 2.0
    assert str(item.error) == (
        f"{tmp_path / 'big.png'}: map is 12000x12000 dies, over the map-size cap of 1024 a side"
    )


def test_oversized_npy_and_npz_are_refused_from_their_headers(tmp_path):
    """A .npy or an .npz member claiming a 20000 x 20000 map, or a stack that would need
    over 2 GiB, is refused from its header (the data is never read)."""
    (tmp_path / "big.npy").write_bytes(_npy_header_only((20000, 20000)))
    with zipfile.ZipFile(tmp_path / "big.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.npy", _npy_header_only((20000, 20000)))
        zf.writestr("stack.npy", _npy_header_only((10**5, 200, 200)))
        zf.writestr("ok.npy", _npy_header_only((20, 30)))  # truncated data: its own error
    (item,) = read_maps(tmp_path / "big.npy")
    assert "map is 20000x20000 dies, over the map-size cap of 1024" in str(item.error)
    items = {it.source.rsplit("[", 1)[1]: it for it in read_maps(tmp_path / "big.npz")}
    assert "over the map-size cap" in str(items["big]"].error)
    assert "GiB cap" in str(items["stack]"].error)
    assert "not a readable .npy array" in str(items["ok]"].error)


def test_max_side_is_an_option(tmp_path, tiny_pipeline):
    """`--max-side` lowers (or raises) the cap; the refusal is one line for that map and the
    rest of the batch goes on."""
    np.save(tmp_path / "m.npy", wafer(40, 40))
    np.save(tmp_path / "s.npy", wafer(12, 12))
    out = tmp_path / "p.csv"
    inputs = [str(tmp_path / "m.npy"), str(tmp_path / "s.npy")]
    res = run(
        ["predict", *inputs, "-o", str(out), "--max-side", "32", *pipeline_args(tiny_pipeline)]
    )
    assert res.exit_code == 0, res.output
    assert res.stderr.strip() == (
        f"error: {tmp_path / 'm.npy'}: map is 40x40 dies, over the map-size cap of 32 a side"
    )
    assert len(read_maps(tmp_path / "m.npy", max_side=40)[0].map) == 40


def test_oversized_maps_in_trusted_pickles_and_ragged_npz(tmp_path):
    """Maps in a (trusted) pickle or a ragged-maps .npz are checked by shape, per row."""
    from wafer.ingest import convert_pickle

    lswmd_frame([(wafer(12, 12), "Center"), (wafer(30, 1100), None)]).to_pickle(tmp_path / "w.pkl")
    items = read_maps(tmp_path / "w.pkl", trust_pickle=True)
    assert items[0].error is None and "row 1: map is 30x1100 dies" in str(items[1].error)
    convert_pickle(tmp_path / "w.pkl", tmp_path / "w.npz")
    items = read_maps(tmp_path / "w.npz")
    assert items[0].error is None and "row 1: map is 30x1100 dies" in str(items[1].error)


def test_demo_refuses_an_oversized_upload_without_waiting_for_the_lock(tmp_path, tiny_pipeline):
    """An oversized upload is refused while another request holds the model lock: the check
    happens before the lock, so it neither waits nor makes others wait."""
    import threading

    from wafer.demo import DemoAssets, handle_upload
    from wafer.serve import Predictor

    p = Predictor.load(*(tiny_pipeline[k] for k in ("model", "calibration", "thresholds")), "cpu")
    assets = DemoAssets(p, {}, [], max_side=256)
    Image.new("1", (4000, 4000)).save(tmp_path / "big.png")
    result = {}
    with assets.lock:  # another user's request is running
        t = threading.Thread(
            target=lambda: result.update(a=handle_upload(assets, tmp_path / "big.png"))
        )
        t.start()
        t.join(timeout=10)
        assert not t.is_alive()
    a = result["a"]
    assert a.row is None and "big.png: map is 4000x4000 dies, over the map-size cap" in a.warning_md
    assert str(tmp_path) not in a.warning_md


# --------------------------------------------------------------------------- 4. predict options


def test_out_is_a_directory(tmp_path, tiny_pipeline):
    """--out naming a folder is refused before anything is loaded or computed."""
    np.save(tmp_path / "m.npy", wafer())
    (tmp_path / "p.csv").mkdir()
    res = run(
        [
            "predict",
            str(tmp_path / "m.npy"),
            "-o",
            str(tmp_path / "p.csv"),
            *pipeline_args(tiny_pipeline),
            "--model",
            str(tmp_path / "missing.pt"),
        ]
    )
    one_line_error(res, f"--out {tmp_path / 'p.csv'}: is a folder")


def test_cam_dir_is_a_file(tmp_path, tiny_pipeline):
    """--cam-dir naming a file (or a path below a file) is refused before any work."""
    np.save(tmp_path / "m.npy", wafer())
    (tmp_path / "cams").write_text("a file")
    base = ["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv")]
    res = run([*base, "--cam-dir", str(tmp_path / "cams"), *pipeline_args(tiny_pipeline)])
    one_line_error(res, f"--cam-dir {tmp_path / 'cams'}: is a file, not a folder")
    res = run([*base, "--cam-dir", str(tmp_path / "cams" / "x"), *pipeline_args(tiny_pipeline)])
    one_line_error(res, "is not a folder")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("device", ["tpu9", "cuda:99", "xla", ""])
def test_bad_device(tmp_path, tiny_pipeline, device):
    """--device tpu9 (or a GPU this machine lacks) is one line, not a torch traceback."""
    np.save(tmp_path / "m.npy", wafer())
    args = ["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv")]
    res = run(args + pipeline_args(tiny_pipeline)[:-3] + ["--device", device])
    one_line_error(res, f"--device {device!r}")


def test_full_disk(tmp_path, tiny_pipeline, monkeypatch):
    """A full disk while writing --out: one line naming the file and the reason; the previous
    output is intact and no temporary file is left."""
    np.save(tmp_path / "m.npy", wafer())
    out = tmp_path / "p.csv"
    out.write_text("previous good output\n")

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from wafer.cli import RowWriter

    monkeypatch.setattr(RowWriter, "write", full)  # rows are streamed to --out
    res = run(["predict", str(tmp_path / "m.npy"), "-o", str(out), *pipeline_args(tiny_pipeline)])
    monkeypatch.undo()
    one_line_error(res, f"{out}: cannot write: No space left on device")
    assert out.read_text() == "previous good output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy", "p.csv"]


def test_checkpoint_with_input_size_zero(tmp_path, tiny_pipeline):
    """A checkpoint whose input_size is 0: one line naming the file."""
    import torch

    payload = torch.load(tiny_pipeline["model"], weights_only=True)
    payload["input_size"] = 0
    torch.save(payload, tmp_path / "bad.pt")
    np.save(tmp_path / "m.npy", wafer())
    args = ["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv")]
    res = run(args + pipeline_args(tiny_pipeline) + ["--model", str(tmp_path / "bad.pt")])
    one_line_error(res, f"{tmp_path / 'bad.pt'}: not a loadable checkpoint", "input_size: 0")


def test_checkpoint_holding_code_is_refused_without_a_weights_only_hint(tmp_path, tiny_pipeline):
    """A checkpoint that only full unpickling could load is refused; the message does not
    suggest weights_only=False, and the pickle's code does not run."""
    import torch

    marker = tmp_path / "pwned"
    torch.save({"model_config": _Evil(marker)}, tmp_path / "evil.pt")
    np.save(tmp_path / "m.npy", wafer())
    args = ["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv")]
    res = run(args + pipeline_args(tiny_pipeline) + ["--model", str(tmp_path / "evil.pt")])
    one_line_error(res, f"{tmp_path / 'evil.pt'}: not a loadable checkpoint", "refused")
    assert not marker.exists()


def test_no_map_predicted_exits_non_zero_and_keeps_the_previous_output(tmp_path, tiny_pipeline):
    """When no map at all could be predicted, exit 2 and leave --out as it was."""
    (tmp_path / "bad.npy").write_text("just text")
    out = tmp_path / "p.csv"
    out.write_text("previous good output\n")
    res = run(["predict", str(tmp_path / "bad.npy"), "-o", str(out), *pipeline_args(tiny_pipeline)])
    assert res.exit_code == 2
    assert "error: no map was predicted (1 error(s), 0 skipped file(s))" in res.stderr
    assert out.read_text() == "previous good output\n"


# --------------------------------------------------------------------------- 5. bad input files


def test_text_file_named_npy_is_not_called_an_object_array(tmp_path):
    """A text file named .npy: 'not a .npy array', never 'object array', never a hint to
    allow pickles."""
    (tmp_path / "notes.npy").write_text("hello")
    (item,) = read_maps(tmp_path / "notes.npy")
    assert str(item.error) == f"{tmp_path / 'notes.npy'}: not a .npy array (no NUMPY header)"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("trunc.npy", lambda: _npy_bytes(wafer())[:-20], "not a readable .npy array"),
        ("trunc.png", lambda: encode_png(wafer())[:40], "not a readable image"),
        ("trunc.npz", lambda: _npz_bytes()[:50], "not a readable .npz file"),
        ("junk.png", lambda: b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "not a readable image"),
        ("junk.npz", lambda: b"PK\x03\x04 not really", "not a readable .npz file"),
        ("values.npy", lambda: _npy_bytes(np.full((4, 4), 7)), "values outside {0, 1, 2}"),
        ("nodie.npy", lambda: _npy_bytes(np.zeros((4, 4))), "no die"),
        ("strings.npy", lambda: _npy_bytes(np.array([["a", "b"]])), "non-numeric dtype"),
        ("4d.npy", lambda: _npy_bytes(np.ones((1, 1, 2, 2))), "4 dimension(s)"),
        ("empty.npy", lambda: _npy_bytes(np.zeros((0, 5, 5))), "empty stack"),
        ("obj.npy", lambda: _npy_bytes(np.array([None, 1], dtype=object)), "object array"),
        ("empty.npz", lambda: _npz_bytes(empty=True), "no arrays"),
        ("nothing.png", lambda: b"", "not a readable image"),
    ],
)
def test_bad_file_is_one_line(tmp_path, name, data, reason):
    """Truncated, corrupt, empty, wrongly-valued, wrongly-shaped and object-array files: one
    error naming the file and the reason, no hint to unpickle."""
    (tmp_path / name).write_bytes(data())
    items = read_maps(tmp_path / name)
    err = str(items[0].error)
    assert items[0].map is None and err.startswith(str(tmp_path / name)), err
    assert reason in err and "\n" not in err and "allow_pickle" not in err


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=arr.dtype.hasobject)
    return buf.getvalue()


def _npz_bytes(empty: bool = False) -> bytes:
    buf = io.BytesIO()
    if empty:
        zipfile.ZipFile(buf, "w").close()
    else:
        np.savez(buf, a=wafer())
    return buf.getvalue()


def test_truncated_and_foreign_pickles_when_trusted(tmp_path):
    """Even with --trust-pickle, a truncated pickle or one holding no DataFrame is one line."""
    data = pickle.dumps(lswmd_frame([(wafer(), "Center")]))
    (tmp_path / "trunc.pkl").write_bytes(data[: len(data) // 2])
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    (a,) = read_maps(tmp_path / "trunc.pkl", trust_pickle=True)
    (b,) = read_maps(tmp_path / "list.pkl", trust_pickle=True)
    assert "not a readable pickle" in str(a.error)
    assert "expected a pandas DataFrame, found list" in str(b.error)


def test_decompression_bomb_over_pils_limit(tmp_path, monkeypatch):
    """An image over PIL's own decompression-bomb limit is one line even with a high cap."""
    Image.new("L", (300, 300)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    (item,) = read_maps(tmp_path / "bomb.png", max_side=10**6)
    assert "not a readable image: DecompressionBombError" in str(item.error)


def test_symlink_loop_and_odd_names_in_a_folder(tmp_path, tiny_pipeline):
    """A symlink loop in a folder is ignored; odd file names (spaces, quotes, commas, a
    newline, non-ASCII) come through intact in the CSV."""
    import csv

    d = tmp_path / "maps"
    d.mkdir()
    (d / "loop.npy").symlink_to(d / "loop.npy")
    odd = ['a b,"c".npy', "é\nx.npy"]
    for n in odd:
        np.save(d / n, wafer())
    out = tmp_path / "p.csv"
    res = run(["predict", str(d), "-o", str(out), *pipeline_args(tiny_pipeline)])
    assert res.exit_code == 0, res.output
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["source"] for r in rows) == sorted(str(d / n) for n in odd)


def test_interrupted_write_keeps_the_previous_file(tmp_path):
    """A writer killed mid-write (here: an exception) leaves the previous file, whole, and no
    temporary file: wafer.io.atomic_path."""
    from wafer.io import atomic_path

    (tmp_path / "out.csv").write_text("good\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "out.csv") as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert (tmp_path / "out.csv").read_text() == "good\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_unsupported_and_missing_inputs(tmp_path):
    """A file of no supported kind (and not sniffable), a missing file, an empty folder."""
    (tmp_path / "w.csv").write_text("a,b\n")
    (tmp_path / "empty").mkdir()
    for name, reason in [
        ("w.csv", "unsupported input"),
        ("missing.npy", "no such file"),
        ("empty", "no input files"),
    ]:
        (item,) = read_maps(tmp_path / name)
        assert str(item.error).startswith(f"{tmp_path / name}: {reason}")


# --------------------------------------------------------------------------- 6. the demo


def test_demo_errors_do_not_show_server_temp_paths(tmp_path):
    """An unreadable upload is named by its own file name, not by the server's temporary
    path (which PIL's message would otherwise repeat)."""
    from wafer.demo import read_upload

    upload = tmp_path / "gradio" / "0123abcd" / "broken.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    a = read_upload(upload, upload.name)
    assert "broken.png: not a readable image" in a.warning_md
    assert str(tmp_path) not in a.warning_md and "0123abcd" not in a.warning_md


def test_demo_upload_types_and_bind_address():
    """The demo accepts only .png/.npy uploads (no pickles), caps upload size, and binds to
    127.0.0.1 unless told otherwise."""
    import inspect

    from wafer.demo import launch, main, read_upload

    assert "upload a .png or a .npy" in read_upload(Path("x.pkl")).warning_md
    assert inspect.signature(launch).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(main).parameters["host"].default == "127.0.0.1"
    assert '"20mb"' in inspect.getsource(launch)


def test_demo_bad_device_is_one_line(monkeypatch):
    """`python -m wafer.demo --device tpu9`: one line."""
    from wafer.demo import _cli

    monkeypatch.setitem(sys.modules, "gradio", type(sys)("gradio"))
    monkeypatch.setattr(sys, "argv", ["demo", "--device", "tpu9"])
    with pytest.raises(SystemExit) as info:
        _cli()
    assert info.value.code == 2
