"""Every command that reads or writes a store takes it as --store (beside a positional STORE)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gliomagen.cli import app


def _help(*cmd: str) -> str:
    res = CliRunner().invoke(app, [*cmd, "--help"], terminal_width=200)
    assert res.exit_code == 0, res.output
    return res.output


def test_store_option_is_everywhere() -> None:
    for cmd in (("prepare",), ("inspect",), ("train",), ("utility",), ("evaluate",)):
        assert "--store" in _help(*cmd), cmd


def test_positional_and_option_give_the_same_inspection(tmp_path: Path) -> None:
    missing = tmp_path / "nostore"
    a = CliRunner().invoke(app, ["inspect", str(missing)])
    b = CliRunner().invoke(app, ["inspect", "--store", str(missing)])
    assert a.exit_code == b.exit_code == 2 and a.output == b.output
    both = CliRunner().invoke(app, ["inspect", str(missing), "--store", str(missing)])
    assert both.exit_code == 2
    assert both.output.strip() == "error: STORE: twice; give it once, as STORE or as --store STORE"
    none = CliRunner().invoke(app, ["train", "-o", str(tmp_path / "run")])
    assert none.exit_code == 2
    assert none.output.strip() == "error: STORE: not given; give it once, as STORE or as --store STORE"
    assert not (tmp_path / "run").exists()
