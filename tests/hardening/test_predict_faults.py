"""The bad-input and fault catalogue, 4: `wafer predict` options and faults: --out, --cam-dir,
--device, full disk, checkpoints."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from conftest import (
    Evil,
    one_line_error,
    pipeline_args,
    run_cli,
    wafer,
)

# --------------------------------------------------------------------------- 4. predict options


def test_out_is_a_directory(tmp_path, tiny_pipeline):
    """--out naming a folder is refused before anything is loaded or computed."""
    np.save(tmp_path / "m.npy", wafer())
    (tmp_path / "p.csv").mkdir()
    res = run_cli(
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
    res = run_cli([*base, "--cam-dir", str(tmp_path / "cams"), *pipeline_args(tiny_pipeline)])
    one_line_error(res, f"--cam-dir {tmp_path / 'cams'}: is a file, not a folder")
    res = run_cli([*base, "--cam-dir", str(tmp_path / "cams" / "x"), *pipeline_args(tiny_pipeline)])
    one_line_error(res, "is not a folder")
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize("device", ["tpu9", "cuda:99", "xla", ""])
def test_bad_device(tmp_path, tiny_pipeline, device):
    """--device tpu9 (or a GPU this machine lacks) is one line, not a torch traceback."""
    np.save(tmp_path / "m.npy", wafer())
    args = ["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv")]
    res = run_cli(args + pipeline_args(tiny_pipeline)[:-3] + ["--device", device])
    one_line_error(res, f"--device {device!r}")


def test_full_disk(tmp_path, tiny_pipeline, monkeypatch):
    """A full disk while writing --out: one line naming the file and the reason; the previous
    output is intact and no temporary file is left."""
    np.save(tmp_path / "m.npy", wafer())
    out = tmp_path / "p.csv"
    out.write_text("previous good output\n")

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from wafer.apps.rows import RowWriter

    monkeypatch.setattr(RowWriter, "write", full)  # rows are streamed to --out
    res = run_cli(
        ["predict", str(tmp_path / "m.npy"), "-o", str(out), *pipeline_args(tiny_pipeline)]
    )
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
    res = run_cli(args + pipeline_args(tiny_pipeline) + ["--model", str(tmp_path / "bad.pt")])
    one_line_error(res, f"{tmp_path / 'bad.pt'}: not a loadable checkpoint", "input_size: 0")


def test_checkpoint_holding_code_is_refused_without_a_weights_only_hint(tmp_path, tiny_pipeline):
    """A checkpoint that only full unpickling could load is refused; the message does not
    suggest weights_only=False, and the pickle's code does not run."""
    import torch

    marker = tmp_path / "pwned"
    torch.save({"model_config": Evil(marker)}, tmp_path / "evil.pt")
    np.save(tmp_path / "m.npy", wafer())
    args = ["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv")]
    res = run_cli(args + pipeline_args(tiny_pipeline) + ["--model", str(tmp_path / "evil.pt")])
    one_line_error(res, f"{tmp_path / 'evil.pt'}: not a loadable checkpoint", "refused")
    assert not marker.exists()


def test_no_map_predicted_exits_non_zero_and_keeps_the_previous_output(tmp_path, tiny_pipeline):
    """When no map at all could be predicted, exit 2 and leave --out as it was."""
    (tmp_path / "bad.npy").write_text("just text")
    out = tmp_path / "p.csv"
    out.write_text("previous good output\n")
    res = run_cli(
        ["predict", str(tmp_path / "bad.npy"), "-o", str(out), *pipeline_args(tiny_pipeline)]
    )
    assert res.exit_code == 2
    assert "error: no map was predicted (1 error(s), 0 skipped file(s))" in res.stderr
    assert out.read_text() == "previous good output\n"


def test_neighbours_have_a_stated_limit(tmp_path, tiny_pipeline):
    """--neighbours 10**9 on a tiny input is refused in one line before anything is loaded
    (it used to peak at 2.8 GB and write a 126 MB CSV)."""
    np.save(tmp_path / "m.npy", wafer())
    args = ["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv")]
    res = run_cli([*args, "--neighbours", str(10**9), *pipeline_args(tiny_pipeline)])
    one_line_error(res, "--neighbours 1000000000: at most 100 nearest training maps per map")
    assert not (tmp_path / "p.csv").exists()
    ok = run_cli([*args, "--neighbours", "100", *pipeline_args(tiny_pipeline)])
    assert ok.exit_code == 0, ok.output  # the limit itself is allowed (the index has 45 maps)


def test_a_text_file_given_as_model_is_named_for_what_it_is(tmp_path, tiny_pipeline):
    """--model on a text file says it is not a checkpoint, not that it holds objects."""
    (tmp_path / "model.txt").write_text("just a note\n")
    np.save(tmp_path / "m.npy", wafer())
    files = dict(tiny_pipeline, model=tmp_path / "model.txt")
    res = run_cli(
        ["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv")] + pipeline_args(files)
    )
    line = one_line_error(res, "model.txt: not a loadable checkpoint", "not a PyTorch checkpoint")
    assert "objects other than tensors" not in line


def test_a_killed_run_leaves_no_stale_temporary_file(tmp_path, tiny_pipeline):
    """A run killed with -9 leaves its hidden temporary beside --out; the next run for the
    same --out removes it (a temporary of a process still alive is left alone)."""
    np.save(tmp_path / "m.npy", wafer())
    dead = tmp_path / f".p.{_dead_pid()}-x1y2.tmp.csv"
    dead.write_bytes(b"")
    alive = tmp_path / f".p.{os.getpid()}-abcd.tmp.csv"
    alive.write_bytes(b"")
    res = run_cli(
        ["predict", str(tmp_path / "m.npy"), "-o", str(tmp_path / "p.csv")]
        + pipeline_args(tiny_pipeline)
    )
    assert res.exit_code == 0, res.output
    assert not dead.exists() and alive.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "m.npy", "p.csv"])


def _dead_pid() -> int:
    """A process id no process has now."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
