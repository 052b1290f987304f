"""Shared fixtures: tiny sizes, fixed seeds, the optional real BraTS cases."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


@pytest.fixture
def real_data() -> Path:
    """``../shared/data/real`` beside the repo; the test is skipped where it is absent."""
    if not (REAL_DATA / "brats2021").is_dir():
        pytest.skip("real BraTS cases (../shared/data/real) not available")
    return REAL_DATA


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Every test starts from torch seed 0, whatever ran before it."""
    import torch

    torch.manual_seed(0)
