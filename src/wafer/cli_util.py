"""Shared bits for the stage scripts: turn WaferInputError into a one-line exit."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from wafer.io import WaferInputError


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: a :class:`WaferInputError` prints ``error: <file>, row N: <reason>``, exits 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WaferInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
