"""Anti-aliased downsampling in ``prepare``: the Gaussian prefilter, its record, and the masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from synth_brats import Synth

from gliomagen.data.build import build_store
from gliomagen.data.build_inputs import input_fingerprint
from gliomagen.data.geometry import antialias_sigma, resample_linear
from gliomagen.data.layouts import CaseRecord, find_cases
from gliomagen.data.phantoms import make_case, write_case
from gliomagen.data.preprocess import PrepOptions, prepare_case


def _down4(x: np.ndarray, antialias: bool, start: float = 0.0) -> np.ndarray:
    """``x [C, X, Y, Z]`` sampled every 4 voxels along each axis (fill 0, the patterns' mean)."""
    size = [s // 4 for s in x.shape[1:]]
    step = [4.0, 4.0, 4.0]
    return resample_linear(x, [start] * 3, step, size, fill=0.0, antialias=antialias)[0]


def _one(folder: Path) -> CaseRecord:
    (case,) = find_cases([folder])
    return case


def test_sigma_follows_the_step() -> None:
    np.testing.assert_allclose(antialias_sigma([4.0, 2.0, 1.0]), [1.5, 0.5, 0.0])
    np.testing.assert_allclose(antialias_sigma([0.5, 0.8, 1.0]), [0.0, 0.0, 0.0])


def test_axis_by_axis_filter_equals_scipy_on_the_whole_volume() -> None:
    x = np.random.default_rng(1).normal(size=(2, 30, 20, 16)).astype(np.float32)
    start, step, size, fill = [0.3, -1.0, 0.0], [3.0, 0.7, 2.2], [10, 30, 8], [-1.0, 0.5]
    ref = np.stack([
        ndimage.gaussian_filter(x[c], antialias_sigma(step), mode="constant", cval=fill[c])
        for c in range(2)
    ])  # fmt: skip
    expected = resample_linear(ref, start, step, size, fill=fill)
    got = resample_linear(x, start, step, size, fill=fill, antialias=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got - resample_linear(x, start, step, size, fill=fill)).max() > 0.1


def test_checkerboard_downsampled_by_4_is_flat_with_the_prefilter() -> None:
    i = np.indices((48, 48, 48)).sum(axis=0)
    board = np.where(i % 2 == 0, 1.0, -1.0)[None].astype(np.float32)  # the finest pattern, mean 0
    plain = _down4(board, antialias=False)
    smooth = _down4(board, antialias=True)
    inner = (slice(2, -2),) * 3  # away from the edges, where the fill meets the pattern
    # without the prefilter every sample lands on a +1 square: the pattern aliases to a constant 1
    np.testing.assert_allclose(plain[inner], 1.0)
    # with it the output is the pattern's mean, 0, everywhere
    assert np.abs(smooth[inner]).max() < 1e-3 and smooth[inner].std() < 1e-3


def test_stripes_alias_without_the_prefilter() -> None:
    x = np.arange(60, dtype=np.float64)
    stripes = np.cos(2 * np.pi * x / 3.0)  # period 3 voxels: beyond the Nyquist limit of step 4
    vol = np.broadcast_to(stripes[:, None, None], (60, 12, 12))[None].astype(np.float32)
    plain = _down4(vol, antialias=False)[2:-2, 2, 2]
    smooth = _down4(vol, antialias=True)[2:-2, 2, 2]
    assert plain.std() > 0.5  # a false pattern of period 12 voxels (3 samples)
    assert smooth.std() < 0.02 and np.abs(smooth).max() < 0.02


def test_smooth_image_keeps_its_values() -> None:
    r2 = sum((c - 31.5) ** 2 for c in np.indices((64, 64, 64), dtype=np.float64))
    blob = np.exp(-r2 / (2 * 12.0**2))[None].astype(np.float32)  # Gaussian of sd 12 voxels
    plain = _down4(blob, antialias=False, start=1.5)
    smooth = _down4(blob, antialias=True, start=1.5)
    assert plain.max() > 0.95
    assert np.abs(smooth - plain).max() < 0.03  # (12 / sqrt(12^2 + 1.5^2))^3 = 0.977 at the peak


def test_upsampling_is_unchanged(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(2, 6, 7, 8)).astype(np.float32)
    grid = ([0.2, 0.0, -0.5], [0.5, 1.0, 0.75], [10, 7, 11])
    np.testing.assert_array_equal(
        resample_linear(x, *grid, fill=-1.0, antialias=True), resample_linear(x, *grid, fill=-1.0)
    )
    record = _one(Synth.case(tmp_path, "BraTS-GLI-00001-000"))
    on = prepare_case(record, (32, 32, 32))  # the synthetic brain is ~23 voxels wide: upsampled
    assert max(on.geometry["step"]) < 1.0
    off = prepare_case(record, (32, 32, 32), PrepOptions(antialias=False))
    np.testing.assert_array_equal(on.image, off.image)
    np.testing.assert_array_equal(on.mask, off.mask)


def test_downsampled_case_keeps_the_store_contract(tmp_path: Path) -> None:
    record = _one(Synth.case(tmp_path, "BraTS-GLI-00001-000"))
    on = prepare_case(record, (8, 8, 8))
    off = prepare_case(record, (8, 8, 8), PrepOptions(antialias=False))
    assert min(on.geometry["step"]) > 1.0
    brain = off.image[0] > -1.0
    diff = np.abs(on.image.astype(np.float32) - off.image.astype(np.float32))
    assert 0.0 < diff[:, brain].mean() < 0.2  # smoothed, not a different image
    np.testing.assert_array_equal(on.image[:, ~brain], -1.0)  # the brain and background are kept
    assert on.image.min() >= -1.0 and on.image.max() <= 1.0
    np.testing.assert_array_equal(on.mask, off.mask)  # masks stay nearest neighbour


@pytest.fixture(scope="module")
def hgg_phantom(tmp_path_factory: pytest.TempPathFactory) -> tuple[CaseRecord, np.ndarray]:
    """A phantom HGG case on disk (necrosis, enhancing rim, edema; 2 mm voxels) and its mask."""
    phantom = make_case("GLI", 0, seed=0)
    return _one(write_case(phantom, tmp_path_factory.mktemp("phantom"))), phantom.seg


@pytest.mark.parametrize("size", [32, 64])
def test_phantom_label_volumes(hgg_phantom: tuple[CaseRecord, np.ndarray], size: int) -> None:
    record, seg = hgg_phantom
    prepared = prepare_case(record, (size,) * 3)
    voxel_ml = prepared.geometry["spacing_mm"] ** 3 / 1000.0
    for label in (1, 2, 3):
        exact = float((seg == label).sum()) * 8.0 / 1000.0
        stored = float((prepared.mask == label).sum()) * voxel_ml
        assert exact > 5.0
        assert stored == pytest.approx(exact, rel=0.08), label  # measured: within 5%


def test_meta_records_the_option_and_old_stores_rebuild(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for k in (1, 2):
        Synth.case(src, f"BraTS-GLI-0000{k}-000", seed=k)
    out = tmp_path / "store"
    build_store([src], out, size=16, progress=False, qc_cases=0)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["preprocessing"]["antialias"] is True
    assert meta["preprocessing"]["resampling"]["masks"] == "nearest"
    assert meta["preprocessing"]["resampling"]["images"].startswith("linear, after a Gaussian")
    assert meta["options"]["resampling"] == PrepOptions().resampling()
    cases = find_cases([src])
    assert input_fingerprint(cases, None, meta["options"]) == meta["input_fingerprint"]
    # a store from before the option: its options had no "resampling", so its fingerprint differs
    old = {k: v for k, v in meta["options"].items() if k != "resampling"}
    meta["options"], meta["input_fingerprint"] = old, input_fingerprint(cases, None, old)
    (out / "meta.json").write_text(json.dumps(meta))
    build_store([src], out, size=16, progress=False, qc_cases=0)
    rebuilt = json.loads((out / "meta.json").read_text())
    assert rebuilt["options"]["resampling"] == PrepOptions().resampling()
    # and one without anti-aliasing is recorded as such
    assert PrepOptions(antialias=False).resampling() == {"images": "linear", "masks": "nearest"}
    assert PrepOptions(antialias=False).to_dict()["antialias"] is False
    assert not PrepOptions(antialias=False).is_default
