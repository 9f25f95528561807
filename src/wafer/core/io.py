"""Small I/O helpers: atomic writes (temp file + rename), JSON/CSV/NPZ in the project's one
format each, file digests and machine-dependent timings."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wafer.core.errors import WaferInputError


def _temp_prefix(path: Path, pid: int | str) -> str:
    return f".{path.stem}.{pid}-"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    An interrupted writer (Ctrl-C, crash) leaves the previous file, or none, never half a file.
    The temporary name keeps the final suffix so that numpy/torch/matplotlib pick the right
    format, and holds the writer's process id (``.<stem>.<pid>-<random>.tmp<suffix>``), so that
    one left by a killed process can be told from one being written
    (:func:`remove_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=_temp_prefix(path, os.getpid()), suffix=f".tmp{path.suffix}"
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


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` for ``path`` whose writing process is
    gone (killed with -9, the machine restarted): a temporary of a live process is kept.
    Returns the files removed."""
    path = Path(path)
    pattern = f"{_temp_prefix(path, '*')}*.tmp{path.suffix}"
    removed = []
    for tmp in path.parent.glob(pattern) if path.parent.is_dir() else []:
        pid = tmp.name[len(f".{path.stem}.") :].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _to_builtin(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_to_builtin(v) for v in obj]
    if isinstance(obj, np.generic):
        v = obj.item()
        return None if isinstance(v, float) and not math.isfinite(v) else v
    if isinstance(obj, np.ndarray):
        return _to_builtin(obj.tolist())
    if isinstance(obj, float):
        return round(obj, 6) if math.isfinite(obj) else None  # JSON has no NaN: null
    return obj


def json_text(data: Any) -> str:
    """Standard JSON text, indented by 2: numpy scalars become Python numbers, floats keep 6
    decimals, NaN and infinities become null (never the bare NaN token, which is not JSON)."""
    return json.dumps(_to_builtin(data), indent=2, allow_nan=False)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write :func:`json_text` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(data) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def csv_writer(fh) -> Any:
    """The one CSV dialect of the project's files: ``csv.writer`` with ``\\n`` line ends."""
    return csv.writer(fh, lineterminator="\n")


def write_csv(
    path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Write a CSV file (header, then ``rows``) atomically; values are written with ``str``,
    so format floats before (e.g. ``f"{v:.6f}"`` or ``round(v, 6)``)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv_writer(fh)
        w.writerow(header)
        w.writerows(rows)


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Like ``np.savez`` (uncompressed, no pickles), atomically and byte-reproducibly.

    ``np.savez`` stamps each zip member with the current time, so the same arrays give a new
    file hash on every run and DVC would see a change; here every member gets a fixed date.
    """
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every member of an ``.npz`` (``allow_pickle=False``: no code runs), read whole; a missing
    or unreadable file, or a missing member, raises :class:`WaferInputError` naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise WaferInputError(path, "no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise WaferInputError(path, f"not a readable .npz: {exc}") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise WaferInputError(path, f"missing array(s) {', '.join(missing)}")
    return arrays


TIMING_DIR = Path("metrics/timing")


def write_timing(
    stage: str, data: dict[str, Any], directory: str | os.PathLike = TIMING_DIR
) -> None:
    """Machine-dependent figures (seconds, maps/s) go to metrics/timing/<stage>.json, which is
    neither versioned nor declared in dvc.yaml: the versioned metrics stay byte-identical when
    the same params run again on the same machine, so a re-run changes no tracked file."""
    write_json(Path(directory) / f"{stage}.json", data)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (binds the served files to the model they were fit for)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
