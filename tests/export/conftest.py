"""Fixtures of the export tests (helpers in ``export_fixtures``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from export_fixtures import brats2021_cohort, generate_cohort


@pytest.fixture
def two_cohorts(tmp_path: Path) -> tuple[Path, Path]:
    """Two ``gliomagen generate``-layout cohorts of two cases each, ids from two checkpoints."""
    return (
        generate_cohort(tmp_path / "cohort-a", "SYN-1a2b3c4d", [0, 1]),
        generate_cohort(tmp_path / "cohort-b", "SYN-99887766", [0, 7]),
    )


@pytest.fixture
def brats2021(tmp_path: Path) -> Path:
    """Two BraTS 2021-style cases, uncompressed ``.nii``, masks with labels {0, 1, 2, 4}."""
    return brats2021_cohort(tmp_path / "brats2021", ["BraTS2021_00001", "BraTS2021_00002"], ext=".nii")
