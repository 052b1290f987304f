"""``gliomagen prepare`` ingests a phantom cohort end to end (folder + clinical.csv -> store)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.data.phantoms import generate_cohort


def test_prepare_ingests_a_phantom_cohort(tmp_path: Path) -> None:
    store_mod = pytest.importorskip("gliomagen.data.store")
    src = generate_cohort(
        tmp_path / "ph", {"GLI": 4, "SSA": 2}, resolution=2, seed=0, workers=2, progress=False
    )
    store = tmp_path / "store"
    result = CliRunner().invoke(
        app,
        [
            "prepare",
            str(src),
            "--labels",
            str(src / "clinical.csv"),
            "--out",
            str(store),
            "--size",
            "32",
            "--qc",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    ds = store_mod.open_store(store)
    with open(src / "clinical.csv", newline="") as f:
        clinical = {r["case_id"]: r for r in csv.DictReader(f)}
    assert sorted(ds.case_ids) == sorted(clinical)
    assert (
        ds.has_mask.all()
        and ds.size == (32, 32, 32)
        and list(ds.modalities) == ["t1n", "t1c", "t2w", "t2f"]
    )
    for i, cid in enumerate(ds.case_ids):
        row = ds.rows[i]
        for key in ("cohort", "grade"):
            if key in row:
                assert str(row[key]) == clinical[cid][key], (cid, key)
        image, mask, _, _ = ds[i]
        labels = set(np.unique(mask.numpy()).tolist())
        assert labels <= {0, 1, 2, 3} and 2 in labels, (cid, labels)
        assert (3 in labels) == (clinical[cid]["grade"] == "HGG"), cid
        assert float(image.min()) == -1.0 and float(image.max()) <= 1.0
    assert {"cohort", "grade"} <= set(ds.schema.names)
