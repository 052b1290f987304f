"""Helpers shared by the subcommand modules, and the output rules of every command.

Every command writes at most one line per problem on stderr:

* a :class:`gliomagen.errors.GliomagenError` or a usage error (a bad option): ``error: ...``,
  the whole message on one line (never wrapped or boxed), exit code 2;
* Ctrl-C (SIGINT) or SIGTERM: ``error: interrupted``, exit code 130 or 143, after the command's
  cleanup ran (SIGTERM is raised like Ctrl-C, see :class:`Terminated`);
* a Python warning (torch, nibabel, ...): ``warning: ...`` on one line, once per distinct message.

``--help`` is plain text (the app sets ``rich_markup_mode=None``), wrapped to the terminal (at most
78 columns) and never cut: :class:`FullHelpGroup` lists each command with its whole first sentence.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO, TypeVar

import typer
from typer.core import TyperGroup

from gliomagen.errors import GliomagenError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT)."""

EXIT_TERMINATED = 143
"""Exit code after SIGTERM (128 + SIGTERM)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the running command cleans up as it does for Ctrl-C."""


def one_line(message: object) -> str:
    """``message`` on one line: runs of whitespace (newlines included) become one space."""
    return " ".join(str(message).split())


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` (one line) on stderr and return the exit-2 exception to raise."""
    print(f"error: {one_line(message)}", file=sys.stderr)
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


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show each distinct Python warning once, as one ``warning: ...`` line on stderr."""
    seen: set[str] = set()

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = one_line(message)
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (only on the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def usage_error_line(exc: typer.TyperException) -> str:
    """A usage error (unknown option, bad value...) as one ``error:`` line with the help hint."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"error: {one_line(exc.format_message())}{hint}"


class FullHelpGroup(TyperGroup):
    """A command group whose help lists each command's first sentence whole, wrapped, not cut
    with ``...`` (click cuts it to fit one line)."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Write the ``Commands:`` section."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=sys.maxsize)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class OneLineGroup(FullHelpGroup):
    """The ``gliomagen`` command group with the output rules of the module docstring."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command with one-line warnings; a GliomagenError (also from a command without
        :func:`user_errors`), Ctrl-C or SIGTERM end it with one line."""
        with one_line_warnings():
            try:
                return super().invoke(ctx)
            except GliomagenError as exc:
                raise fail(str(exc)) from None
            except KeyboardInterrupt as exc:
                print("error: interrupted", file=sys.stderr)
                code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
                raise typer.Exit(code) from None

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the group; usage errors are printed as one line instead of a wrapped panel."""
        with sigterm_as_interrupt():
            try:
                rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except typer.TyperException as exc:
                if not standalone_mode:
                    raise
                if type(exc).__name__ != "NoArgsIsHelpError":  # the help was printed already
                    print(usage_error_line(exc), file=sys.stderr)
                sys.exit(exc.exit_code)
            except typer.Abort:
                if not standalone_mode:
                    raise
                print("error: aborted", file=sys.stderr)
                sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


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
