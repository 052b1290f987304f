"""The phantoms obey MR physics and their labels: contrast by region, grade and cohort."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _phantom_measures import deep_white_matter, estimate_snr, load_case, normal_brain

from gliomagen import MODALITIES


def _cases(cohort_dir: Path, clinical: list[dict[str, str]]):
    for row in clinical:
        images, seg = load_case(cohort_dir / row["case_id"])
        yield row, images, seg


def test_files_are_brats_like(cohort_dir: Path, clinical: list[dict[str, str]]) -> None:
    for row in clinical:
        folder = cohort_dir / row["case_id"]
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted(f"{row['case_id']}-{s}.nii.gz" for s in (*MODALITIES, "seg"))
        for m in MODALITIES:
            img = nib.load(str(folder / f"{row['case_id']}-{m}.nii.gz"))
            assert img.shape == (120, 120, 78)
            assert img.get_data_dtype() == np.int16
            assert nib.aff2axcodes(img.affine) == ("L", "P", "S")  # like BraTS files
            np.testing.assert_allclose(np.abs(np.diag(img.affine)[:3]), [2.0, 2.0, 2.0])
        seg = nib.load(str(folder / f"{row['case_id']}-seg.nii.gz"))
        assert seg.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(seg.affine, img.affine)


def test_skull_stripped_and_labels_inside_brain(
    cohort_dir: Path, clinical: list[dict[str, str]]
) -> None:
    for row, images, seg in _cases(cohort_dir, clinical):
        brain = images["t1n"] > 0
        assert set(np.unique(seg).tolist()) <= {0, 1, 2, 3}
        assert not (seg[~brain] > 0).any(), row["case_id"]  # no tumour outside the brain
        # background is exactly 0
        assert images["t1n"][0].max() == 0 and images["t1n"][:, :, -1].max() == 0
        volume_ml = brain.sum() * 8 / 1000
        assert 900 < volume_ml < 2100, (row["case_id"], volume_ml)
        for m in MODALITIES:  # the four modalities share one brain mask
            np.testing.assert_array_equal(images[m] > 0, brain)


def test_hgg_enhances_and_edema_is_bright(cohort_dir: Path, clinical: list[dict[str, str]]) -> None:
    n_hgg = 0
    for row, images, seg in _cases(cohort_dir, clinical):
        normal = normal_brain(images, seg)
        if row["grade"] == "HGG":
            n_hgg += 1
            assert (seg == 3).sum() > 20, row["case_id"]
            cid = row["case_id"]
            assert images["t1c"][seg == 3].mean() > 1.2 * images["t1c"][normal].mean(), cid
            # necrosis: dark on T1, bright on T2
            assert images["t1n"][seg == 1].mean() < images["t1n"][normal].mean(), row["case_id"]
            assert images["t2w"][seg == 1].mean() > images["t2w"][normal].mean(), row["case_id"]
        assert (seg == 2).any(), row["case_id"]
        for m in ("t2w", "t2f"):
            assert images[m][seg == 2].mean() > 1.1 * images[m][normal].mean(), (row["case_id"], m)
    assert n_hgg >= 4


def test_lgg_has_no_enhancing_tumour_and_little_edema(
    cohort_dir: Path, clinical: list[dict[str, str]]
) -> None:
    edema_ratio = {"HGG": [], "LGG": []}
    for row, images, seg in _cases(cohort_dir, clinical):
        if row["grade"] == "LGG":
            assert not (seg == 3).any(), row["case_id"]
            assert (seg == 1).sum() > 50, row["case_id"]  # a non-enhancing core
            normal = normal_brain(images, seg)
            cid = row["case_id"]
            assert images["t2f"][seg == 1].mean() > 1.2 * images["t2f"][normal].mean(), cid
        edema_ratio[row["grade"]].append((seg == 2).sum() / max((seg > 0).sum(), 1))
    assert max(edema_ratio["LGG"]) < min(edema_ratio["HGG"])


def test_grade_in_clinical_csv_matches_the_mask(
    clinical: list[dict[str, str]], cohort_dir: Path
) -> None:
    for row, _, seg in _cases(cohort_dir, clinical):
        assert row["grade"] == ("HGG" if (seg == 3).any() else "LGG"), row["case_id"]
        assert 18 <= int(row["age"]) <= 88 and row["sex"] in ("M", "F")


def test_ssa_has_lower_snr_than_gli(cohort_dir: Path, clinical: list[dict[str, str]]) -> None:
    snr: dict[str, list[float]] = {"GLI": [], "SSA": []}
    for row, images, seg in _cases(cohort_dir, clinical):
        wm = deep_white_matter(images, seg)
        assert wm.sum() > 500, row["case_id"]  # enough deep white matter to measure on
        snr[row["cohort"]].append(float(np.mean([estimate_snr(images[m], wm) for m in MODALITIES])))
    assert max(snr["SSA"]) < min(snr["GLI"]), snr
    assert np.median(snr["SSA"]) < 0.7 * np.median(snr["GLI"]), snr


def test_ssa_has_thick_slices(cohort_dir: Path, clinical: list[dict[str, str]]) -> None:
    """SSA is blurred along the slice axis: neighbouring slices differ less than in-plane pixels."""

    def anisotropy(img: np.ndarray) -> float:
        inside = img > 0
        dz = np.abs(np.diff(img, axis=2))[inside[:, :, 1:] & inside[:, :, :-1]]
        dx = np.abs(np.diff(img, axis=0))[inside[1:] & inside[:-1]]
        return float(np.median(dz) / np.median(dx))

    ratio = {"GLI": [], "SSA": []}
    for row, images, _ in _cases(cohort_dir, clinical):
        ratio[row["cohort"]].append(anisotropy(images["t2f"]))
    assert max(ratio["SSA"]) < min(ratio["GLI"]), ratio


@pytest.mark.parametrize("modality", MODALITIES)
def test_intensities_in_brats_int16_range(
    cohort_dir: Path, clinical: list[dict[str, str]], modality: str
) -> None:
    medians = []
    for _, images, _ in _cases(cohort_dir, clinical):
        vals = images[modality][images[modality] > 0]
        medians.append(float(np.median(vals)))
        assert vals.max() < 32767
    # BraTS2021_07294 medians: t1 351, t1ce 352, t2 524, flair 326; phantoms spread around them.
    assert 120 < np.median(medians) < 1200
