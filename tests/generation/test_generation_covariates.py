"""clinical.csv of a synthetic cohort holds the covariates ``prepare`` derives from real masks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from generation_fixtures import SIZE, save_tiny_checkpoint, store_meta, tiny_generator

from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.generation import generate_cohort
from gliomagen.generation.covariates import covariate_columns, fill_covariates, mask_covariates


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "clinical.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_known_mask() -> None:
    """8 tumour voxels of 8 mm^3 (one enhancing) left of the brain's midline (x = 9 mm)."""
    seg = np.zeros((10, 4, 4), np.uint8)
    seg[1:3, :2, :2] = 2
    seg[1, 0, 0] = 3
    brain = np.ones_like(seg, dtype=bool)  # x from 0 to 18 mm: midline at 9 mm
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    assert mask_covariates(seg, brain, affine) == {
        "wt_volume_ml": "0.064", "enhancing_fraction": "0.125", "hemisphere": "left",
    }  # fmt: skip
    flipped = seg[::-1].copy()  # the tumour on the right side
    assert mask_covariates(flipped, brain, affine)["hemisphere"] == "right"
    none = mask_covariates(np.zeros_like(seg), brain, affine)
    assert none == {"wt_volume_ml": "0.0", "enhancing_fraction": None, "hemisphere": None}
    assert covariate_columns(["grade", "hemisphere"]) == ["wt_volume_ml", "enhancing_fraction"]
    assert fill_covariates({"grade": "HGG", "hemisphere": "right", "wt_volume_ml": None},
                           {"hemisphere": "left", "wt_volume_ml": "0.064"}) == {
        "grade": "HGG", "hemisphere": "right", "wt_volume_ml": "0.064",
    }  # fmt: skip


def test_clinical_csv_holds_what_prepare_measures(checkpoint: Path, tmp_path: Path) -> None:
    from gliomagen.data.layouts import find_cases
    from gliomagen.data.preprocess import prepare_case

    out = generate_cohort(checkpoint, tmp_path / "syn", 4, seed=2, progress=False)
    rows = {r["case_id"]: r for r in _rows(out)}
    assert list(next(iter(rows.values())))[-3:] == ["wt_volume_ml", "enhancing_fraction", "hemisphere"]
    records = find_cases([out])
    assert sorted(r.case_id for r in records) == sorted(rows)
    tumours = 0
    for record in records:
        expected = prepare_case(record, SIZE).covariates  # what `gliomagen prepare` stores
        row = rows[record.case_id]
        assert float(row["wt_volume_ml"]) == expected["wt_volume_ml"]
        assert row["enhancing_fraction"] == ("" if expected["enhancing_fraction"] is None
                                             else str(expected["enhancing_fraction"]))  # fmt: skip
        assert row["hemisphere"] == (expected["hemisphere"] or "")
        tumours += expected["wt_volume_ml"] > 0
    assert tumours > 0


def test_covariate_conditions_keep_the_request_and_fill_the_rest(
    tmp_path: Path, reference_record
) -> None:  # noqa: ANN001
    """A model conditioned on covariates (as a `prepare` store makes it): a requested covariate
    keeps its value, an unrequested one is filled with what the mask measures."""
    schema = ConditionSchema([
        ConditionField("hemisphere", "categorical", categories=["bilateral", "left", "right"], source="mask"),
        ConditionField("wt_volume_ml", "continuous", mean=20.0, std=10.0, source="mask"),
    ])  # fmt: skip
    ckpt = save_tiny_checkpoint(
        tmp_path / "run", tiny_generator(schema), schema, store_meta(reference_record, schema=schema)
    )
    out = generate_cohort(
        ckpt, tmp_path / "syn", 2, conditions={"hemisphere": "left"}, space="native", progress=False
    )
    rows = _rows(out)
    assert list(rows[0]) == ["case_id", "seed", "hemisphere", "wt_volume_ml", "enhancing_fraction"]
    assert {r["hemisphere"] for r in rows} == {"left"}  # the request, not the measurement
    assert all(float(r["wt_volume_ml"]) > 0 for r in rows)  # measured (the request left it unset)
