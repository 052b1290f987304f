"""NIfTI reading, checks and canonical orientation."""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from synth_brats import ras_affine, save, to_lps

from gliomagen.data.nifti import (
    check_same_space,
    from_canonical,
    read_volume,
    sha256,
    to_canonical,
    voxel_sizes,
)
from gliomagen.errors import GliomagenError


def test_read_volume_keeps_values_and_affine(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    path = save(tmp_path / "a.nii.gz", data, ras_affine())
    vol = read_volume(path)
    assert vol.shape == (2, 3, 4)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, ras_affine())
    np.testing.assert_allclose(voxel_sizes(vol.affine), [1.0, 1.1, 1.3])


def test_trailing_singleton_dimension_is_dropped(tmp_path: Path) -> None:
    path = save(tmp_path / "a.nii", np.ones((3, 4, 5, 1), np.float32), np.eye(4))
    assert read_volume(path).shape == (3, 4, 5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            np.ones((3, 4, 5, 2), np.float32),
            r"4D \(2 volumes\) image of shape \[3, 4, 5, 2\], expected one 3D volume",
        ),
        (np.ones((3, 4), np.float32), "2D image"),
        (
            np.where(np.eye(3, dtype=bool)[:, :, None], np.nan, 1.0)
            .repeat(2, 2)
            .astype(np.float32),
            "image holds 6 NaN and 0 infinite voxel values",
        ),
        (np.full((3, 3, 3), np.inf, np.float32), "holds 0 NaN and 27 infinite"),
    ],
)
def test_bad_images_are_named_errors(tmp_path: Path, data: np.ndarray, message: str) -> None:
    path = save(tmp_path / "bad_t1.nii.gz", data, np.eye(4))
    with pytest.raises(GliomagenError, match=message) as info:
        read_volume(path, what="case7")
    assert str(info.value).startswith(f"case7: {path}")


def test_non_nifti_and_corrupt_files(tmp_path: Path) -> None:
    text = tmp_path / "x_t1.nii.gz"
    text.write_text("not an image")
    with pytest.raises(GliomagenError, match="not a readable NIfTI file"):
        read_volume(text)
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG")
    with pytest.raises(GliomagenError, match=r"not a NIfTI file \(expected .nii or .nii.gz\)"):
        read_volume(png)
    good = save(tmp_path / "g.nii.gz", np.ones((20, 20, 20), np.int16), np.eye(4))
    raw = gzip.decompress(good.read_bytes())
    truncated = tmp_path / "t.nii.gz"
    truncated.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(GliomagenError, match="corrupt NIfTI file"):
        read_volume(truncated)
    with pytest.raises(GliomagenError, match="file not found"):
        read_volume(tmp_path / "missing.nii.gz")


def test_check_same_space(tmp_path: Path) -> None:
    a = read_volume(save(tmp_path / "a.nii.gz", np.zeros((4, 5, 6), np.int16), ras_affine()))
    near = ras_affine()
    near[:3, 3] += 1e-3
    b = read_volume(save(tmp_path / "b.nii.gz", np.zeros((4, 5, 6), np.int16), near))
    check_same_space(a, b)  # within tolerance
    moved = ras_affine()
    moved[0, 3] += 0.5
    c = read_volume(save(tmp_path / "c.nii.gz", np.zeros((4, 5, 6), np.int16), moved))
    with pytest.raises(
        GliomagenError, match=r"case: c.nii.gz: affine differs from a.nii.gz \(by 0.5\)"
    ):
        check_same_space(a, c, what="case")
    d = read_volume(save(tmp_path / "d.nii.gz", np.zeros((4, 5, 7), np.int16), ras_affine()))
    with pytest.raises(
        GliomagenError, match=r"d.nii.gz: shape \[4, 5, 7\] differs from a.nii.gz shape \[4, 5, 6\]"
    ):
        check_same_space(a, d)


def test_ras_and_lps_give_the_same_canonical_array() -> None:
    data = np.random.default_rng(0).normal(size=(5, 6, 7))
    lps, lps_aff = to_lps(data, ras_affine())
    assert nib.aff2axcodes(lps_aff) == ("L", "P", "S")
    a, a_aff, _ = to_canonical(data, ras_affine())
    b, b_aff, ornt = to_canonical(lps, lps_aff)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a_aff, b_aff)
    np.testing.assert_array_equal(from_canonical(b, ornt), lps)


def test_every_orientation_round_trips_and_matches_nibabel() -> None:
    data = np.random.default_rng(1).normal(size=(3, 4, 5))
    for perm, flips in itertools.product(
        itertools.permutations(range(3)), itertools.product([-1, 1], repeat=3)
    ):
        aff = np.eye(4)
        aff[:3, :3] = np.eye(3)[:, list(perm)] * np.array(flips) * [1.0, 2.0, 3.0]
        aff[:3, 3] = [5.0, -3.0, 2.0]
        canon, canon_aff, ornt = to_canonical(data, aff)
        ref = nib.as_closest_canonical(nib.Nifti1Image(data, aff))
        np.testing.assert_array_equal(canon, np.asarray(ref.dataobj))
        np.testing.assert_allclose(canon_aff, ref.affine)
        np.testing.assert_array_equal(from_canonical(canon, ornt), data)


def test_sha256(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
