"""Training curves from TensorBoard event files and JSON-lines metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_run_folder import write_run

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.curves import MAX_POINTS, read_curves


def test_reads_tensorboard_and_jsonl(tmp_path: Path) -> None:
    run = write_run(tmp_path, steps=30)
    curves = read_curves(run)
    assert curves["run"] == str(tmp_path.resolve())
    series = curves["series"]
    assert set(series) == {"loss/G", "loss/D", "metrics/fd_probe"}
    assert series["loss/G"]["step"] == [float(s) for s in range(30)]
    assert series["loss/G"]["value"][4] == pytest.approx(0.2)
    assert series["metrics/fd_probe"] == {"step": [0.0, 10.0, 20.0], "value": [100.0, 90.0, 80.0]}


def test_long_series_are_thinned_keeping_the_ends(tmp_path: Path) -> None:
    with open(tmp_path / "log.jsonl", "w") as fh:
        for step in range(2000, 0, -1):  # out of order on purpose
            fh.write(json.dumps({"kimg": step, "loss": float(step)}) + "\n")
    s = read_curves(tmp_path)["series"]["log/loss"]
    assert len(s["step"]) == MAX_POINTS
    assert s["step"][0] == 1.0 and s["step"][-1] == 2000.0 and s["step"] == sorted(s["step"])
    assert s["value"] == s["step"]


def test_missing_run_folder(tmp_path: Path) -> None:
    with pytest.raises(GliomagenError, match="not a folder"):
        read_curves(tmp_path / "nope")
    assert read_curves(tmp_path)["series"] == {}
