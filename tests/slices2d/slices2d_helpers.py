"""Helpers of the 2D slice-mode tests (imported by the tests and their conftest)."""

from __future__ import annotations

from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.config import Config, resolve_config

SIDE = 16
TINY_2D = [
    "model.z_dim=8", "model.w_dim=16", "model.mapping_layers=2", "model.cond_embed_dim=8",
    "model.g_channels=4", "model.g_max_channels=8", "model.d_channels=4", "model.d_max_channels=8",
    "train.batch_size=4", "train.threads=1", "train.w_avg_samples=16", "train.val_every=0",
    "train.checkpoint_every=1000", "train.sample_every=1000", "train.log_every=1",
]  # fmt: skip
"""Overrides that make ``small-data-2d`` a ~20k-parameter model for 16x16 tests."""


def run_cli(*args: object) -> tuple[int, str, str]:
    """``gliomagen ARGS`` in-process: ``(exit code, stdout, stderr)``."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def tiny_2d(*extra: str) -> Config:
    """``small-data-2d`` with :data:`TINY_2D` and ``extra`` overrides."""
    return resolve_config("small-data-2d", overrides=[*TINY_2D, *extra])
