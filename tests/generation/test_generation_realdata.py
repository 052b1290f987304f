"""On the real BraTS grid: a cohort lands on 240x240x155 at 1 mm with the training data's affine."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from generation_fixtures import (
    case_file,
    save_tiny_checkpoint,
    store_meta,
    tiny_generator,
    tiny_schema,
)

from gliomagen import MODALITIES
from gliomagen.generation import generate_cohort


@pytest.mark.realdata
@pytest.mark.slow
def test_brats_space_matches_a_real_brats_case(real_data: Path, tmp_path: Path) -> None:
    from monai.transforms import LoadImage

    from gliomagen.data.layouts import find_cases

    record = find_cases([real_data / "brats2023"])[0]
    meta = store_meta(record)
    schema = tiny_schema()
    ckpt = save_tiny_checkpoint(tmp_path / "run", tiny_generator(schema), schema, meta)
    out = generate_cohort(ckpt, tmp_path / "syn", 1, fmt="int16", progress=False)
    real = nib.load(record.images["t1c"])
    for m in MODALITIES:
        img = nib.load(case_file(out, 0, f"{m}.nii.gz"))
        assert img.shape == (240, 240, 155) == real.shape
        np.testing.assert_allclose(img.affine, real.affine, atol=1e-4)
        assert nib.aff2axcodes(img.affine) == nib.aff2axcodes(real.affine) == ("L", "P", "S")
        assert img.get_data_dtype() == np.int16
        loaded = LoadImage(image_only=True)(str(case_file(out, 0, f"{m}.nii.gz")))
        assert tuple(loaded.shape) == (240, 240, 155)
        np.testing.assert_allclose(loaded.pixdim.numpy(), [1.0, 1.0, 1.0])
    # The generated brain sits where the real brain is: their centres agree within a few mm.
    syn = np.asarray(nib.load(case_file(out, 0, "t1c.nii.gz")).dataobj) > 0
    ref = np.asarray(real.dataobj) > 0
    assert np.abs(np.argwhere(syn).mean(0) - np.argwhere(ref).mean(0)).max() < 6.0
