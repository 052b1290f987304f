"""Options of ``generate`` and ``interpolate``: truncation range, default device, help texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gliomagen.cli import app


def _run(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, list(args))


def test_negative_truncation_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    for command in (["generate", "--n", "1"], ["interpolate", "--seeds", "1,2"]):
        out = tmp_path / command[0]
        result = _run(*command, "--checkpoint", str(checkpoint), "--out", str(out),
                      "--truncation", "-0.5")  # fmt: skip
        assert result.exit_code == 2
        assert result.stderr.splitlines() == [
            "error: --truncation -0.5: must be >= 0 (0 = the condition's mean case, 1 = no truncation)"
        ]
        assert not out.exists()


def test_truncation_above_one_warns_once_and_goes_on(checkpoint: Path, tmp_path: Path) -> None:
    result = _run("generate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "syn"),
                  "--n", "2", "--truncation", "1.5", "--quiet", "--space", "native")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: --truncation 1.5 is above 1: it extrapolates away from the condition's mean w, "
        "so cases may look less realistic"
    ]
    assert (tmp_path / "syn" / "manifest.json").is_file()


def test_device_defaults_to_auto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib

    import gliomagen.generation

    walk = importlib.import_module("gliomagen.generation.interpolate")  # the module, not the function
    seen: dict[str, Any] = {}

    def fake_generate(*args: Any, **kwargs: Any) -> Path:
        seen["generate"] = kwargs["device"]
        return tmp_path

    def fake_interpolate(*args: Any, **kwargs: Any) -> dict[str, Path]:
        seen["interpolate"] = kwargs["device"]
        return {"png": tmp_path / "a.png", "gif": tmp_path / "a.gif"}

    monkeypatch.setattr(gliomagen.generation, "generate_cohort", fake_generate)
    monkeypatch.setattr(walk, "interpolate", fake_interpolate)
    assert _run("generate", "--checkpoint", "c.pt", "--out", "o", "--n", "1").exit_code == 0
    assert _run("interpolate", "--checkpoint", "c.pt", "--out", "o", "--seeds", "1,2").exit_code == 0
    assert seen == {"generate": "auto", "interpolate": "auto"}


def _help(command: str) -> str:
    text = _run(command, "--help").stdout
    return " ".join(text.replace("│", " ").split())


def test_help_says_what_the_options_take() -> None:
    for command in ("generate", "interpolate"):
        text = _help(command)
        assert "or a RUN folder (its newest checkpoint)" in text
        assert "auto (default: CUDA when a GPU is present, else the CPU)" in text
        assert "[default: auto]" in text
    text = _help("generate")
    assert "240x240x155 BraTS/SRI24 grid" in text and "1 mm" in text
