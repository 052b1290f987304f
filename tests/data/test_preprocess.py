"""One case onto the store grid (values, geometry, labels) and back to the original grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from synth_brats import SHAPE, Synth, phantom, ras_affine, save

from gliomagen.data.layouts import CaseRecord, find_cases
from gliomagen.data.preprocess import (
    grid_affine,
    prepare_case,
    remap_labels,
    resample_linear,
    resample_nearest,
    template_geometry,
    to_original_space,
    to_template_space,
)
from gliomagen.errors import GliomagenError

MODS = ("t1n", "t1c", "t2w", "t2f")


def _one(folder: Path) -> CaseRecord:
    (case,) = find_cases([folder])
    return case


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_unit_step_grid_stores_the_exact_normalised_crop(tmp_path: Path) -> None:
    """Isotropic voxels and size == brain box: the stored grid is the crop itself, so values are exact."""
    images, mask = phantom(0)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    for m in MODS:
        save(tmp_path / "c1" / f"c1-{m}.nii.gz", images[m], affine)
    save(tmp_path / "c1" / "c1-seg.nii.gz", mask, affine)
    brain = np.any([images[m] != 0 for m in MODS], axis=0)
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(brain))
    size = tuple(s.stop - s.start for s in box)
    out = prepare_case(_one(tmp_path), size)
    np.testing.assert_allclose(out.geometry["step"], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(out.geometry["start"], [s.start for s in box])
    assert out.image.dtype == np.float16 and out.image.shape == (4, *size)
    np.testing.assert_array_equal(out.mask, mask[box])
    for c, m in enumerate(MODS):
        x = images[m][box].astype(np.float64)
        inside = brain[box]
        lo, hi = np.percentile(x[inside], [0.5, 99.5])
        expect = np.where(inside, np.clip((x - lo) / (hi - lo) * 2 - 1, -1, 1), -1.0)
        np.testing.assert_allclose(out.image[c].astype(np.float64), expect, atol=2e-3)
        assert out.intensity[m]["p_lo"] == pytest.approx(lo) and out.intensity[m][
            "p_hi"
        ] == pytest.approx(hi)
    assert (out.image[:, ~brain[box]] == -1.0).all()


def test_resampled_case_values(tmp_path: Path, synth: Synth) -> None:
    out = prepare_case(_one(synth.case(tmp_path, "BraTS-GLI-00001-000")), (16, 16, 16))
    assert (
        out.image.shape == (4, 16, 16, 16) and out.mask is not None and out.mask.dtype == np.uint8
    )
    assert out.image.min() == -1.0 and out.image.max() <= 1.0
    background = out.image[0] == -1.0
    assert background.sum() > 16**3 * 0.2  # padding and outside the ellipsoid
    assert (out.image[:, background] == -1.0).all()  # one brain region for all channels
    assert set(np.unique(out.mask).tolist()) == {0, 1, 2, 3}
    # the isotropic output voxel: largest brain extent (21 voxels x 1.1 mm) over 16
    assert out.geometry["spacing_mm"] == pytest.approx(21 * 1.1 / 16)
    np.testing.assert_allclose(
        np.asarray(out.geometry["step"]) * [1.0, 1.1, 1.3], out.geometry["spacing_mm"]
    )
    _, mask = phantom(0)
    assert out.covariates["wt_volume_ml"] == pytest.approx(
        (mask > 0).sum() * 1.0 * 1.1 * 1.3 / 1000, rel=1e-3
    )
    assert out.covariates["enhancing_fraction"] == pytest.approx(
        (mask == 3).sum() / (mask > 0).sum(), abs=1e-4
    )
    assert out.covariates["hemisphere"] == "right"  # tumour at x=16 > brain centre x=12 in RAS


def test_ras_and_lps_versions_give_the_same_store_arrays(tmp_path: Path, synth: Synth) -> None:
    ras = prepare_case(_one(synth.case(tmp_path / "r", "BraTS-GLI-00001-000")), (12, 16, 12))
    lps = prepare_case(
        _one(synth.case(tmp_path / "l", "BraTS-GLI-00001-000", orientation="LPS")), (12, 16, 12)
    )
    assert nib.aff2axcodes(np.asarray(lps.geometry["affine"])) == ("L", "P", "S")
    np.testing.assert_array_equal(ras.image, lps.image)
    np.testing.assert_array_equal(ras.mask, lps.mask)
    assert ras.covariates == lps.covariates
    assert (
        ras.geometry["start"] == lps.geometry["start"]
        and ras.geometry["step"] == lps.geometry["step"]
    )


def test_transposed_axes_give_the_same_store_arrays(tmp_path: Path) -> None:
    images, mask = phantom(0)
    perm = (2, 0, 1)  # file axes: (z, x, y)
    affine = ras_affine()[:, [*perm, 3]]
    for name, data in {**images, "seg": mask}.items():
        save(tmp_path / "t" / "c" / f"c-{name}.nii.gz", data.transpose(perm), affine)
        save(tmp_path / "r" / "c" / f"c-{name}.nii.gz", data, ras_affine())
    a = prepare_case(_one(tmp_path / "t"), (12, 12, 12))
    b = prepare_case(_one(tmp_path / "r"), (12, 12, 12))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_separable_resampling_matches_scipy_at_the_recorded_coordinates() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 20, 18, 15)).astype(np.float32)
    start, step, size = [1.3, 0.7, 2.1], [1.4, 0.9, 0.6], (12, 17, 20)
    grid = np.meshgrid(*[start[a] + step[a] * np.arange(size[a]) for a in range(3)], indexing="ij")
    out = resample_linear(x, start, step, size)
    for c in range(2):
        ref = ndimage.map_coordinates(x[c], grid, order=1, mode="constant", cval=0.0)
        np.testing.assert_allclose(out[c], ref, atol=1e-5)
    labels = rng.integers(0, 4, size=(1, 20, 18, 15)).astype(np.uint8)
    near = resample_nearest(labels, start, step, size)
    idx = [np.floor(g + 0.5).astype(int) for g in grid]
    np.testing.assert_array_equal(near[0], labels[0][tuple(idx)])


def test_resampling_outside_the_array_takes_the_fill() -> None:
    x = np.ones((1, 4, 4, 4), np.float32)
    out = resample_linear(x, [-2.0, 0.0, 0.0], [1.0, 1.0, 1.0], (8, 4, 4), fill=-1.0)
    np.testing.assert_allclose(out[0, :, 0, 0], [-1, -1, 1, 1, 1, 1, -1, -1])
    half = resample_linear(x, [-0.5, 0.0, 0.0], [1.0, 1.0, 1.0], (1, 1, 1), fill=-1.0)
    assert half[0, 0, 0, 0] == pytest.approx(0.0)


@pytest.mark.parametrize("orientation", ["RAS", "LPS"])
def test_round_trip_back_to_the_original_grid(
    tmp_path: Path, synth: Synth, orientation: str
) -> None:
    case = _one(synth.case(tmp_path, "BraTS-GLI-00001-000", orientation=orientation))
    raw = np.asarray(nib.load(str(case.seg)).dataobj)
    out = prepare_case(case, (20, 24, 20))
    back = to_original_space(out.mask, out.geometry, order=0)
    assert back.shape == raw.shape and back.dtype == np.uint8
    assert _dice(back > 0, raw > 0) >= 0.9
    assert _dice(back == 3, raw == 3) >= 0.6
    image = to_original_space(out.image, out.geometry, order=1)  # [4, X, Y, Z] in file order
    assert image.shape == (4, *raw.shape) and image.dtype == np.float32
    t1n = np.asarray(nib.load(str(case.images["t1n"])).dataobj).astype(np.float64)
    brain = t1n != 0
    lo, hi = out.intensity["t1n"]["p_lo"], out.intensity["t1n"]["p_hi"]
    expect = np.clip((t1n - lo) / (hi - lo) * 2 - 1, -1, 1)
    core = ndimage.binary_erosion(brain, iterations=2)
    err = np.abs(image[0] - expect)[core].mean()
    err_shifted = np.abs(np.roll(image[0], 2, axis=0) - expect)[core].mean()
    assert err < 0.12 and err < 0.75 * err_shifted  # aligned, not merely similar
    assert (image[0][~ndimage.binary_dilation(brain, iterations=2)] == -1.0).all()


def test_grid_affine_places_stored_voxels(tmp_path: Path, synth: Synth) -> None:
    out = prepare_case(
        _one(synth.case(tmp_path, "BraTS-GLI-00001-000", orientation="LPS")), (10, 12, 14)
    )
    g = out.geometry
    ijk = np.array([3.0, 5.0, 7.0])
    canonical = np.asarray(g["start"]) + np.asarray(g["step"]) * ijk
    expect = np.asarray(g["canonical_affine"]) @ np.append(canonical, 1.0)
    np.testing.assert_allclose(grid_affine(g) @ np.append(ijk, 1.0), expect)
    np.testing.assert_allclose(np.linalg.norm(grid_affine(g)[:3, :3], axis=0), g["spacing_mm"])


def test_template_geometry_maps_a_new_case_to_the_reference_grid(
    tmp_path: Path, synth: Synth
) -> None:
    outs = [
        prepare_case(_one(synth.case(tmp_path / str(s), f"c{s}", seed=s)), (16, 16, 16))
        for s in range(3)
    ]
    tmpl = template_geometry([o.geometry for o in outs])
    assert tmpl["shape"] == list(SHAPE) and tmpl["n_cases"] == 3
    np.testing.assert_allclose(tmpl["affine"], ras_affine())
    # identical brains: the template is each case's geometry
    np.testing.assert_allclose(tmpl["start"], outs[0].geometry["start"])
    new_case = np.asarray(outs[1].mask)
    vol, affine = to_template_space(new_case, {"template_geometry": tmpl}, order=0)
    np.testing.assert_allclose(affine, ras_affine())
    np.testing.assert_array_equal(vol, to_original_space(new_case, outs[1].geometry, order=0))
    with pytest.raises(GliomagenError, match="is not the store grid"):
        to_template_space(np.zeros((8, 8, 8)), tmpl)


def test_remap_labels() -> None:
    np.testing.assert_array_equal(
        remap_labels(np.array([0, 1, 2, 4], np.uint8), "2021"), [0, 1, 2, 3]
    )
    np.testing.assert_array_equal(
        remap_labels(np.array([0, 1, 2, 3], np.int16), "2023"), [0, 1, 2, 3]
    )
    np.testing.assert_array_equal(remap_labels(np.array([0.0, 4.0]), "auto"), [0, 3])
    with pytest.raises(
        GliomagenError, match=r"seg.nii.gz: unknown label values \[5, 7\] \(expected BraTS 2023"
    ):
        remap_labels(np.array([0, 5, 7, 1]), "2023", where="seg.nii.gz")
    with pytest.raises(
        GliomagenError,
        match=r"unknown label values \[3\] \(expected BraTS 2021 labels \{0,1,2,4\}\)",
    ):
        remap_labels(np.array([0, 3]), "2021")
    with pytest.raises(GliomagenError, match=r"unknown label values \[3, 4\]"):
        remap_labels(np.array([3, 4]), "auto")
    with pytest.raises(GliomagenError, match=r"unknown label values \[-1, 300\]"):
        remap_labels(np.array([-1, 0, 300]), "auto")
    with pytest.raises(GliomagenError, match=r"non-integer label values \[0.5\]"):
        remap_labels(np.array([0.0, 0.5]), "auto")


def test_2021_labels_become_2023_labels(tmp_path: Path, synth: Synth) -> None:
    a = prepare_case(
        _one(synth.case(tmp_path / "a", "BraTS2021_00001", "brats2021", seg="2021")), (12, 12, 12)
    )
    b = prepare_case(_one(synth.case(tmp_path / "b", "BraTS-GLI-00001-000")), (12, 12, 12))
    np.testing.assert_array_equal(a.mask, b.mask)
    assert 3 in a.mask


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("empty", r"c: empty brain \(every voxel is background\)"),
        ("constant_t2w", r"c-t2w.nii.gz: image is constant \(0\) inside the brain"),
        ("shape", r"c-t1c.nii.gz: shape \[24, 28, 21\] differs from c-t1n.nii.gz"),
        ("affine", "c-t2f.nii.gz: affine differs from c-t1n.nii.gz"),
        ("labels", r"c-seg.nii.gz: unknown label values \[4\]"),
        ("nan", "c-t1n.nii.gz: image holds 1 NaN"),
    ],
)
def test_bad_cases_name_case_file_and_problem(tmp_path: Path, change: str, message: str) -> None:
    images, mask = phantom(0)
    files: dict[str, tuple[np.ndarray, np.ndarray]] = {m: (images[m], ras_affine()) for m in MODS}
    files["seg"] = (mask, ras_affine())
    if change == "empty":
        files = {k: (np.zeros_like(v[0]), v[1]) for k, v in files.items()}
    elif change == "constant_t2w":
        files["t2w"] = (np.zeros_like(images["t2w"]), ras_affine())
    elif change == "shape":
        files["t1c"] = (np.zeros((24, 28, 21), np.int16), ras_affine())
    elif change == "affine":
        moved = ras_affine()
        moved[1, 3] += 2.0
        files["t2f"] = (images["t2f"], moved)
    elif change == "labels":
        files["seg"] = (np.where(mask == 3, 4, mask).astype(np.uint8), ras_affine())
    elif change == "nan":
        bad = images["t1n"].astype(np.float32)
        bad[3, 3, 3] = np.nan
        files["t1n"] = (bad, ras_affine())
    for k, (data, aff) in files.items():
        save(tmp_path / "c" / f"c-{k}.nii.gz", data, aff)
    with pytest.raises(GliomagenError, match=message) as info:
        prepare_case(_one(tmp_path), (8, 8, 8))
    assert str(info.value).startswith("c: ")
