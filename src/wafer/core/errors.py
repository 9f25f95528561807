"""One-line errors, never a traceback: a bad input file names the file, the row and the reason;
a bad option or parameter names it; :func:`one_line_errors` turns both into ``error: ...`` and
exit status 2 for the command-line tools and stage scripts."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any


class WaferInputError(ValueError):
    """Bad input: the message is one line naming the file, the row (if any) and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str, row: int | None = None):
        where = f"{path}" if row is None else f"{path}, row {row}"
        super().__init__(f"{where}: {reason}")
        self.path, self.row, self.reason = str(path), row, reason


class UsageError(ValueError):
    """A bad option or parameter value: the message is one line naming it (``--device
    'tpu9': ...``, ``train.loss: ...``)."""


def write_failure(path: str | os.PathLike, exc: OSError) -> WaferInputError:
    """An OSError met while writing ``path`` (full disk, read-only folder, a directory in the
    way) as a one-line error naming the file and the reason (``No space left on device``)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return WaferInputError(path, f"cannot write: {reason}")


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: a :class:`WaferInputError` prints ``error: <file>, row N: <reason>``, a
    :class:`UsageError` (bad option or param, e.g. :class:`wafer.config.rules.ParamError`) prints
    ``error: <what>: <reason>``; both exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (WaferInputError, UsageError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
