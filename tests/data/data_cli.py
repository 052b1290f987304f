"""The CLI helpers the data tests share: run a command in-process, check a one-line error."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gliomagen.cli import app


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def one_error(code: int, stderr: str, *parts: str) -> None:
    """Exit 2 with exactly one ``error:`` line holding every part."""
    assert code == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    for part in parts:
        assert part in stderr, (part, stderr)
