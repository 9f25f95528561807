"""Where a checkout's pipeline files are, for the tools that run beside it (`wafer predict`, the
demo, scripts and benchmarks): each inter-stage path is written once, in dvc.yaml's ``paths``
variable, and each value once, in params.yaml; this module reads them, it writes neither.

    paths = pipeline_paths()           # {"model": Path(...), "ingested": Path(...), ...}
    gradcam = pipeline_params(GradcamParams)

Both look in ``repo`` (default: the current directory, where `dvc repro` runs) and raise a
one-line :class:`wafer.core.errors.UsageError` when the file is not there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import yaml

from wafer.config.params import load_params, load_section, section_values
from wafer.core.errors import UsageError

S = TypeVar("S")


def pipeline_paths(repo: str | os.PathLike = ".") -> dict[str, Path]:
    """dvc.yaml's ``paths`` variable (``vars: - paths: {name: path}``), repo-relative."""
    dvc_yaml = Path(repo) / "dvc.yaml"
    try:
        spec = yaml.safe_load(dvc_yaml.read_text())
    except FileNotFoundError:
        raise UsageError(
            f"no {dvc_yaml}: run from the pipeline's checkout or give the files' paths"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{dvc_yaml}: not readable: {str(exc).splitlines()[0]}") from None
    for entry in (spec or {}).get("vars") or []:
        if isinstance(entry, dict) and isinstance(entry.get("paths"), dict):
            return {k: Path(repo) / v for k, v in entry["paths"].items()}
    raise UsageError(f"{dvc_yaml}: no 'paths' variable under vars")


def pipeline_params(section: type[S], repo: str | os.PathLike = ".") -> S:
    """Section ``section`` (its class) of the checkout's params.yaml, checked. A pipeline that
    reads part of its recipe from another params file (``pipelines/crossfit`` reads the root's)
    names that file in dvc.yaml's ``vars``; a section its own params.yaml lacks is taken from
    the first of those that has it."""
    values = recipe_params(repo)
    if section.SECTION in values:
        return section_values(values, section)
    return load_section(Path(repo) / "params.yaml", section)  # the one-line error naming it


def recipe_params(repo: str | os.PathLike = ".") -> dict:
    """Every section a pipeline's stages read, as one dict: each from the checkout's
    params.yaml, or else from the first params file its dvc.yaml's ``vars`` names (the recipe
    ``pipelines/crossfit`` reads from the root's). Unchecked: take sections with
    :func:`pipeline_params` or ``section_values``."""
    path = Path(repo) / "params.yaml"
    if not path.is_file():
        raise UsageError(f"no {path}: run from the pipeline's checkout or give the option")
    merged: dict = {}
    for other in [path, *_vars_files(repo)]:
        values = load_params(other)
        if isinstance(values, dict):
            merged |= {k: v for k, v in values.items() if k not in merged}
    return merged


def _vars_files(repo: str | os.PathLike) -> list[Path]:
    """The params files (other than its own params.yaml) that dvc.yaml's ``vars`` names."""
    try:
        spec = yaml.safe_load((Path(repo) / "dvc.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    names = [v for v in (spec or {}).get("vars") or [] if isinstance(v, str)]
    return [Path(repo) / n for n in names if n != "params.yaml" and (Path(repo) / n).is_file()]
