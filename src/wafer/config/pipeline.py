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

from wafer.config.params import load_section
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
    """Section ``section`` (its class) of the checkout's params.yaml, checked."""
    path = Path(repo) / "params.yaml"
    if not path.is_file():
        raise UsageError(f"no {path}: run from the pipeline's checkout or give the option")
    return load_section(path, section)
