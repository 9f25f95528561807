"""Shared bits for the command-line tools and stage scripts: one-line errors, never a
traceback, for bad input files, bad options / params and failed writes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from wafer.io import UsageError, WaferInputError


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: a :class:`WaferInputError` prints ``error: <file>, row N: <reason>``, a
    :class:`UsageError` (bad option or param, e.g. :class:`wafer.params.ParamError`) prints
    ``error: <what>: <reason>``; both exit with status 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (WaferInputError, UsageError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
