"""Small schemas for the network tests."""

from __future__ import annotations

import pytest

from gliomagen.data.conditions import ConditionField, ConditionSchema


@pytest.fixture
def schema() -> ConditionSchema:
    """Two categorical conditions (grade, cohort) and one continuous (age)."""
    return ConditionSchema(
        [
            ConditionField("grade", "categorical", categories=["HGG", "LGG"]),
            ConditionField("cohort", "categorical", categories=["GLI", "SSA", "PED"]),
            ConditionField("age", "continuous", mean=50.0, std=10.0),
        ]
    )
