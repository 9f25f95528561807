"""Reading an LSWMD-format pickle (Kaggle's legacy ``LSWMD.pkl``, the real subset, the synthetic
data) as a DataFrame, and the cell format of its label columns.

**Security: unpickling runs code.** :func:`read_lswmd` unpickles; call it only for a file from
a source you trust (the ``ingest`` stage reads ``ingest.input``; ``wafer predict`` only with
``--trust-pickle``; ``wafer convert`` makes a pickle-free .npz of a trusted pickle once).

The real ``LSWMD.pkl`` was written by pandas ~0.19 under Python 2, which gives it two quirks:

* its class references name modules that current pandas and numpy lack or renamed
  (``pandas.indexes.base``, ``pandas.core.index``, ``numpy.core.multiarray``), and
* its numpy buffers are Python-2 ``str`` objects, which Python 3 only decodes with
  ``encoding="latin1"``.

:class:`LegacyUnpickler` maps the old module paths and decodes with latin1 (modern pickles load
through it too, any compression).
"""

from __future__ import annotations

import bz2
import gzip
import importlib
import io
import lzma
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from wafer.core.errors import WaferInputError

# Old module path prefix -> current prefix.
_MODULE_RENAMES: tuple[tuple[str, str], ...] = (
    ("pandas.indexes.", "pandas.core.indexes."),
    ("pandas.core.index", "pandas.core.indexes.base"),
    ("pandas.tseries.index", "pandas.core.indexes.datetimes"),
    ("pandas.tseries.period", "pandas.core.indexes.period"),
    ("pandas.sparse.", "pandas.core.sparse."),
    ("numpy.core.", "numpy._core."),
)


class LegacyUnpickler(pickle.Unpickler):
    """Unpickler for Python-2-era pandas pickles: renames old module paths, decodes latin1."""

    def __init__(self, file: io.BufferedIOBase):
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        for old, new in _MODULE_RENAMES:
            if old.endswith("."):
                if not module.startswith(old):
                    continue
                candidate = new + module[len(old) :]
            elif module == old:
                candidate = new
            else:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    mod = importlib.import_module(candidate)
            except ImportError:
                continue
            if hasattr(mod, name):
                return getattr(mod, name)
        return super().find_class(module, name)


def _open_decompressed(path: Path) -> io.BufferedIOBase:
    """Open ``path`` and undo xz/gzip/bz2/zip compression, sniffed from its first bytes."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic.startswith(b"\xfd7zXZ"):
        return lzma.open(path, "rb")
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"PK"):
        zf = zipfile.ZipFile(path)
        return zf.open(zf.namelist()[0])
    return open(path, "rb")


def read_lswmd(path: str | Path) -> pd.DataFrame:
    """Load an LSWMD-format pickle (legacy or modern, compressed or not) as a DataFrame."""
    path = Path(path)
    if not path.is_file():
        raise WaferInputError(path, "no such file")
    errors = (
        pickle.UnpicklingError,
        EOFError,
        ImportError,
        AttributeError,
        TypeError,
        ValueError,
        UnicodeDecodeError,
        IndexError,
        KeyError,
        lzma.LZMAError,
        OSError,
        zipfile.BadZipFile,
    )
    try:
        with _open_decompressed(path) as fh:
            obj = LegacyUnpickler(fh).load()
    except errors as exc:
        raise WaferInputError(
            path,
            "not a readable pickle (truncated or corrupt?): "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
        ) from None
    if not isinstance(obj, pd.DataFrame):
        raise WaferInputError(path, f"expected a pandas DataFrame, found {type(obj).__name__}")
    return obj


def unwrap_label(value: object) -> str | None:
    """``array([['Center']])`` -> ``'Center'``; empty arrays, None and NaN -> None (unlabeled)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, float) and np.isnan(value):
        return None
    arr = np.asarray(value, dtype=object).ravel()
    if arr.size == 0:
        return None
    item = arr[0]
    if isinstance(item, bytes):
        item = item.decode("latin1")
    return str(item).strip() or None
