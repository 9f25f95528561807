"""The bad-input and fault catalogue, 6: the demo."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import wafer

# --------------------------------------------------------------------------- 6. the demo


def test_demo_errors_do_not_show_server_temp_paths(tmp_path):
    """An unreadable upload is named by its own file name, not by the server's temporary
    path (which PIL's message would otherwise repeat)."""
    from wafer.apps.demo.analysis import read_upload

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

    from wafer.apps.demo.analysis import read_upload
    from wafer.apps.demo.app import launch, main

    assert "upload a .png or a .npy" in read_upload(Path("x.pkl")).warning_md
    assert inspect.signature(launch).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(main).parameters["host"].default == "127.0.0.1"
    assert '"20mb"' in inspect.getsource(launch)


def test_demo_bad_device_is_one_line(monkeypatch):
    """`python -m wafer.apps.demo --device tpu9`: one line."""
    from wafer.apps.demo.app import cli

    monkeypatch.setitem(sys.modules, "gradio", type(sys)("gradio"))
    monkeypatch.setattr(sys, "argv", ["demo", "--device", "tpu9"])
    with pytest.raises(SystemExit) as info:
        cli()
    assert info.value.code == 2


@pytest.mark.parametrize("upload", ["good", "refused"])
def test_the_demo_keeps_no_upload(tmp_path, monkeypatch, tiny_pipeline, upload):
    """An upload in gradio's temporary folder is deleted once analysed or refused; a file the
    caller gave from elsewhere is left alone."""
    import numpy as np

    from wafer.apps.demo.analysis import handle_upload
    from wafer.apps.demo.assets import DemoAssets
    from wafer.serving.predictor import Predictor

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    folder = tmp_path / "gradio" / "0123abcd"
    folder.mkdir(parents=True)
    path = folder / ("m.npy" if upload == "good" else "m.txt")
    np.save(folder / "m.npy", wafer()) if upload == "good" else path.write_text("not a map")
    p = Predictor.load(
        tiny_pipeline["model"], tiny_pipeline["calibration"], tiny_pipeline["thresholds"], "cpu"
    )
    a = handle_upload(DemoAssets(p, {}, []), str(path))
    assert (a.row is not None) == (upload == "good")
    assert not path.exists() and not folder.exists()
    elsewhere = tmp_path / "mine.npy"
    np.save(elsewhere, wafer())
    handle_upload(DemoAssets(p, {}, []), str(elsewhere))
    assert elsewhere.exists()
