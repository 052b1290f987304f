from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gliomagen import __version__
from gliomagen.cli import app
from gliomagen.cli._common import fail

LONG = "/tmp/" + "/".join(f"a-rather-long-folder-name-number-{i}" for i in range(6)) + "/ckpt.pt"


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "gliomagen", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"gliomagen {__version__}"


def test_unknown_command_exits_2() -> None:
    out = subprocess.run([sys.executable, "-m", "gliomagen", "nope"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.splitlines() == ["error: No such command 'nope'. (see 'gliomagen --help')"]


@pytest.mark.parametrize(
    ("args", "whole"),
    [
        (["generate", "--checkpoint", LONG, "--out", "x", f"--no-such-option-{LONG}"],
         f"No such option: --no-such-option-{LONG}"),
        (["generate", "--checkpoint", LONG, "--out", "x", "--n", f"many-{LONG}"],
         "Invalid value for '--n'"),
        (["generate", "--checkpoint", LONG, "--out", "x", "--n", "1"],
         f"--checkpoint {LONG}: file not found"),
    ],
)  # fmt: skip
def test_long_errors_are_one_whole_line(args: list[str], whole: str) -> None:
    """A usage error or a GliomagenError: one ``error:`` line, never wrapped, boxed or cut."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and whole in lines[0], result.stderr


def test_fail_keeps_the_whole_message_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    message = f"{LONG}: a problem\nexplained over\n   several lines " + "word " * 60
    exit_ = fail(message)
    assert exit_.exit_code == 2
    assert capsys.readouterr().err == "error: " + " ".join(message.split()) + "\n"


def test_warnings_are_one_line_each_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warnings raised while a command runs (here: torch's own, and multi-line ones) are shown
    once each, on one ``warning:`` line."""
    import torch

    import gliomagen.generation

    def noisy_generate(*args: object, **kwargs: object) -> Path:
        for _ in range(3):  # a real torch warning, three times
            torch.tensor(torch.tensor([1.0]))
        for _ in range(2):
            warnings.warn("first line\n    second line of the same warning", UserWarning, stacklevel=1)
        warnings.warn("a deprecation", FutureWarning, stacklevel=1)
        return tmp_path

    monkeypatch.setattr(gliomagen.generation, "generate_cohort", noisy_generate)
    args = ["generate", "--checkpoint", "x.pt", "--out", str(tmp_path / "o"), "--n", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote 1 cases")
    lines = result.stderr.splitlines()
    assert len(lines) == 3 and all(ln.startswith("warning: ") for ln in lines), result.stderr
    assert "warning: first line second line of the same warning" in lines
    assert "warning: a deprecation" in lines
    assert any("copy construct from a tensor" in ln for ln in lines)


SLEEPY = """
import sys, time
from gliomagen.cli import app, main

@app.command("sleepy")
def sleepy() -> None:
    print("ready", flush=True)
    time.sleep(60)
    print("not interrupted", flush=True)

main(sys.argv[1:])
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_command_says_so_in_one_line(sig: signal.Signals, code: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SLEEPY, "sleepy"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert err.splitlines() == ["error: interrupted"], err
