"""A generated cohort is a BraTS dataset: ``gliomagen prepare`` re-ingests it, labels included."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from generation_fixtures import SIZE, expected_id
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.generation import generate_cohort


def test_prepare_reingests_a_generated_cohort(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("gliomagen.data.store")
    from gliomagen.data.store import open_store

    mix = tmp_path / "mix.csv"
    mix.write_text("grade,cohort,weight\nHGG,GLI,1\nLGG,SSA,1\n")
    cohort = generate_cohort(
        checkpoint, tmp_path / "syn", 4, conditions_csv=mix, fmt="int16", progress=False
    )
    native = generate_cohort(
        checkpoint, tmp_path / "nat", 4, conditions_csv=mix, space="native", progress=False
    )
    store = tmp_path / "store"
    result = CliRunner().invoke(
        app,
        ["prepare", str(cohort), "--out", str(store), "--size", str(SIZE[0]), "--labels",
         str(cohort / "clinical.csv"), "--label-type", "seed=ignore", "--qc", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ds = open_store(store)
    ids = [expected_id(checkpoint, i) for i in range(4)]
    assert sorted(ds.case_ids) == ids
    assert tuple(ds.size) == SIZE and bool(ds.has_mask.all())
    by_id = {cid: row for cid, row in zip(ds.case_ids, ds.rows, strict=True)}
    assert [by_id[c]["grade"] for c in ids] == ["HGG", "HGG", "LGG", "LGG"]
    assert [by_id[c]["cohort"] for c in ids] == ["GLI", "GLI", "SSA", "SSA"]
    for i, cid in enumerate(ds.case_ids):
        image, mask, _, _ = ds[i]
        # The re-ingested case is the generated one: compare with the native-grid file.
        ref = np.asarray(nib.load(native / cid / f"{cid}-t2w.nii.gz").dataobj, dtype=np.float32)
        seg = np.asarray(nib.load(native / cid / f"{cid}-seg.nii.gz").dataobj)
        got = image[2].numpy()
        inside = (ref > 0) & (got > -1)
        assert inside.mean() > 0.5
        assert (
            np.corrcoef(ref[inside], got[inside])[0, 1] > 0.93
        )  # ~0.965 measured: two 1 mm resamplings
        assert (mask.numpy() == seg).mean() > 0.85  # ~0.9 measured
