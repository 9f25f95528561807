"""Small I/O helpers: atomic writes (temp file + rename) and one-line input errors."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


class WaferInputError(ValueError):
    """Bad input: the message is one line naming the file, the row (if any) and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str, row: int | None = None):
        where = f"{path}" if row is None else f"{path}, row {row}"
        super().__init__(f"{where}: {reason}")
        self.path, self.row, self.reason = str(path), row, reason


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    An interrupted writer (Ctrl-C, crash) leaves the previous file, or none, never half a file.
    The temporary name keeps the final suffix so that numpy/torch/matplotlib pick the right format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal rights
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _to_builtin(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_builtin(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return _to_builtin(obj.tolist())
    if isinstance(obj, float):
        return round(obj, 6)
    return obj


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically; numpy scalars become Python numbers, floats keep 6 decimals."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_to_builtin(data), indent=2) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """np.savez atomically (uncompressed, so members can be read without inflating)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())
