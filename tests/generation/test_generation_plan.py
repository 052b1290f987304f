from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from generation_fixtures import tiny_schema

from gliomagen.errors import GliomagenError
from gliomagen.generation.plan import allocate, parse_condition_args, plan_conditions


def test_allocation_is_exact_and_deterministic() -> None:
    assert allocate([0.7, 0.3], 100) == [70, 30]
    assert allocate([1, 1, 1], 10) == [4, 3, 3]  # ties go to the earlier row
    assert allocate([2, 1], 1) == [1, 0]
    assert sum(allocate([0.15, 0.5, 0.35], 7)) == 7
    with pytest.raises(GliomagenError, match="add up to 0"):
        allocate([0, 0], 3)


def test_one_dict_applies_to_every_case_and_unset_fields_are_unknown() -> None:
    plan = plan_conditions(tiny_schema(), 3, {"grade": "HGG", "age": "61"})
    assert plan == [{"cohort": None, "grade": "HGG", "age": 61.0}] * 3


def test_csv_mixture_gives_the_requested_counts(tmp_path: Path) -> None:
    csv = tmp_path / "mix.csv"
    csv.write_text("grade,cohort,weight\nHGG,GLI,0.6\nLGG,GLI,0.3\nHGG,SSA,0.1\n")
    plan = plan_conditions(tiny_schema(), 20, conditions_csv=csv)
    counts = Counter((p["grade"], p["cohort"]) for p in plan)
    assert counts == {("HGG", "GLI"): 12, ("LGG", "GLI"): 6, ("HGG", "SSA"): 2}
    assert [p["grade"] for p in plan[:12]] == ["HGG"] * 12  # cases follow the row order


def test_csv_without_weights_gives_one_case_per_row(tmp_path: Path) -> None:
    csv = tmp_path / "rows.csv"
    csv.write_text("age,grade\n40,LGG\n70,HGG\n,HGG\n")
    plan = plan_conditions(tiny_schema(), 3, conditions_csv=csv)
    assert [(p["age"], p["grade"]) for p in plan] == [(40.0, "LGG"), (70.0, "HGG"), (None, "HGG")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grade,weight\nGBM,1\n", "line 2: condition grade='GBM' is not in the model"),
        ("colour\nred\n", "condition 'colour' is not in the model"),
        ("grade,weight\nHGG,-1\n", "weight '-1' must be a finite number >= 0"),
        ("grade,weight\nHGG,lots\n", "weight 'lots' is not a number"),
        ("grade\n", "no rows under the header"),
        ("", "no header row"),
        ("grade\nHGG,extra\n", "line 2 has more cells than the header"),
        ("age\nold\n", "condition age='old' is not a number"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    with pytest.raises(
        GliomagenError, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as info:
        plan_conditions(tiny_schema(), 4, conditions_csv=csv)
    assert str(csv) in str(info.value) and "\n" not in str(info.value)


def test_missing_csv_and_bad_assignments() -> None:
    with pytest.raises(GliomagenError, match="file not found"):
        plan_conditions(tiny_schema(), 1, conditions_csv=Path("/nonexistent/x.csv"))
    with pytest.raises(GliomagenError, match="expected name=value"):
        parse_condition_args(tiny_schema(), ["grade"])
    with pytest.raises(GliomagenError, match="known values: HGG, LGG"):
        parse_condition_args(tiny_schema(), ["grade=GBM"])
    assert parse_condition_args(tiny_schema(), ["age=50", "cohort=SSA"]) == {
        "age": 50.0,
        "cohort": "SSA",
    }


def test_encoding_works_without_continuous_or_categorical_fields() -> None:
    from gliomagen.data.conditions import ConditionField, ConditionSchema
    from gliomagen.generation.plan import encode_plan

    only_cat = ConditionSchema([ConditionField("grade", "categorical", categories=["HGG", "LGG"])])
    cat, cont = encode_plan(only_cat, plan_conditions(only_cat, 3, {"grade": "LGG"}))
    assert cat.tolist() == [[1], [1], [1]] and cont.shape == (3, 0) and cont.dtype == np.float32
    none = ConditionSchema([])
    cat, cont = encode_plan(none, plan_conditions(none, 2))
    assert cat.shape == (2, 0) and cont.shape == (2, 0)
