"""The options the apps (``wafer predict``, the demo) share: which served files to load (given,
else the pipeline's own), the Grad-CAM settings (given, else params.yaml's), and output paths
checked before any work."""

from __future__ import annotations

import os
from pathlib import Path

from wafer.config.pipeline import pipeline_params, pipeline_paths
from wafer.config.sections import GradcamParams
from wafer.core.errors import UsageError, WaferInputError
from wafer.serving.files import Calibration, Novelty


def served_files(
    given: dict[str, str | os.PathLike | None], repo: str | os.PathLike = "."
) -> tuple[dict[str, Path | None], str]:
    """The files to serve: each of ``given`` (model, calibration, thresholds, index, novelty,
    and any other name of dvc.yaml's ``paths``), else the pipeline's own (dvc.yaml's ``paths``
    in ``repo``). The index and novelty.json are optional: when neither is given and the
    pipeline's index does not exist, or ``model`` is given and the pipeline's index was built
    for another model (its novelty.json names another model than the calibration does), both
    are None and the note says why (serve without novelty;
    :meth:`wafer.serving.predictor.Predictor.load` refuses given files that are missing or
    bound to another model)."""
    files = {k: None if v is None else Path(v) for k, v in given.items()}
    if all(v is not None for v in files.values()):
        return files, ""
    try:
        pipeline, no_pipeline = pipeline_paths(repo), ""
    except UsageError as exc:
        pipeline, no_pipeline = {}, str(exc)

    def default(k: str) -> Path:
        if k not in pipeline:
            why = no_pipeline or f"dvc.yaml has no paths.{k}"
            raise UsageError(f"--{k.replace('_', '-')} not given, and {why}")
        return pipeline[k]

    optional = ("index", "novelty")
    for k in files:
        if files[k] is None and k not in optional:
            files[k] = default(k)
    if "index" in files and files["index"] is None and files["novelty"] is None:
        index = pipeline.get("index")
        if index is None or not index.exists():
            where = f"no {index}" if index is not None else f"no index ({no_pipeline})"
            why = f"{where} (index stage): no novelty score and no similar historical maps"
            return files, why + ("; `dvc repro` builds it" if index is not None else "")
        novelty = pipeline.get("novelty")
        if given.get("model") is not None and not _same_model(novelty, files["calibration"]):
            # the pipeline's index is bound to another model (Predictor.load would refuse it
            # beside this one): this model is served without novelty
            why = (
                f"the pipeline's index {index} was built for another model than the one given "
                f"({files['model']}; {novelty}: model_sha256 differs): no novelty score and no "
                "similar historical maps (give --index and --novelty built for this model)"
            )
            return files, why
    for k in optional:
        if k in files and files[k] is None:
            files[k] = default(k)
    return files, ""


def _same_model(novelty: Path | None, calibration: Path | None) -> bool:
    """Whether the pipeline's novelty settings and the served calibration name the same model
    (the calibration must name the served model, or Predictor.load refuses it: so this is
    whether the index was built for that model, without hashing it). True when either file
    cannot be read: then the loader's one-line error, naming the file, is the answer."""
    if novelty is None or calibration is None:
        return True
    try:
        return Novelty.load(novelty).model_sha256 == Calibration.load(calibration).model_sha256
    except WaferInputError:
        return True


def cam_settings(
    method: str | None, layer: str | None, needed: bool, repo: str | os.PathLike = "."
) -> tuple[str | None, str | None]:
    """Grad-CAM method and layer: as given, else params.yaml's ``gradcam`` section (the
    pipeline's in ``repo``: the current directory, or ``--pipeline``'s folder). Without
    params.yaml they stay None (no CAM) unless ``needed``, which makes that a one-line error."""
    if method is not None and layer is not None:
        return method, layer
    try:
        gradcam = pipeline_params(GradcamParams, repo)
    except UsageError as exc:
        if needed:
            raise UsageError(f"--cam-method/--cam-layer not given, and {exc}") from None
        return method, layer
    return method or gradcam.method, layer or gradcam.layer


def _existing_ancestor_is_a_dir(path: Path, option: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{option} {path}: {parent} is not a folder")
            return


def check_output_file(path: Path, option: str = "--out") -> None:
    """Refuse, before any work, an output file path that is a folder or lies below a file."""
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file name")
    _existing_ancestor_is_a_dir(path, option)


def check_output_dir(path: Path, option: str) -> None:
    """Refuse, before any work, an output folder path that is a file or lies below a file."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: is a file, not a folder")
    _existing_ancestor_is_a_dir(path, option)
