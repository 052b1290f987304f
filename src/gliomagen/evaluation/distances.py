"""Distances between two sets of feature vectors: Frechet distance, KID, precision/recall/density/coverage.

All functions take feature matrices ``[N, F]`` (one row per case) from any extractor in
:mod:`gliomagen.evaluation.features`, so the feature network is swappable (as in MONAI's
``FIDMetric``).

* Frechet distance (Heusel et al. 2017): ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``. The trace of
  the matrix square root is computed as ``sum(sqrt(eig(S1^(1/2) S2 S1^(1/2))))`` with symmetric
  eigen-decompositions (``scipy.linalg.eigh``): it is the same number as ``Tr(sqrtm(S1 S2))`` (the
  two matrices are similar) but stays exact to round-off where ``sqrtm`` of the non-symmetric
  product loses digits, so the distance of a set to itself is 0 to ~1e-12.
* KID (Binkowski et al. 2018): the unbiased estimator of the squared MMD with the cubic polynomial
  kernel ``k(x, y) = (x.y / F + 1)^3``, averaged over random subsets (as in StyleGAN2-ADA).
* Precision/recall (Kynkaanniemi et al. 2019) and density/coverage (Naeem et al. 2020) with k-NN
  balls around real (and generated) feature vectors.
* :func:`bootstrap_ci`: percentile intervals by resampling both sets with replacement.

Example:
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(50, 4))
    >>> round(frechet_distance(a, a), 9)
    0.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import scipy.spatial.distance

from gliomagen.errors import GliomagenError


def _as_features(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise GliomagenError(f"{name}: expected a feature matrix [N, F], got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise GliomagenError(f"{name}: features contain NaN or infinite values")
    return arr


def feature_stats(feats: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[F]`` and unbiased covariance ``[F, F]`` of a feature matrix ``[N, F]`` (N >= 2)."""
    x = _as_features(feats, "features")
    if x.shape[0] < 2:
        raise GliomagenError(f"features: need at least 2 cases for a covariance, got {x.shape[0]}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = scipy.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet distance between the Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Args:
        mu1: mean ``[F]``.
        sigma1: covariance ``[F, F]`` (symmetric positive semi-definite).
        mu2: mean ``[F]``.
        sigma2: covariance ``[F, F]``.

    Returns:
        The distance (>= 0; tiny negative round-off is clipped to 0).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise GliomagenError(
            f"Frechet distance: mismatched statistics mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}"
        )
    s1 = (s1 + s1.T) / 2  # [F, F]
    s2 = (s2 + s2.T) / 2
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1  # similar to S1 S2, symmetric PSD
    eig = scipy.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(value, 0.0)


def frechet_distance(feats1: Any, feats2: Any) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``[N1, F]`` and ``[N2, F]``."""
    a, b = _as_features(feats1, "first feature set"), _as_features(feats2, "second feature set")
    if a.shape[1] != b.shape[1]:
        raise GliomagenError(f"Frechet distance: feature sizes differ ({a.shape[1]} vs {b.shape[1]})")
    return frechet_distance_from_stats(*feature_stats(a), *feature_stats(b))


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD between ``x [m, F]`` and ``y [n, F]`` with the cubic polynomial kernel."""
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise GliomagenError(f"KID: need at least 2 cases in each set, got {m} and {n}")
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    term_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    term_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(term_x + term_y - 2.0 * kxy.mean())


def kernel_inception_distance(
    feats1: Any,
    feats2: Any,
    *,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: unbiased squared MMD (cubic polynomial kernel) averaged over random subsets.

    Each subset draws ``m = min(N1, N2, max_subset_size)`` cases from each set without
    replacement. With ``m`` equal to both set sizes every subset is the whole sets and the value
    is the plain unbiased estimator.

    Args:
        feats1: ``[N1, F]``.
        feats2: ``[N2, F]``.
        num_subsets: number of subsets averaged.
        max_subset_size: largest subset size.
        seed: seed of the subset draws.

    Returns:
        ``(mean, std)`` over subsets.
    """
    a, b = _as_features(feats1, "first feature set"), _as_features(feats2, "second feature set")
    if a.shape[1] != b.shape[1]:
        raise GliomagenError(f"KID: feature sizes differ ({a.shape[1]} vs {b.shape[1]})")
    m = min(a.shape[0], b.shape[0], max_subset_size)
    if m < 2:
        raise GliomagenError(f"KID: need at least 2 cases in each set, got {a.shape[0]} and {b.shape[0]}")
    if m == a.shape[0] == b.shape[0]:
        value = mmd2_unbiased(a, b)
        return value, 0.0
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            mmd2_unbiased(a[rng.choice(a.shape[0], m, replace=False)], b[rng.choice(b.shape[0], m, replace=False)])
            for _ in range(num_subsets)
        ]
    )
    return float(values.mean()), float(values.std())


def _kth_neighbour_radius(feats: np.ndarray, k: int) -> np.ndarray:
    dist = scipy.spatial.distance.cdist(feats, feats)  # [N, N]
    return np.partition(dist, k, axis=1)[:, k]  # index 0 is the point itself


def prdc(real: Any, fake: Any, *, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` with respect to ``real`` (k-NN manifolds).

    Args:
        real: real features ``[R, F]``.
        fake: generated features ``[G, F]``.
        k: neighbourhood size (reduced to ``min(k, R - 1, G - 1)`` for tiny sets).

    Returns:
        ``{"precision", "recall", "density", "coverage", "k"}``.
    """
    r, f = _as_features(real, "real features"), _as_features(fake, "generated features")
    if r.shape[1] != f.shape[1]:
        raise GliomagenError(f"PRDC: feature sizes differ ({r.shape[1]} vs {f.shape[1]})")
    k = min(k, r.shape[0] - 1, f.shape[0] - 1)
    if k < 1:
        raise GliomagenError(f"PRDC: need at least 2 cases in each set, got {r.shape[0]} and {f.shape[0]}")
    r_radius = _kth_neighbour_radius(r, k)  # [R]
    f_radius = _kth_neighbour_radius(f, k)  # [G]
    d_rf = scipy.spatial.distance.cdist(r, f)  # [R, G]
    inside_real = d_rf < r_radius[:, None]  # fake j inside the ball of real i
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d_rf < f_radius[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d_rf.min(axis=1) < r_radius).mean()),
        "k": float(k),
    }


def bootstrap_ci(
    statistic: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    a: np.ndarray,
    b: np.ndarray,
    *,
    n_boot: int,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of every value a statistic of two sets returns.

    Args:
        statistic: ``f(a, b) -> {name: value}``.
        a: first set ``[N1, F]``, resampled with replacement.
        b: second set ``[N2, F]``, resampled with replacement.
        n_boot: number of resamples (0 gives no intervals).
        seed: seed of the resampling.
        level: coverage of the interval.

    Returns:
        ``{name: [low, high]}`` (empty when ``n_boot`` is 0).
    """
    if n_boot <= 0:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        ia = rng.integers(0, len(a), len(a))
        ib = rng.integers(0, len(b), len(b))
        for key, value in statistic(a[ia], b[ib]).items():
            draws.setdefault(key, []).append(value)
    tail = (1.0 - level) / 2 * 100
    return {
        key: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] for key, v in draws.items()
    }


def distance_summary(
    real: Any,
    fake: Any,
    *,
    n_boot: int = 100,
    seed: int = 0,
    k: int = 5,
    kid_subsets: int = 100,
) -> dict[str, Any]:
    """FD, KID and PRDC of ``fake`` against ``real``, each with a bootstrap interval.

    Args:
        real: reference features ``[R, F]`` (held-out real cases).
        fake: compared features ``[G, F]`` (synthetic cases, or the training split for the floor).
        n_boot: bootstrap resamples for the intervals.
        seed: seed of KID subsets and bootstrap draws.
        k: neighbourhood size of PRDC.
        kid_subsets: KID subsets.

    Returns:
        ``{"n_real", "n_fake", "fd": {"value", "ci"}, "kid": {"value", "std", "ci"},
        "precision": {...}, "recall": {...}, "density": {...}, "coverage": {...}}``.
    """
    r, f = _as_features(real, "real features"), _as_features(fake, "generated features")

    def stat(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        out = {
            "fd": frechet_distance(x, y),
            "kid": kernel_inception_distance(x, y, num_subsets=max(1, kid_subsets // 10), seed=seed)[0],
        }
        out.update({key: val for key, val in prdc(x, y, k=k).items() if key != "k"})
        return out

    kid_mean, kid_std = kernel_inception_distance(r, f, num_subsets=kid_subsets, seed=seed)
    values: dict[str, float] = {"fd": frechet_distance(r, f), "kid": kid_mean}
    pr = prdc(r, f, k=k)
    values.update({key: val for key, val in pr.items() if key != "k"})
    cis = bootstrap_ci(stat, r, f, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {"n_real": int(r.shape[0]), "n_fake": int(f.shape[0]), "k": int(pr["k"])}
    for key, val in values.items():
        out[key] = {"value": val, "ci": cis.get(key)}
    out["kid"]["std"] = kid_std
    return out
