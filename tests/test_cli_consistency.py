"""One CLI: the same names for the same things in every command, and help that is never cut.

Every command with an output takes ``-o/--out``, every command that prints progress ``-q/--quiet``,
worker processes are ``-j/--workers`` and case counts ``-n/--n``; a short flag parses to the same
parameter as its long name; ``--help`` at 80 columns shows every option's whole help text.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.cli._options import COUNT, OUT, QUIET, WORKERS, out_file
from gliomagen.config.schema import TrainConfig

# utility.py is rewritten on another branch; until it lands its options may lag behind.

OUTPUT_COMMANDS = ["phantoms", "prepare", "train", "generate", "interpolate", "evaluate",
                   "export nnunet", "export card", "export generator", "bench", "utility"]  # fmt: skip
PROGRESS_COMMANDS = ["phantoms", "prepare", "train", "generate", "evaluate", "export nnunet",
                     "bench", "utility"]  # fmt: skip
DEVICE_COMMANDS = ["train", "generate", "interpolate", "evaluate", "bench", "utility"]


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every leaf command's path below ``group``, e.g. ``("export", "card")``."""
    for name, cmd in getattr(group, "commands", {}).items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name)


ROOT = typer.main.get_command(app)
ALL = [" ".join(p) for p in _commands(ROOT)]


def _command(path: str) -> Any:
    cmd: Any = ROOT
    for name in path.split():
        cmd = cmd.commands[name]
    return cmd


def _param(path: str, name: str) -> Any:
    """The parameter of command ``path`` that ``name`` (an option spelling) names."""
    found = [p for p in _command(path).params if name in p.opts]
    assert found, f"gliomagen {path}: no option {name}"
    return found[0]


def test_the_inventory_is_complete() -> None:
    """A new command must be sorted into the lists above (or knowingly left out of them)."""
    assert sorted(ALL) == sorted(["phantoms", "prepare", "inspect", "train", "generate",
                                  "interpolate", "evaluate", "report", "utility", "bench",
                                  "export nnunet", "export card", "export generator"])  # fmt: skip


@pytest.mark.parametrize("path", OUTPUT_COMMANDS)
def test_every_output_is_dash_o_out(path: str) -> None:
    assert set(OUT) <= set(_param(path, "-o").opts)


@pytest.mark.parametrize("path", PROGRESS_COMMANDS)
def test_every_command_that_prints_progress_takes_quiet(path: str) -> None:
    param = _param(path, "--quiet")
    assert set(QUIET) <= set(param.opts) and param.default is False


@pytest.mark.parametrize("path", ALL)
def test_shared_names_always_come_with_their_short_flag(path: str) -> None:
    for names in (OUT, QUIET, WORKERS, COUNT):
        for param in _command(path).params:
            if names[0] in param.opts:
                assert names[1] in param.opts, f"gliomagen {path} {names[0]}: no {names[1]}"


@pytest.mark.parametrize("path", DEVICE_COMMANDS)
def test_device_defaults_to_auto(path: str) -> None:
    default = _param(path, "--device").default
    if path == "train":  # None: the configuration decides, and its default is auto
        assert default is None and TrainConfig().device == "auto"
    else:
        assert default == "auto"


def _parsed(path: str, args: list[str]) -> dict[str, Any]:
    """The parameters ``args`` parse to (click's parsing only; the command does not run)."""
    cmd = _command(path)
    with cmd.make_context(path, list(args)) as ctx:
        return dict(ctx.params)


@pytest.mark.parametrize(
    ("path", "required", "long", "short"),
    [
        ("phantoms", [], ["--out", "o", "--workers", "3", "--quiet"], ["-o", "o", "-j", "3", "-q"]),
        ("prepare", ["src"], ["--out", "o", "--workers", "2", "--quiet"], ["-o", "o", "-j", "2", "-q"]),
        ("train", ["store"], ["--run", "r", "--quiet"], ["-o", "r", "-q"]),
        ("train", ["store"], ["--run-dir", "r"], ["--out", "r"]),
        ("generate", ["--checkpoint", "c"], ["--out", "o", "--n", "5", "--quiet"], ["-o", "o", "-n", "5", "-q"]),
        ("interpolate", ["--checkpoint", "c"], ["--out", "o"], ["-o", "o"]),
        ("evaluate", ["--real", "r", "--synthetic", "s"], ["--out", "o", "--quiet"], ["-o", "o", "-q"]),
        ("export nnunet", ["c", "--dataset-id", "1", "--name", "n"], ["--out", "o", "--quiet"], ["-o", "o", "-q"]),
        ("export card", ["run"], ["--out", "o"], ["-o", "o"]),
        ("bench", [], ["--out", "o", "--quiet"], ["-o", "o", "-q"]),
    ],
)  # fmt: skip
def test_short_flags_parse_to_the_same_parameters(
    path: str, required: list[str], long: list[str], short: list[str]
) -> None:
    with_long, with_short = _parsed(path, required + long), _parsed(path, required + short)
    assert with_long == with_short
    assert with_long != _parsed(
        path, required + (["--out", "x"] if "--out" in long else ["-o", "x"])
    )


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_short_flags_reach_generate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gliomagen.generation

    seen: list[tuple[Any, ...]] = []

    def fake(checkpoint: Path, out: Path, n: int, **kw: Any) -> Path:
        seen.append((checkpoint, out, n, kw["progress"], kw["device"]))
        return tmp_path

    monkeypatch.setattr(gliomagen.generation, "generate_cohort", fake)
    for args in (["--out", "o", "--n", "3", "--quiet"], ["-o", "o", "-n", "3", "-q"]):
        assert _invoke("generate", "--checkpoint", "c.pt", *args).exit_code == 0
    assert seen == [(Path("c.pt"), Path("o"), 3, False, "auto")] * 2


def test_short_flags_reach_phantoms(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    phantoms = importlib.import_module("gliomagen.data.phantoms")
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(phantoms, "generate_cohort",
                        lambda out, sizes, **kw: seen.append((out, kw["workers"], kw["progress"])))  # fmt: skip
    for args in (["--out", "p", "--workers", "2", "--quiet"], ["-o", "p", "-j", "2", "-q"]):
        assert _invoke("phantoms", "--cohorts", "GLI=1", *args).exit_code == 0
    assert seen == [(Path("p"), 2, False)] * 2


def test_train_takes_out_and_auto_and_refuses_cuda_n(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import gliomagen.training

    seen: list[tuple[str, Path, bool]] = []

    def fake_train(cfg: Any, store: Path, run: Path, **kw: Any) -> Path:
        seen.append((cfg.train.device, run, kw["progress"]))
        return Path("")

    monkeypatch.setattr(gliomagen.training, "train", fake_train)
    store, run = tmp_path / "store", tmp_path / "run"
    store.mkdir()
    for args in (["--run", str(run), "--device", "auto", "--quiet"],
                 ["-o", str(run), "--device", "auto", "-q"], ["--out", str(run), "-q"]):  # fmt: skip
        result = _invoke("train", str(store), *args)
        assert result.exit_code == 0, result.output
    assert seen == [("auto", run, False)] * 3  # auto: the configuration's default too
    ok = _invoke("train", str(store), "-o", str(run), "--device", "cuda:1", "-q")
    assert ok.exit_code == 0, ok.output
    assert seen[-1][0] == "cuda:1"  # one GPU of several, as every other command takes it
    bad = _invoke("train", str(store), "-o", str(run), "--device", "cuda1")
    assert bad.exit_code == 2
    assert bad.stderr == "error: --device 'cuda1': expected auto, cpu, cuda or cuda:N\n"
    bad = _invoke("train", str(store), "-o", str(run), "--set", "train.device=gpu")
    assert bad.exit_code == 2
    assert "train.device" in bad.stderr and "must be auto, cpu, cuda or cuda:N" in bad.stderr


def test_out_is_a_folder_or_an_old_style_file_name(tmp_path: Path) -> None:
    (tmp_path / "old.d").mkdir()
    assert out_file(tmp_path / "cards", "MODEL_CARD.md") == tmp_path / "cards" / "MODEL_CARD.md"
    assert out_file(tmp_path / "old.d", "x.json") == tmp_path / "old.d" / "x.json"  # a folder
    assert out_file(tmp_path / "card.md", "MODEL_CARD.md") == tmp_path / "card.md"
    assert out_file(Path("."), "bench-results.json") == Path(
        "bench-results.json"
    )  # the old default


def test_card_takes_a_folder_and_checkpoint_option(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    card = importlib.import_module("gliomagen.export.card")
    written: list[tuple[Path, Path]] = []

    def fake_write(source: Path, out: Path, store: Path | None = None) -> Path:
        written.append((source, out))
        return out

    monkeypatch.setattr(card, "write_model_card", fake_write)
    folder = tmp_path / "cards"
    for args in (
        ["run", "-o", str(folder)],
        ["--checkpoint", "run", "--out", str(folder / "c.md")],
    ):
        assert _invoke("export", "card", *args).exit_code == 0
    assert written == [(Path("run"), folder / "MODEL_CARD.md"), (Path("run"), folder / "c.md")]
    for args in ([], ["run", "--checkpoint", "run"]):
        bad = _invoke("export", "card", *args)
        assert bad.exit_code == 2 and bad.stderr.startswith(
            "error: export card: give the model once"
        )


def _squeezed(text: str) -> str:
    """``text`` without whitespace: wrapping (also after a hyphen) changes nothing."""
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("path", ["", "export", *ALL])
def test_help_at_80_columns_is_whole(path: str) -> None:
    result = CliRunner().invoke(app, [*path.split(), "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "…" not in text and "│" not in text and "╭" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    cut = [ln for ln in text.splitlines() if ln.endswith("...") and not ln.startswith("Usage:")]
    assert not cut, text
    cmd = _command(path) if path else ROOT
    helps = [p.help for p in cmd.params if getattr(p, "help", None)]
    helps += [
        c.get_short_help_str(limit=sys.maxsize) for c in getattr(cmd, "commands", {}).values()
    ]
    helps += [cmd.help.strip()] if cmd.help else []
    whole = _squeezed(text)
    for help_text in helps:
        assert _squeezed(help_text) in whole, f"gliomagen {path} --help cuts: {help_text!r}"
