"""``gliomagen phantoms``: the command writes a cohort; bad options give one line and exit 2."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gliomagen.cli import app

runner = CliRunner()


def test_phantoms_command_writes_a_cohort(tmp_path: Path) -> None:
    out = tmp_path / "ph"
    result = runner.invoke(
        app,
        [
            "phantoms",
            "--out",
            str(out),
            "--cohorts",
            "GLI=2,SSA=1",
            "--seed",
            "4",
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 3 phantom cases" in result.stdout
    with open(out / "clinical.csv", newline="") as f:
        ids = [r["case_id"] for r in csv.DictReader(f)]
    assert ids == ["BraTS-GLI-00000-000", "BraTS-GLI-00001-000", "BraTS-SSA-00000-000"]
    assert all(len(list((out / i).glob("*.nii.gz"))) == 5 for i in ids)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cohorts", "GLI=ten"], "--cohorts 'GLI=ten'"),
        (["--cohorts", "PED=3"], "unknown cohort 'PED'"),
        (["--cohorts", "GLI=1", "--resolution", "3"], "--resolution 3: must be 1 or 2"),
        (["--cohorts", "GLI=1", "--workers", "0"], "--workers 0"),
        (["--cohorts", "GLI=1", "--seed", "-2"], "--seed -2"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["phantoms", "--out", str(tmp_path / "ph"), *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "ph").exists()


def test_unwritable_out_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["phantoms", "--out", str(blocker / "ph"), "--cohorts", "GLI=1"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--out {blocker / 'ph'}: cannot write there" in lines[0], (
        result.stderr
    )
