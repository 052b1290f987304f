"""A generated cohort is a BraTS dataset: ``gliomagen prepare`` re-ingests it, labels included."""

from __future__ import annotations

import json
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
        # ~0.92 measured: two 1 mm resamplings of an untrained generator's noisy output (its
        # tails are no longer clipped at re-measured percentiles)
        assert np.corrcoef(ref[inside], got[inside])[0, 1] > 0.88
        # and on the same scale: prepare inverts the writer's map (manifest.json), so the
        # re-ingested values are the generator's (median -0.24 vs -0.29 measured)
        lo, hi = json.loads((native / "manifest.json").read_text())["intensity_ranges"]["t2w"]
        ref_unit = 2 * (ref - lo) / (hi - lo) - 1
        assert abs(float(np.median(ref_unit[inside]) - np.median(got[inside]))) < 0.1
        assert float(np.abs(ref_unit[inside] - got[inside]).mean()) < 0.15  # 0.08 measured
        assert (mask.numpy() == seg).mean() > 0.85  # ~0.9 measured
