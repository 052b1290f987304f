"""FD, KID and PRDC maths: exact cases, agreement with scipy/MONAI, unbiasedness, intervals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.distances import (
    distance_summary,
    feature_stats,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_inception_distance,
    mmd2_unbiased,
    prdc,
)


def _scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook computation (pytorch-fid / MONAI): scipy.linalg.sqrtm of the covariance product."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize(("n", "d"), [(40, 8), (200, 64), (30, 100)])
def test_fd_of_a_set_with_itself_is_zero(n: int, d: int) -> None:
    feats = np.random.default_rng(n + d).normal(size=(n, d)) * np.linspace(0.1, 10, d)
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    mu, sigma = feature_stats(feats)
    assert frechet_distance_from_stats(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("n1", "n2", "d"), [(60, 50, 6), (120, 90, 32), (25, 30, 80)])
def test_fd_agrees_with_scipy_sqrtm_and_monai(n1: int, n2: int, d: int) -> None:
    from monai.metrics.fid import get_fid_score

    rng = np.random.default_rng(d)
    a = rng.normal(size=(n1, d))
    b = rng.normal(0.4, 1.3, size=(n2, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
    ref = _scipy_fd(a, b)
    assert ref > 1.0
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance_from_stats(*feature_stats(a), *feature_stats(b)) == pytest.approx(
        ref, rel=1e-6
    )
    assert frechet_distance(a, b) == pytest.approx(
        float(get_fid_score(torch.tensor(b), torch.tensor(a))), rel=1e-6
    )


def test_fd_of_known_gaussians() -> None:
    # diagonal covariances: FD = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 1.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, abs=1e-12)


def test_fd_rejects_bad_features() -> None:
    with pytest.raises(GliomagenError, match="feature sizes differ"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    bad = np.ones((5, 3))
    bad[0, 0] = np.nan
    with pytest.raises(GliomagenError, match="NaN"):
        frechet_distance(bad, np.ones((5, 3)))
    with pytest.raises(GliomagenError, match="at least 2"):
        frechet_distance(np.ones((1, 3)), np.ones((5, 3)))


def _kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def test_kid_matches_the_definition_on_small_sets() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 3)), rng.normal(1.0, 1.0, size=(4, 3))
    kxx = [
        _kernel(x[i : i + 1], x[j : j + 1])[0, 0] for i, j in itertools.permutations(range(5), 2)
    ]
    kyy = [
        _kernel(y[i : i + 1], y[j : j + 1])[0, 0] for i, j in itertools.permutations(range(4), 2)
    ]
    kxy = _kernel(x, y)
    expected = np.mean(kxx) + np.mean(kyy) - 2 * kxy.mean()
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)


def test_kid_is_unbiased_on_a_known_case() -> None:
    # P, Q: uniform on 3 points each; the population MMD^2 is exact (expectations over all pairs,
    # independent draws include i == j). Averaged over many small samples the unbiased estimate
    # converges to it, while the plug-in (V-statistic) estimate stays far off.
    pa = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pb = np.array([[1.5, 0.5], [0.5, 0.0], [2.0, 1.0]])
    population = _kernel(pa, pa).mean() + _kernel(pb, pb).mean() - 2 * _kernel(pa, pb).mean()
    rng = np.random.default_rng(0)
    unbiased, plugin = [], []
    for _ in range(4000):
        x, y = pa[rng.integers(0, 3, 4)], pb[rng.integers(0, 3, 4)]
        unbiased.append(kernel_inception_distance(x, y)[0])
        plugin.append(_kernel(x, x).mean() + _kernel(y, y).mean() - 2 * _kernel(x, y).mean())
    se = np.std(unbiased) / np.sqrt(len(unbiased))
    assert abs(np.mean(unbiased) - population) < 4 * se
    assert abs(np.mean(plugin) - population) > 10 * se
    # same distribution: the unbiased estimate averages to 0
    same = [
        kernel_inception_distance(pa[rng.integers(0, 3, 4)], pa[rng.integers(0, 3, 4)])[0]
        for _ in range(4000)
    ]
    assert abs(np.mean(same)) < 4 * np.std(same) / np.sqrt(len(same))


def test_kid_subsets_average_the_unbiased_estimator() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 4)), rng.normal(0.5, 1.0, size=(30, 4))
    mean, std = kernel_inception_distance(x, y, num_subsets=50, max_subset_size=10, seed=3)
    again = kernel_inception_distance(x, y, num_subsets=50, max_subset_size=10, seed=3)
    assert (mean, std) == again and std > 0
    assert mean == pytest.approx(mmd2_unbiased(x, y), abs=4 * std / np.sqrt(50) + 0.05)


def test_prdc_extremes_and_known_values() -> None:
    rng = np.random.default_rng(3)
    real = rng.normal(size=(50, 5))
    same = prdc(real, real.copy(), k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(real, real + 100.0, k=5)
    assert far["precision"] == far["recall"] == far["coverage"] == far["density"] == 0.0
    # 1D, k=1: real {0, 1, 2} -> radii {1, 1, 1}; fake {0.5, 10}: 0.5 lies in the balls of 0 and 1
    r, f = np.array([[0.0], [1.0], [2.0]]), np.array([[0.5], [10.0]])
    out = prdc(r, f, k=1)
    assert out["precision"] == 0.5
    assert out["density"] == pytest.approx((2 + 0) / 2)
    assert out["coverage"] == pytest.approx(2 / 3)
    assert out["recall"] == 1.0  # the fake radius is 9.5: every real point lies in the ball of 0.5


def test_distance_summary_intervals_bracket_the_estimates() -> None:
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(60, 8)), rng.normal(0.3, 1.0, size=(50, 8))
    out = distance_summary(real, fake, n_boot=60, seed=0)
    assert out["n_real"] == 60 and out["n_fake"] == 50
    for key in ("fd", "kid", "precision", "recall", "density", "coverage"):
        lo, hi = out[key]["ci"]
        assert lo <= out[key]["value"] <= hi, key
    assert out["fd"]["value"] == pytest.approx(frechet_distance(real, fake))
    none = distance_summary(real, fake, n_boot=0)
    assert none["fd"]["ci"] is None and none["fd"]["value"] == out["fd"]["value"]
