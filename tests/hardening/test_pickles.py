"""The bad-input and fault catalogue, 2: pickles.

No unpickling without an explicit opt-in; the safe conversion path."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import yaml
from typer.testing import CliRunner

from wafer.inputs.read import read_maps

from conftest import (
    ROOT,
    evil_pickle,
    lswmd_frame,
    one_line_error,
    params_file,
    pipeline_args,
    run_cli,
    wafer,
    write_legacy_pickle,
)

# --------------------------------------------------------------------------- 2. pickles


def test_crafted_pickle_named_runs_no_code(tmp_path, tiny_pipeline):
    """A crafted pickle given to `wafer predict` by name is not unpickled without
    --trust-pickle: no code runs, one error line, exit 2 (nothing else was predicted)."""
    marker = tmp_path / "pwned"
    evil = evil_pickle(tmp_path / "evil.pkl", marker)
    out = tmp_path / "p.csv"
    res = run_cli(["predict", str(evil), "-o", str(out), *pipeline_args(tiny_pipeline)])
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
    evil_pickle(d / "a.pkl", marker)
    evil_pickle(d / "b.pickle.gz", marker)  # not gzip at all: it is never opened
    np.save(d / "c.npy", wafer(12, 12))
    out = tmp_path / "p.csv"
    res = run_cli(["predict", str(d), "-o", str(out), *pipeline_args(tiny_pipeline)])
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
    res = run_cli(args + pipeline_args(tiny_pipeline))
    assert res.exit_code == 0, res.output
    assert out.read_text().count("\n") == 3


def test_convert_then_predict_and_ingest_without_unpickling(tmp_path, tiny_pipeline):
    """`wafer convert` (the one-time, trusted step) turns a legacy LSWMD pickle into a
    ragged-maps .npz; `wafer predict` reads it without --trust-pickle (rows keep the pickle's
    row numbers, unlabeled rows included) and ingest gives the same intermediate as from the
    pickle."""
    from wafer.data.ingest import ingest_file

    maps = [wafer(14, 14), wafer(9, 12, (2, 2)), np.array([1, 2]), wafer(20, 18, (9, 9))]
    frame = lswmd_frame(list(zip(maps, ["Center", None, "Loc", "Donut"], strict=True)))
    frame["patternMask"] = [np.zeros(np.shape(m), dtype=bool) for m in maps]
    write_legacy_pickle(frame, tmp_path / "LSWMD.pkl")
    npz = tmp_path / "LSWMD.npz"
    res = run_cli(["convert", str(tmp_path / "LSWMD.pkl"), "--trust-pickle", "--out", str(npz)])
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
    res = run_cli(["predict", str(npz), "-o", str(out), *pipeline_args(tiny_pipeline)])
    assert res.exit_code == 0, res.output
    assert [r["source"] for r in json.loads(out.read_text())] == [it.source for it in got]

    a = ingest_file(tmp_path / "LSWMD.pkl", "drop", trust_pickle=True)
    b = ingest_file(npz, "drop")
    for key, arr in a.arrays().items():
        np.testing.assert_array_equal(arr, b.arrays()[key], err_msg=key)
    assert a.dropped["unlabeled"] == b.dropped["unlabeled"] == 1
    assert b.first_dropped["unlabeled"] == 1  # the pickle's row, not the .npz position


def test_convert_help_says_it_unpickles():
    """`wafer convert --help` warns that it unpickles and must only get trusted files."""
    res = run_cli(["convert", "--help"])
    assert res.exit_code == 0 and "UNPICKLES" in res.output and "trust" in res.output


def test_ingest_stage_reads_the_converted_npz(tmp_path, load_stage):
    """ingest.input may name the converted .npz; a missing input is one line, not a
    traceback from hashing a file that does not exist."""
    lswmd_frame([(wafer(14, 14), "Center"), (wafer(12, 12), "none")]).to_pickle(tmp_path / "w.pkl")
    args = ["convert", str(tmp_path / "w.pkl"), "-o", str(tmp_path / "w.npz"), "--trust-pickle"]
    assert run_cli(args).exit_code == 0
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


def test_convert_needs_the_explicit_opt_in(tmp_path):
    """`wafer convert evil.pkl` without --trust-pickle runs no code: one line asking for the
    flag (it used to unpickle with no opt-in, unlike `wafer predict`)."""
    marker = tmp_path / "pwned"
    evil_pickle(tmp_path / "evil.pkl", marker)
    res = run_cli(["convert", str(tmp_path / "evil.pkl"), "-o", str(tmp_path / "o.npz")])
    one_line_error(res, "evil.pkl: converting reads a pickle", "--trust-pickle")
    assert not marker.exists() and not (tmp_path / "o.npz").exists()


def test_ingest_reads_a_pickle_only_when_trusted(tmp_path, load_stage):
    """`ingest.input=evil.pkl` runs no code: without ingest.trust_pickle the ingest stage (and
    validate_params before it) stops in one line; the embedded default is an .npz."""
    from typer.testing import CliRunner

    marker = tmp_path / "pwned"
    evil = evil_pickle(tmp_path / "evil.pkl", marker)
    params = params_file(tmp_path, {"ingest.input": str(evil)})
    args = ["--params", str(params), "--out", str(tmp_path / "i.npz")]
    args += ["--metrics", str(tmp_path / "m.json")]
    res = CliRunner().invoke(load_stage("ingest").app, args)
    assert res.exit_code == 2 and not marker.exists()
    assert res.output.strip().startswith(f"error: {evil}: is not a ragged-maps .npz")
    assert "ingest.trust_pickle" in res.output and len(res.output.strip().splitlines()) == 1
    check = ["--params", str(params), "--synthetic", "data/raw/synthetic.npz"]
    check += ["--out", str(tmp_path / "ok")]
    res = CliRunner().invoke(load_stage("validate_params").app, check)
    assert res.exit_code == 2 and not marker.exists()
    assert res.output.startswith(f"error: ingest.input: {evil}: is not a ragged-maps .npz")
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["ingest"]["trust_pickle"] is False
    assert yaml.safe_load((ROOT / "params.yaml").read_text())["ingest"]["input"].endswith(".npz")
