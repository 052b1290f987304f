"""``gliomagen utility``: bad input is one line on stderr and exit code 2; a tiny run works."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch


def _run(*args: str | Path) -> Any:
    """Invoke ``gliomagen utility ARGS`` in this process (imports are paid once per session)."""
    from typer.testing import CliRunner

    from gliomagen.cli import app

    r = CliRunner().invoke(app, ["utility", *map(str, args)])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)


def test_subprocess_exit_code_is_2(tiny_real: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "gliomagen",
        "utility",
        "--real",
        str(tiny_real),
        "--cohort",
        "MEN",
        "--arms",
        "real",
        "--out",
        str(tmp_path / "o"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: --cohort MEN: not in {tiny_real} (cohorts: GLI, SSA)"
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cohort", "MEN"], "--cohort MEN: not in"),
        (["--cohort", "GLI", "--heldout", "test"], "--cohort GLI: no test cases"),
        (["--seeds", "0,x"], "--seeds '0,x': expected comma-separated integers"),
        (["--arms", "real,bogus"], "--arms: unknown arm 'bogus'"),
        (["--mix-ratio", "1.5"], "--mix-ratio 1.5: must lie strictly between 0 and 1"),
        (["--network", "vnet"], "--network 'vnet'"),
        (["--steps", "0"], "--steps 0: must be at least 1"),
        (["--large-cohort", "PED"], "--large-cohort PED"),
        (["--heldout", "val+test"], "--heldout val+test: the val split chooses each arm's checkpoint"),
        (["--val-every", "-1"], "--val-every -1: must be at least 0"),
        (["--jobs", "0"], "--jobs 0: must be at least 1"),
        (["--threads", "0"], "--threads 0: must be at least 1"),
        (["--synthetic-multiple", "0"], "--synthetic-multiple [0]: give whole numbers >= 1"),
        (["--synthetic-multiple", "9"], "--synthetic: 9 x 4 = 36 cases with cohort=SSA, grade=HGG needed"),
        (["--arms", "real+stand-in"], "--arms real+stand-in: needs a stand-in cohort"),
        (["--outputs", "probs"], "--outputs 'probs': choose regions or labels"),
        (["--real-cases", "/nonexistent/ids.txt"], "--real-cases /nonexistent/ids.txt: no such file"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    tiny_real: Path, tiny_synthetic: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    r = _run("--real", tiny_real, "--synthetic", tiny_synthetic, "--out", tmp_path / "o", *extra)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert not (tmp_path / "o" / "utility.json").exists()


def test_missing_inputs_exit_2(tiny_real: Path, tmp_path: Path) -> None:
    r = _run("--real", tmp_path / "nostore", "--synthetic", tmp_path, "--out", tmp_path / "o")
    assert r.returncode == 2 and "--real" in r.stderr and "nostore" in r.stderr
    r = _run("--real", tiny_real, "--synthetic", tmp_path / "nosyn", "--out", tmp_path / "o")
    assert r.returncode == 2 and "--synthetic" in r.stderr and "nosyn" in r.stderr
    r = _run("--real", tiny_real, "--out", tmp_path / "o")  # synthetic arms need --synthetic
    assert r.returncode == 2 and "--synthetic" in r.stderr
    r = _run("--real", tmp_path, "--arms", "real", "--out", tmp_path / "o")  # not a store
    assert r.returncode == 2 and "not a gliomagen store" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_exits_2(tiny_real: Path, tmp_path: Path) -> None:
    r = _run("--real", tiny_real, "--arms", "real", "--device", "cuda", "--out", tmp_path / "o")
    assert r.returncode == 2 and "no CUDA GPU is available here" in r.stderr


def test_a_tiny_run_prints_the_table_and_writes_the_report(tiny_real: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    ids = tmp_path / "ids.csv"
    ids.write_text("case_id,note\nSSA-002,x\nSSA-000,y\n")
    r = _run(
        "--real", tiny_real, "--arms", "real,large-then-real", "--seeds", "0", "--steps", "2",
        "--val-every", "1", "--pretrain-steps", "3", "--network", "unet", "--init-filters", "4",
        "--real-cases", ids, "--out", out,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "large-then-real" in r.stdout and "baseline" in r.stdout and "[voxel]" in r.stdout
    rep = json.loads((out / "utility.json").read_text())
    assert rep["config"]["arms"] == ["real", "large-then-real"] and rep["config"]["steps"] == 2
    assert rep["cases"]["real_train"] == ["SSA-002", "SSA-000"] and rep["cases"]["heldout"] == ["SSA-005"]
    assert rep["arms"]["large-then-real"]["pretrain_steps"] == 3
    assert rep["arms"]["real"]["seeds"]["0"]["curve"]["step"] == [0, 1, 2]
    assert (out / "index.html").is_file() and (out / "utility.png").is_file()


def test_help_names_the_new_options() -> None:
    from typer.testing import CliRunner

    from gliomagen.cli import app

    text = " ".join(CliRunner().invoke(app, ["utility", "--help"], terminal_width=200).stdout.split())
    for opt in ("--val-every", "--pretrain-steps", "--synthetic-multiple", "--real-cases", "--jobs",
                "--threads", "--outputs", "large-then-real"):  # fmt: skip
        assert opt in text
