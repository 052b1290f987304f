"""``evaluate --out`` is written whole or not at all: a full disk, a kill or a foreign folder never
leaves half a report, and an earlier report is replaced whole.

The CLI runs on in-memory sets (``resolve_sets`` is stubbed) so that each run takes seconds.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

import gliomagen
from gliomagen.cli import app
from gliomagen.evaluation import montages, pipeline
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.probe import ProbeOptions
from gliomagen.report import html
from gliomagen.report.html import evaluate_report

FAST = ["--probe-steps", "20", "--probe-size", "16", "--bootstrap", "4", "--pairs", "4", "--quiet"]
TINY = ProbeOptions(size=16, width=4, steps=20)
ENOSPC = os.strerror(errno.ENOSPC)


def _sets(volumes: ModuleType) -> tuple[CaseSet, CaseSet, CaseSet]:
    def make(n: int, seed: int, prefix: str) -> CaseSet:
        imgs, masks, ids, labels = volumes.make_cohort(n, size=16, seed=seed, prefix=prefix)
        return CaseSet.from_arrays(
            imgs, masks, case_ids=ids, labels=labels, name=prefix, spacing_mm=(10.0,) * 3
        )

    return make(6, 2, "REAL"), make(8, 1, "TRAIN"), make(6, 3, "SYN")


@pytest.fixture
def stub_sets(volumes: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--real``/``--train``/``--synthetic`` of the CLI become small in-memory sets."""
    sets = _sets(volumes)
    monkeypatch.setattr(pipeline, "resolve_sets", lambda *a, **k: sets)


def _evaluate(out: Path, *extra: str) -> Any:
    args = ["evaluate", "--real", "R", "--synthetic", "S", "--out", str(out), *FAST, *extra]
    return CliRunner().invoke(app, args)


def _error_line(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _report_files(folder: Path) -> set[str]:
    names = set(_snapshot(folder))
    assert {"metrics.json", "index.html"} <= names
    assert all(
        n.startswith("figures/") and n.endswith(".png")
        for n in names - {"metrics.json", "index.html"}
    )
    return names


@pytest.fixture(scope="module")
def previous(volumes: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished report (seed 0), to copy where a test needs an earlier report at ``--out``."""
    out = tmp_path_factory.mktemp("previous") / "report"
    real, train, syn = _sets(volumes)
    evaluate_report(
        real, syn, out, train=train, probe_options=TINY, n_boot=4, n_pairs=4, n_montage=1
    )
    return out


def _copy_previous(previous: Path, out: Path) -> dict[str, bytes]:
    for rel, data in _snapshot(previous).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    return _snapshot(out)


def test_an_out_that_is_not_a_report_is_refused_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    line = _error_line(_evaluate(out))
    assert f"--out {out}: is not empty and not a gliomagen report" in line
    assert _snapshot(out) == {"notes.txt": b"keep me"}


def test_a_previous_report_is_replaced_whole(
    stub_sets: None, previous: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    _copy_previous(previous, out)
    (out / "figures" / "montage-gone-real.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # not made again
    result = _evaluate(out, "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "figures/montage-gone-real.png" not in _report_files(out)
    assert json.loads((out / "metrics.json").read_text())["settings"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporary folder left


@pytest.mark.parametrize(
    ("module", "writer", "file"),
    [
        (pipeline, "write_json", "metrics.json"),
        (html, "write_text", "index.html"),
        (montages, "write_bytes", "figures/montage-all-real.png"),
    ],
)
def test_a_full_disk_is_one_line_and_leaves_the_old_report(
    stub_sets: None,
    previous: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    writer: str,
    file: str,
) -> None:
    real_writer = getattr(module, writer)

    def full_disk(path: Path, *args: Any) -> Any:
        if Path(path).name == Path(file).name:
            raise OSError(errno.ENOSPC, ENOSPC, str(path))
        return real_writer(path, *args)

    monkeypatch.setattr(module, writer, full_disk)
    for out, before in ((tmp_path / "new", None), (tmp_path / "old", "previous")):
        if before:
            out.mkdir()
            before_files = _copy_previous(previous, out)
        line = _error_line(_evaluate(out, "--seed", "1"))
        assert line.startswith(f"error: {out / file}: {ENOSPC}"), line
        if before:
            assert _snapshot(out) == before_files  # the old report, untouched
        else:
            assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # no temporary folder left


@pytest.fixture
def tiny_disk(tmpfs: Callable[[str], Path]) -> Path:
    """A 300k tmpfs (a real full disk; skipped where mounting is not allowed)."""
    return tmpfs("300k")


def test_a_real_full_disk_leaves_nothing(stub_sets: None, tiny_disk: Path) -> None:
    line = _error_line(_evaluate(tiny_disk / "report"))
    assert ENOSPC in line and f"--out {tiny_disk / 'report'} was left as it was" in line
    assert list(tiny_disk.iterdir()) == []


def _cache_warnings(result: Any) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("warning: evaluation cache")]


def test_an_unwritable_cache_warns_once_and_the_report_is_written(
    stub_sets: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("GLIOMAGEN_CACHE", str(blocker / "cache"))
    result = _evaluate(tmp_path / "report", "--seed", "2")  # a new probe and a new reference
    assert result.exit_code == 0, result.output
    assert len(_cache_warnings(result)) == 1, result.stderr
    _report_files(tmp_path / "report")


def test_a_full_cache_disk_warns_once_and_the_report_is_written(
    stub_sets: None, tiny_disk: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tiny_disk / "filler", "wb", buffering=0) as fh:  # fill the disk
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    monkeypatch.setenv("GLIOMAGEN_CACHE", str(tiny_disk / "cache"))
    result = _evaluate(tmp_path / "report", "--seed", "3")
    assert result.exit_code == 0, result.output
    warnings = _cache_warnings(result)
    assert len(warnings) == 1 and ENOSPC in warnings[0], result.stderr
    _report_files(tmp_path / "report")
    assert not [p for p in (tiny_disk / "cache").rglob("*") if p.is_file()]


KILLED_RUN = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import synthetic_volumes
from test_eval_report_folder import _sets, TINY
from gliomagen.evaluation import pipeline
from gliomagen.report import html

out, ready, where = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
module = {"measure": pipeline, "render": html}[where]
def hang(*args, **kwargs):
    ready.write_text("now")
    time.sleep(600)
setattr(module, where, hang)
real, train, syn = _sets(synthetic_volumes)
html.evaluate_report(real, syn, out, train=train, probe_options=TINY, n_boot=4, n_pairs=4,
                     n_montage=1, seed=5)
"""


@pytest.mark.parametrize("where", ["measure", "render"])
def test_a_killed_evaluate_leaves_the_old_report(
    volumes: ModuleType, previous: Path, tmp_path: Path, where: str
) -> None:
    """SIGKILL while the metrics are measured, and while the page of the new report is rendered."""
    out = tmp_path / "report"
    out.mkdir()
    before = _copy_previous(previous, out)
    ready = tmp_path / "ready"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(gliomagen.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    ))  # fmt: skip
    here = Path(__file__).parent
    proc = subprocess.Popen(
        [sys.executable, str(script), str(here), str(out), str(ready), where], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the evaluation never reached the kill point"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _snapshot(out) == before  # the old report, untouched
    hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".report.")]
    assert len(hidden) == (1 if where == "render" else 0)
    # the next run removes the killed run's temporary folder and replaces the report
    real, train, syn = _sets(volumes)
    evaluate_report(real, syn, out, train=train, probe_options=TINY, n_boot=4, n_pairs=4,
                    n_montage=1, seed=5)  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.py", "ready", "report"]
    assert json.loads((out / "metrics.json").read_text())["settings"]["seed"] == 5
