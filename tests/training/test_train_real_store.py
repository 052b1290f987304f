"""End to end on a real store: phantoms -> prepare -> `gliomagen train` -> load_generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.training import load_checkpoint, load_generator

TINY = ["model.g_channels=4", "model.g_max_channels=8", "model.d_channels=4", "model.d_max_channels=8",
        "model.z_dim=8", "model.w_dim=16", "train.threads=1", "train.w_avg_samples=16"]  # fmt: skip


@pytest.mark.slow
def test_cli_trains_on_a_prepared_phantom_store(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        app, ["phantoms", "--out", str(tmp_path / "ph"), "--cohorts", "GLI=4", "--seed", "3"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["prepare", str(tmp_path / "ph"), "--out", str(tmp_path / "store"), "--size", "32",
                              "--labels", str(tmp_path / "ph" / "clinical.csv"), "--qc", "0"])  # fmt: skip
    assert res.exit_code == 0, res.output
    store, run = str(tmp_path / "store"), str(tmp_path / "run")
    sets = [a for s in TINY for a in ("--set", s)]

    bad = runner.invoke(
        app,
        [
            "train",
            store,
            "--run",
            run,
            "--preset",
            "demo-cpu",
            "--set",
            "data.conditions=[tumour_grade]",
        ],
    )
    assert (
        bad.exit_code == 2 and "data.conditions: 'tumour_grade' is not a condition of" in bad.output
    )

    res = runner.invoke(app, ["train", store, "--run", run, "--preset", "demo-cpu", "--quiet", "--set", "train.steps=2",
                              "--set", "data.split=all", *sets])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "checkpoint:" in res.output
    again = runner.invoke(app, ["train", store, "--run", run, "--preset", "demo-cpu", *sets])
    assert again.exit_code == 2 and "already holds checkpoints" in again.output
    # --resume without --preset takes the run's own config.yaml; more steps via --set
    res = runner.invoke(
        app, ["train", store, "--run", run, "--resume", "--quiet", "--set", "train.steps=3"]
    )
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 3 and ckpt["store_meta"]["size"] == [32, 32, 32]
    assert ckpt["store_meta"]["template_geometry"] and len(ckpt["store_meta"]["spacing_mm"]) == 3
    G, schema, config, meta = load_generator(run)
    assert "grade" in schema.names and config.preset == "demo-cpu"
    cat = torch.tensor(
        [[f.categories.index("HGG") if f.name == "grade" else 0 for f in schema.categorical]]
    )
    with torch.no_grad():
        img, logits = G(torch.randn(1, G.z_dim), cat, torch.zeros(1, len(schema.continuous)))
    assert img.shape == (1, 4, 32, 32, 32) and bool(torch.isfinite(logits).all())
