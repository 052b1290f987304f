"""Fixtures of the data tests: synthetic BraTS trees (see synth_brats.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth_brats import Synth, phantom, ras_affine, save


@pytest.fixture
def synth() -> Synth:
    return Synth()


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """One folder per layout: 2023 (GLI with mask, SSA without), 2021, 2018 HGG/LGG, a manifest."""
    s = Synth()
    b23 = tmp_path / "brats2023"
    s.case(b23, "BraTS-GLI-00001-000", seed=1)
    s.case(b23, "BraTS-SSA-00002-000", seed=2, seg=None)
    b21 = tmp_path / "brats2021"
    s.case(b21, "BraTS2021_00001", "brats2021", seed=3, seg="2021")
    b18 = tmp_path / "brats2018"
    s.case(b18 / "HGG", "Brats18_2013_2_1", "brats2021", seed=4, seg="2021", ext=".nii")
    s.case(b18 / "LGG", "Brats18_TCIA10_1", "brats2021", seed=5, seg="2021", orientation="LPS")
    man = tmp_path / "manifest"
    images, mask = phantom(6)
    for m, data in images.items():
        save(man / "vols" / f"m1_{m}.nii.gz", data, ras_affine())
    save(man / "vols" / "m1_mask.nii.gz", mask, ras_affine())
    manifest = s.manifest(
        man,
        [{"case_id": "M1", "t1": "vols/m1_t1n.nii.gz", "t1ce": "vols/m1_t1c.nii.gz", "t2": "vols/m1_t2w.nii.gz",
          "flair": "vols/m1_t2f.nii.gz", "seg": "vols/m1_mask.nii.gz", "cohort": "MEN", "age": "61"}],
    )  # fmt: skip
    return {
        "brats2023": b23,
        "brats2021": b21,
        "brats2018": b18,
        "manifest": manifest,
        "root": tmp_path,
    }
