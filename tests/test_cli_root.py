from __future__ import annotations

import subprocess
import sys

from gliomagen import __version__


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "gliomagen", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.strip() == f"gliomagen {__version__}"


def test_unknown_command_exits_2() -> None:
    out = subprocess.run([sys.executable, "-m", "gliomagen", "nope"], capture_output=True, text=True)
    assert out.returncode == 2
