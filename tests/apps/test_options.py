"""wafer.apps.options.served_files: given files first, else the pipeline's own; the pipeline's
index (bound to the pipeline's model) is not defaulted beside another model."""

from __future__ import annotations

import yaml

from wafer.apps.options import served_files

NAMES = ("model", "calibration", "thresholds", "index", "novelty")


def _pipeline(tmp_path):
    paths = {k: f"models/{k}.bin" for k in NAMES}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"vars": [{"paths": paths}]}))
    (tmp_path / "models").mkdir()
    for k in NAMES:
        (tmp_path / "models" / f"{k}.bin").write_text(k)
    return tmp_path


def test_the_pipelines_own_files_with_its_index(tmp_path):
    repo = _pipeline(tmp_path)
    files, why = served_files(dict.fromkeys(NAMES), repo)
    assert why == "" and files["index"] == repo / "models" / "index.bin"
    # the pipeline's model named explicitly (another spelling of the same file) keeps its index
    files, why = served_files(
        {**dict.fromkeys(NAMES), "model": repo / "models/../models/model.bin"}, repo
    )
    assert why == "" and files["index"] == repo / "models" / "index.bin"


def test_another_model_is_served_without_the_pipelines_index(tmp_path):
    repo = _pipeline(tmp_path)
    other = tmp_path / "student.pt"
    other.write_text("another model")
    files, why = served_files({**dict.fromkeys(NAMES), "model": other}, repo)
    assert files["model"] == other and files["index"] is None and files["novelty"] is None
    assert "is not the pipeline's model" in why and "--index and --novelty" in why
    # its own index, given, is served
    idx, nov = tmp_path / "i.npz", tmp_path / "n.json"
    files, why = served_files(
        {**dict.fromkeys(NAMES), "model": other, "index": idx, "novelty": nov}, repo
    )
    assert why == "" and (files["index"], files["novelty"]) == (idx, nov)
