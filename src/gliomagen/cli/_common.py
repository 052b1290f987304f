"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer

from gliomagen.errors import GliomagenError

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` (one line) on stderr and return the exit-2 exception to raise."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return typer.Exit(code=2)


def user_errors(func: F) -> F:
    """Decorate a command so a GliomagenError becomes one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GliomagenError as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def split_list(values: str | Sequence[str]) -> list[str]:
    """The words of a list option: comma- or space-separated, given once or repeated."""
    texts = [values] if isinstance(values, str) else list(values)
    return [w for v in texts for w in v.replace(",", " ").split()]


def int_list(values: str | Sequence[str], option: str, example: str = "0,1,2") -> list[int]:
    """A list option of integers (see :func:`split_list`); a bad or empty list is a GliomagenError."""
    shown = values if isinstance(values, str) else ",".join(values)
    try:
        out = [int(w) for w in split_list(values)]
    except ValueError:
        raise GliomagenError(
            f"{option} {shown!r}: expected comma-separated integers, e.g. {example}"
        ) from None
    if not out:
        raise GliomagenError(f"{option} {shown!r}: give at least one value")
    return out
