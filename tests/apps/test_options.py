"""wafer.apps.options.served_files: given files first, else the pipeline's own; the pipeline's
index is not defaulted beside a model it was not built for (its novelty.json names another
model than the served calibration)."""

from __future__ import annotations

import shutil

import yaml

from wafer.apps.options import served_files
from wafer.config.rules import NOVELTY_METHODS
from wafer.core.io import sha256_file
from wafer.serving.files import Calibration, Novelty

NAMES = ("model", "calibration", "thresholds", "index", "novelty")


def _pipeline(tmp_path):
    paths = {k: f"models/{k}.bin" for k in NAMES}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"vars": [{"paths": paths}]}))
    (tmp_path / "models").mkdir()
    for k in NAMES:
        (tmp_path / "models" / f"{k}.bin").write_text(k)
    _calibration(tmp_path / "models" / "calibration.bin", tmp_path / "models" / "model.bin")
    sha = sha256_file(tmp_path / "models" / "model.bin")
    thr = dict.fromkeys(NOVELTY_METHODS, 1.0)
    Novelty("knn", 1.0, thr, 3, 0.01, 1.0, 1, sha, "0" * 64).save(
        tmp_path / "models" / "novelty.bin"
    )
    return tmp_path


def _calibration(path, model):
    """A served calibration bound to ``model`` (it must name the model Predictor.load serves)."""
    Calibration(1.0, 1, "eager", 0, sha256_file(model), "0" * 64).save(path)


def test_the_pipelines_own_model_gets_its_index_wherever_it_lies(tmp_path):
    repo = _pipeline(tmp_path)
    files, why = served_files(dict.fromkeys(NAMES), repo)
    assert why == "" and files["index"] == repo / "models" / "index.bin"
    copy = tmp_path / "copy.pt"  # the same model elsewhere: the index is bound to its content
    shutil.copy(repo / "models" / "model.bin", copy)
    given = {**dict.fromkeys(NAMES), "model": copy}
    files, why = served_files(given, repo)
    assert why == "" and files["index"] == repo / "models" / "index.bin"


def test_another_model_is_served_without_the_pipelines_index(tmp_path):
    repo = _pipeline(tmp_path)
    other = tmp_path / "student.pt"
    other.write_text("another model")
    _calibration(tmp_path / "cal.json", other)  # its own served calibration
    given = {**dict.fromkeys(NAMES), "model": other, "calibration": tmp_path / "cal.json"}
    files, why = served_files(given, repo)
    assert files["model"] == other and files["index"] is None and files["novelty"] is None
    assert "built for another model" in why and "--index and --novelty" in why
    # its own index, given, is served
    idx, nov = tmp_path / "i.npz", tmp_path / "n.json"
    given |= {"index": idx, "novelty": nov}
    files, why = served_files(given, repo)
    assert why == "" and (files["index"], files["novelty"]) == (idx, nov)
