"""Optional restoration in ``prepare``: N4 bias-field correction and non-local means denoising."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from synth_brats import Synth

from gliomagen.data.restoration import (
    DenoiseOptions,
    N4Options,
    denoise_nlm,
    estimate_noise_sigma,
    n4_correct,
    restore,
)
from gliomagen.data.store import build_store
from gliomagen.errors import GliomagenError

SIZE = (32, 24, 16)


def _ellipsoid(shape: tuple[int, int, int], radii: tuple[float, float, float]) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    return (
        sum(((g - (s - 1) / 2) / r) ** 2 for g, s, r in zip(grids, shape, radii, strict=True))
        <= 1.0
    )


def _cv(x: np.ndarray, where: np.ndarray) -> float:
    return float(x[where].std() / x[where].mean())


# -- N4 ------------------------------------------------------------------------------------------
def test_n4_removes_a_multiplicative_bias_field() -> None:
    rng = np.random.default_rng(0)
    shape = (40, 44, 36)
    brain = _ellipsoid(shape, (17, 19, 15))
    x, y, z = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
    log_bias = 0.3 * (x - 19.5) / 17 + 0.15 * ((y - 21.5) / 19) ** 2 - 0.1 * (z - 17.5) / 15
    img = np.where(brain, 100.0 * np.exp(log_bias) + rng.normal(0, 2, shape), 0.0).astype(
        np.float32
    )
    for spacing in [(1.0, 1.0, 1.0), (1.0, 1.2, 2.0)]:
        out, fitted = n4_correct(img, brain, spacing, N4Options(shrink=4))
        # a uniform tissue: coefficient of variation 0.145 before, measured 0.026 after
        assert _cv(img, brain) > 0.14 and _cv(out, brain) < 0.04
        assert np.corrcoef(fitted[brain], log_bias[brain])[0, 1] > 0.98  # the field itself
        assert np.array_equal(out[~brain], img[~brain]) and np.all(fitted[~brain] == 0)


def test_n4_options_are_checked() -> None:
    with pytest.raises(GliomagenError, match=r"^--n4-shrink 0: must be 1\.\.16$"):
        N4Options(shrink=0)
    with pytest.raises(GliomagenError, match="too few"):
        n4_correct(np.zeros((8, 8, 8), np.float32), np.ones((8, 8, 8), bool), (1, 1, 1))
    assert N4Options().to_dict() == {"method": "N4 (SimpleITK)", "shrink": 4, "iterations": [50, 50, 50, 50], "control_points": 4}  # fmt: skip


# -- denoising -----------------------------------------------------------------------------------
def _blocks(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A piecewise-constant phantom (two halves and a cube), its noisy copy (sd 10) and its edges."""
    truth = np.full((32, 32, 32), 100.0)
    truth[16:] = 200.0
    truth[8:24, 8:24, 8:24] += 50.0
    noisy = (truth + np.random.default_rng(seed).normal(0, 10, truth.shape)).astype(np.float32)
    edge = np.zeros(truth.shape, bool)
    for axis in range(3):
        edge |= ndi.maximum_filter1d(truth, 2, axis=axis) != ndi.minimum_filter1d(
            truth, 2, axis=axis
        )
    return truth, noisy, edge


def test_noise_sigma_is_measured_inside_the_brain() -> None:
    _, noisy, _ = _blocks()
    assert estimate_noise_sigma(noisy, np.ones(noisy.shape, bool)) == pytest.approx(10.0, rel=0.05)
    rng = np.random.default_rng(1)
    sphere = _ellipsoid((32, 32, 32), (14, 14, 14))
    skull_stripped = np.where(sphere, 300.0 + rng.normal(0, 10, sphere.shape), 0.0)
    assert estimate_noise_sigma(skull_stripped, sphere) == pytest.approx(10.0, rel=0.05)
    # counting the flat background as well, half the coefficients are 0 and the estimate fails
    assert estimate_noise_sigma(skull_stripped, np.ones(sphere.shape, bool)) < 1.0


def test_denoise_reduces_noise_and_keeps_edges() -> None:
    truth, noisy, edge = _blocks()
    brain = np.ones(truth.shape, bool)
    out, sigma, h = denoise_nlm(noisy, brain, DenoiseOptions())
    assert sigma == pytest.approx(10.0, rel=0.05) and h == pytest.approx(0.8 * sigma)
    flat = ~ndi.binary_dilation(edge, iterations=2)

    def step(a: np.ndarray) -> float:  # across the x = 15 | 16 edge, away from the cube
        return float(a[16, :6].mean() - a[15, :6].mean())

    # measured: noise sd 10 -> 0.9 in flat regions; the 100-unit step stays 99.7
    assert (noisy - truth)[flat].std() > 9.5 and (out - truth)[flat].std() < 2.0
    assert step(out) == pytest.approx(100.0, abs=5.0)
    assert np.abs(out - truth)[edge].mean() < 0.5 * np.abs(noisy - truth)[edge].mean()
    # a Gaussian blur that passes the same noise bar (sigma 1.2 voxels: sd 1.3) flattens the step to 33
    blurred = ndi.gaussian_filter(noisy, 1.2)
    assert (blurred - truth)[flat].std() < 2.0 and step(blurred) < 40.0


def test_denoise_only_inside_the_brain() -> None:
    _, noisy, _ = _blocks()
    brain = _ellipsoid(noisy.shape, (12, 12, 12))
    out, info = restore(noisy, brain, (1, 1, 1), None, DenoiseOptions(patch_distance=2))
    assert np.array_equal(out[~brain], noisy[~brain]) and not np.array_equal(
        out[brain], noisy[brain]
    )
    assert set(info) == {"noise_sigma", "h"}
    with pytest.raises(GliomagenError, match=r"^--denoise-patch 4: must be odd, 3\.\.9$"):
        DenoiseOptions(patch_size=4)
    with pytest.raises(GliomagenError, match=r"^--denoise-distance 0: must be 1\.\.10$"):
        DenoiseOptions(patch_distance=0)


# -- in the store ----------------------------------------------------------------------------------
@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    s = Synth()
    for i in range(4):
        s.case(tmp_path / "src", f"BraTS-GLI-{i:05d}-000", seed=i)
    return tmp_path / "src"


def _meta(store: Path) -> dict:
    return json.loads((store / "meta.json").read_text())


def test_store_records_restoration_and_rebuilds_on_change(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = build_store([cohort], tmp_path / "P", size=SIZE, qc_cases=0)
    out = tmp_path / "S"
    n4 = N4Options(iterations=(10, 10))  # quick: this test is about the record, not the fit
    kw = {"size": SIZE, "qc_cases": 0, "bias_correction": n4, "denoise": True}
    build_store([cohort], out, **kw)  # type: ignore[arg-type]
    meta = _meta(out)
    prep = meta["preprocessing"]
    assert prep["bias_correction"] == {"method": "N4 (SimpleITK)", "shrink": 4, "iterations": [10, 10], "control_points": 4}  # fmt: skip
    assert (
        prep["denoise"]["method"].startswith("non-local means")
        and prep["denoise"]["strength"] == 0.8
    )
    assert prep["restoration_order"].startswith("N4, then non-local means")
    assert meta["options"]["preprocessing"]["denoise"]["patch_size"] == 3
    assert _meta(plain)["preprocessing"]["bias_correction"] is None
    intensity = json.loads(_intensity(out))
    assert intensity["t1n"]["noise_sigma"] > 0 and intensity["t1n"]["log_bias_sd"] > 0
    a, b = np.load(plain / "images.npy"), np.load(out / "images.npy")
    # the same background, up to a few voxels at its edge (a restored brain voxel can reach -1)
    assert ((a == -1) != (b == -1)).mean() < 1e-3
    assert np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() > 0.01
    capsys.readouterr()
    build_store([cohort], out, **kw)  # type: ignore[arg-type]
    assert "nothing to do" in capsys.readouterr().err
    build_store([cohort], out, **(kw | {"denoise": DenoiseOptions(strength=1.2)}))  # type: ignore[arg-type]
    assert "nothing to do" not in capsys.readouterr().err
    assert _meta(out)["preprocessing"]["denoise"]["strength"] == 1.2


def _intensity(store: Path) -> str:
    """The first case's ``intensity`` record in ``index.csv``."""
    with open(store / "index.csv", newline="") as fh:
        return next(csv.DictReader(fh))["intensity"]


def test_bias_correction_removes_the_stored_ramp(cohort: Path, tmp_path: Path) -> None:
    """The synthetic cases carry a linear intensity ramp (8 units per voxel along x on ~300)."""
    r2 = {}
    for n4 in (False, True):
        store = build_store([cohort], tmp_path / str(n4), size=SIZE, qc_cases=0, bias_correction=n4)
        t1n = np.load(store / "images.npy").astype(np.float32)[:, 0]  # [N, D, H, W]
        masks = np.load(store / "masks.npy")
        r2[n4] = []
        for img, mask in zip(t1n, masks, strict=True):
            inner = ndi.binary_erosion(img > -1, iterations=1) & (mask == 0)
            design = np.c_[np.argwhere(inner), np.ones(int(inner.sum()))]  # [K, 4]: x, y, z, 1
            v = img[inner]
            fit = design @ np.linalg.lstsq(design, v, rcond=None)[0]
            r2[n4].append(1.0 - float(((v - fit) ** 2).sum() / ((v - v.mean()) ** 2).sum()))
    # share of the normal tissue's variance explained by a linear ramp; measured 0.93-0.94 -> 0.03-0.22
    assert min(r2[False]) > 0.9 and max(r2[True]) < 0.3, r2
