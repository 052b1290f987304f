"""A small phantom cohort at 2 mm, generated once per test session."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from gliomagen.data.phantoms import generate_cohort


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``GLI=6, SSA=6`` at 2 mm, seed 0 (both grades occur in both cohorts)."""
    out = tmp_path_factory.mktemp("phantoms") / "cohort"
    generate_cohort(out, {"GLI": 6, "SSA": 6}, resolution=2, seed=0, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def clinical(cohort_dir: Path) -> list[dict[str, str]]:
    """Rows of the cohort's clinical.csv."""
    with open(cohort_dir / "clinical.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    grades = {(r["cohort"], r["grade"]) for r in rows}
    assert grades == {("GLI", "HGG"), ("GLI", "LGG"), ("SSA", "HGG"), ("SSA", "LGG")}, grades
    return rows
