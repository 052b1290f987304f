"""``gliomagen utility --out``: utility.json, utility.png and index.html change together or not at all."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.evaluation import utility_html

ENOSPC = os.strerror(errno.ENOSPC)
OUTPUTS = ("utility.json", "utility.png", "index.html")


def _utility(real: Path, out: Path, seed: str) -> Any:
    args = ["utility", "--real", str(real), "--arms", "real", "--seeds", seed, "--steps", "2",
            "--network", "unet", "--init-filters", "4", "--out", str(out)]  # fmt: skip
    return CliRunner().invoke(app, args)


def test_a_full_disk_changes_none_of_the_outputs(
    tiny_real: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "o"
    assert _utility(tiny_real, out, "0").exit_code == 0
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    real_write = utility_html.write_text

    def full_disk(path: Path, text: str) -> Path:
        if Path(path).name.startswith((".index.html.", "index.html")):
            raise OSError(errno.ENOSPC, ENOSPC, str(path))
        return real_write(path, text)

    monkeypatch.setattr(utility_html, "write_text", full_disk)
    result = _utility(tiny_real, out, "1")
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error")]  # after progress
    assert len(errors) == 1 and errors[0].startswith(f"error: {out / 'index.html'}: {ENOSPC}")
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
