"""Nothing lost, nothing half-written: a killed, failed or full-disk ``generate`` leaves no cohort
behind at ``--out``, and the next run succeeds and writes what an uninterrupted run writes."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import pytest
from typer.testing import CliRunner

from gliomagen.cli import app

SLOW_DRIVER = """
import sys, time
import nibabel as nib
real_save = nib.save
def slow_save(*args, **kwargs):
    real_save(*args, **kwargs)
    time.sleep(float(sys.argv[1]))
nib.save = slow_save
from gliomagen.cli import main
main(sys.argv[2:])
"""
"""``python -c SLOW_DRIVER PAUSE gliomagen-args...``: the CLI with a pause after every NIfTI file."""


def slow_generate(pause: float, *args: object) -> subprocess.Popen[str]:
    """Start ``gliomagen ARGS`` in a subprocess that pauses ``pause`` s after each written file."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", SLOW_DRIVER, str(pause), *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_files(root: Path, count: int, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Wait until ``count`` NIfTI files exist anywhere under ``root`` (hidden folders included)."""
    end = time.monotonic() + timeout
    while len(list(root.rglob("*.nii.gz"))) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "generate wrote no files in time"
        time.sleep(0.02)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (the manifest without its command line)."""
    import json

    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "manifest.json":
                manifest = json.loads(data)
                manifest.pop("command_line")
                data = json.dumps(manifest, sort_keys=True).encode()
            out[p.relative_to(folder).as_posix()] = data
    return out


def _generate(checkpoint: Path, out: Path, *extra: str):  # noqa: ANN202
    args = ["generate", "--checkpoint", str(checkpoint), "--out", str(out), "--quiet", *extra]
    return CliRunner().invoke(app, args)


def test_killed_generate_leaves_nothing_and_a_rerun_matches(
    checkpoint: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    out = work / "syn"
    proc = slow_generate(0.3, "generate", "--checkpoint", checkpoint, "--n", 3, "--out", out, "--quiet")
    try:
        wait_for_files(work, 6, proc)  # the first case whole, the second begun
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert not out.exists() or not any(out.iterdir())  # no half cohort at --out
    staged = list(work.glob(".syn.*.tmp"))
    assert len(staged) == 1  # the killed run's hidden folder, nothing else

    rerun = _generate(checkpoint, out, "--n", "3")
    assert rerun.exit_code == 0, rerun.output
    assert not list(work.glob(".syn.*.tmp"))  # the killed run's folder was ours: removed
    reference = _generate(checkpoint, tmp_path / "reference", "--n", "3")
    assert reference.exit_code == 0, reference.output
    assert tree(out) == tree(tmp_path / "reference")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_generate_cleans_up_and_says_so(
    checkpoint: Path, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = slow_generate(0.3, "generate", "--checkpoint", checkpoint, "--n", 3, "--out", work / "syn", "--quiet")
    try:
        wait_for_files(work, 6, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert err.splitlines() == ["error: interrupted"], err
    assert list(work.iterdir()) == []  # the temporary cohort was removed


def test_a_foreign_hidden_folder_is_left_alone(checkpoint: Path, tmp_path: Path) -> None:
    foreign = tmp_path / ".syn.abc.tmp"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    assert _generate(checkpoint, tmp_path / "syn", "--n", "1").exit_code == 0
    assert (foreign / "keep.txt").read_text() == "not ours"


def test_an_existing_empty_out_is_used_and_a_non_empty_one_refused(
    checkpoint: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _generate(checkpoint, empty, "--n", "1")
    assert result.exit_code == 0, result.output
    assert (empty / "manifest.json").is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    result = _generate(checkpoint, other, "--n", "1")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --out {other}: is not empty; choose an empty or new folder"
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_full_disk_is_one_line_exit_2_and_nothing_left(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gliomagen.generation.writer as writer

    calls = {"n": 0}
    real_save = nib.save

    def full_disk(img, path):  # noqa: ANN001, ANN202  # the 7th file: case 2 half written
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(img, path)

    monkeypatch.setattr(writer.nib, "save", full_disk)
    work = tmp_path / "work"
    work.mkdir()
    result = _generate(checkpoint, work / "syn", "--n", "3")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {work / 'syn'}"), result.stderr
    assert "No space left on device" in lines[0]
    assert list(work.iterdir()) == []  # no --out (not even an empty one), no temporary folder


@pytest.fixture
def tiny_disk(tmpfs: Callable[[str], Path]) -> Path:
    """A 300k tmpfs (a real full disk; skipped where mounting is not allowed)."""
    return tmpfs("300k")


def test_a_real_full_disk_leaves_nothing(checkpoint: Path, tiny_disk: Path) -> None:
    result = _generate(checkpoint, tiny_disk / "syn", "--n", "4", "--format", "float32")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "No space left on device" in lines[0] and str(tiny_disk / "syn") in lines[0]
    assert list(tiny_disk.iterdir()) == []
