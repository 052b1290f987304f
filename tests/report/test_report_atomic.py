"""``gliomagen report`` rewrites a report whole or not at all: on a full disk nothing changes."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from report_run_folder import write_run
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.report import html

ENOSPC = os.strerror(errno.ENOSPC)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _full_disk(monkeypatch: pytest.MonkeyPatch, writer: str, name: str) -> None:
    real_writer = getattr(html, writer)

    def full(path: Path, *args: Any) -> Any:
        if Path(path).name == name or Path(path).name.startswith(f".{name}."):  # or its temp name
            raise OSError(errno.ENOSPC, ENOSPC, str(path))
        return real_writer(path, *args)

    monkeypatch.setattr(html, writer, full)


def _error_line(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("writer", "name"), [("write_json", "metrics.json"), ("write_text", "index.html")]
)
def test_a_full_disk_while_rebuilding_changes_neither_file(
    evaluated: tuple[Path, Path, dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    writer: str,
    name: str,
) -> None:
    _, run, _ = evaluated
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    write_run(copy / "more", steps=12)  # new curves: metrics.json would change
    (copy / "more" / "metrics.jsonl").rename(copy / "phase2.jsonl")
    before = _snapshot(copy / "report")
    _full_disk(monkeypatch, writer, name)
    result = CliRunner().invoke(app, ["report", str(copy / "report"), "--run", str(copy)])
    line = _error_line(result)
    assert line.startswith(f"error: {copy / 'report' / name}: {ENOSPC}"), line
    assert _snapshot(copy / "report") == before
    assert not [p for p in (copy / "report").iterdir() if p.name.startswith(".")]


def test_a_full_disk_while_writing_a_curves_report_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "run").mkdir()
    run = write_run(tmp_path / "run")
    _full_disk(monkeypatch, "write_text", "index.html")
    line = _error_line(CliRunner().invoke(app, ["report", str(run)]))
    assert line.startswith(f"error: {run / 'report' / 'index.html'}: {ENOSPC}"), line
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl", "tensorboard"]
