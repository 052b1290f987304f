"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
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
