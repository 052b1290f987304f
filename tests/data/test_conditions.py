"""Label tables, type inference, derived covariates and schema building."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest

from gliomagen.data import conditions, labels
from gliomagen.data.conditions import ConditionSchema, infer_kind
from gliomagen.data.labels import (
    build_schema,
    derive_covariates,
    parse_label_types,
    read_label_table,
)
from gliomagen.errors import GliomagenError


def test_module_doctests_still_pass() -> None:
    result = doctest.testmod(conditions)
    assert result.attempted >= 4 and result.failed == 0
    result = doctest.testmod(labels)
    assert result.attempted >= 2 and result.failed == 0


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["61", "45.5", "", "nan"], "continuous"),
        ([2, 3, 4], "continuous"),
        (["0", "1", "1"], "categorical"),
        (["HGG", "LGG"], "categorical"),
        (["1", "x"], "categorical"),
        (["", None], "categorical"),
    ],
)
def test_infer_kind(values: list, kind: str) -> None:
    assert infer_kind(values) == kind


def test_parse_label_types() -> None:
    assert parse_label_types(["age=categorical", " idh = ignore"]) == {
        "age": "categorical",
        "idh": "ignore",
    }
    with pytest.raises(GliomagenError, match="--label-type 'age': expected name="):
        parse_label_types(["age"])
    with pytest.raises(GliomagenError, match="--label-type 'age=ordinal'"):
        parse_label_types(["age=ordinal"])


def test_read_label_table(tmp_path: Path) -> None:
    p = tmp_path / "clinical.csv"
    p.write_text("\ufeffcase_id,grade,age\nA,HGG, 61\nB,,45\n")
    cols, rows = read_label_table(p)
    assert cols == ["grade", "age"]
    assert rows == {"A": {"grade": "HGG", "age": "61"}, "B": {"grade": "", "age": "45"}}
    p.write_text("case_id,age\nA,1\nA,2\n")
    with pytest.raises(GliomagenError, match=r"case 'A' appears twice \(line 3\)"):
        read_label_table(p)
    p.write_text("id,age\nA,1\n")
    with pytest.raises(GliomagenError, match="no case_id column"):
        read_label_table(p)
    with pytest.raises(GliomagenError, match="file not found"):
        read_label_table(tmp_path / "nope.csv")


def test_derive_covariates_in_ras_and_lps() -> None:
    mask = np.zeros((20, 10, 10), np.uint8)
    mask[2:6, 2:4, 2:4] = 2  # 16 voxels on the low-x side
    mask[3, 2, 2] = 3
    mask[4, 2, 2] = 1
    ras = np.diag([1.0, 1.0, 2.0, 1.0])
    out = derive_covariates(mask, ras, midline_x=10.0)
    assert out == {"wt_volume_ml": 0.032, "enhancing_fraction": 0.0625, "hemisphere": "left"}
    lps = np.diag([-1.0, -1.0, 2.0, 1.0])  # low voxel x is the patient's right now
    assert derive_covariates(mask, lps, midline_x=-10.0)["hemisphere"] == "right"
    mask[12:16, 2:4, 2:4] = 2  # as much tumour on the other side
    assert derive_covariates(mask, ras, midline_x=10.0)["hemisphere"] == "bilateral"
    empty = derive_covariates(np.zeros((4, 4, 4), np.uint8), ras, 0.0)
    assert empty == {"wt_volume_ml": 0.0, "enhancing_fraction": None, "hemisphere": None}


def test_build_schema_types_stats_and_overrides() -> None:
    rows = [
        {"cohort": "SSA", "grade": None, "age": "60", "sex": "F", "idh": "1", "wt_volume_ml": 10.0},
        {
            "cohort": "GLI",
            "grade": "LGG",
            "age": "40",
            "sex": "M",
            "idh": "0",
            "wt_volume_ml": 30.0,
        },
        {"cohort": "GLI", "grade": "HGG", "age": "", "sex": "", "idh": "1", "wt_volume_ml": None},
        {
            "cohort": "GLI",
            "grade": "HGG",
            "age": "100",
            "sex": "M",
            "idh": "0",
            "wt_volume_ml": 50.0,
        },
    ]
    sources = {"cohort": "id", "grade": "folder", "age": "labels-csv", "sex": "labels-csv", "idh": "labels-csv",
               "wt_volume_ml": "mask", "hemisphere": "mask"}  # fmt: skip
    schema = build_schema(rows, sources, train=[True, True, True, False])
    assert schema.names == [
        "cohort",
        "grade",
        "age",
        "sex",
        "idh",
        "wt_volume_ml",
    ]  # hemisphere: no values
    assert schema["cohort"].categories == ["GLI", "SSA"] and schema["grade"].categories == [
        "HGG",
        "LGG",
    ]
    assert schema["idh"].kind == "categorical" and schema["idh"].categories == ["0", "1"]
    assert schema["age"].kind == "continuous"
    assert schema["age"].mean == pytest.approx(50.0) and schema["age"].std == pytest.approx(
        10.0
    )  # train rows only
    assert (
        schema["wt_volume_ml"].mean == pytest.approx(20.0)
        and schema["wt_volume_ml"].source == "mask"
    )
    cat, cont = schema.encode(schema.normalise(rows[2]))
    assert cat.tolist() == [0, 0, 2, 1] and cont.tolist() == [
        0.0,
        0.0,
    ]  # sex missing -> unknown slot 2
    again = ConditionSchema.from_dict(schema.to_dict())
    assert again.to_dict() == schema.to_dict()

    over = build_schema(rows, sources, kinds={"age": "categorical", "idh": "ignore"})
    assert over["age"].categories == ["40", "60", "100"] and "idh" not in over
    with pytest.raises(GliomagenError, match=r"--label-type size: no such label \(known: cohort"):
        build_schema(rows, sources, kinds={"size": "continuous"})
    with pytest.raises(
        GliomagenError, match=r"label sex='F' is not a number \(use --label-type sex=categorical\)"
    ):
        build_schema(rows, sources, kinds={"sex": "continuous"})


def test_normalise_keeps_schema_fields_only() -> None:
    schema = build_schema([{"grade": "HGG", "age": "61"}], {"grade": "csv", "age": "csv"})
    assert schema.normalise({"grade": " HGG ", "age": "61", "case_id": "x"}) == {
        "grade": "HGG",
        "age": 61.0,
    }
    assert schema.normalise({}) == {"grade": None, "age": None}


def test_encode_ignores_missing_values_of_unknown_fields_only() -> None:
    schema = build_schema([{"cohort": "GLI"}, {"cohort": "SSA"}], {"cohort": "id"})
    cat, _ = schema.encode({"cohort": "SSA", "grade": None, "idh": ""})
    assert cat.tolist() == [1]
    with pytest.raises(GliomagenError, match="condition 'grade' is not in the model"):
        schema.encode({"cohort": "SSA", "grade": "HGG"})


def test_encode_many_with_no_continuous_or_no_categorical_fields() -> None:
    from gliomagen.data.conditions import ConditionField, ConditionSchema

    only_cat = ConditionSchema([ConditionField("grade", "categorical", categories=["HGG", "LGG"])])
    cat, cont = only_cat.encode_many([{"grade": "LGG"}, {"grade": None}])
    assert cat.tolist() == [[1], [2]]
    assert cont.shape == (2, 0)
    only_cont = ConditionSchema([ConditionField("age", "continuous", mean=50.0, std=10.0)])
    cat, cont = only_cont.encode_many([{"age": 70}])
    assert cat.shape == (1, 0)
    assert cont.tolist() == [[2.0]]
