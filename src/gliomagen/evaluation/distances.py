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
* :func:`distance_summary`: all of them with bootstrap intervals (resampling both sets).

Example:
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(size=(50, 4))
    >>> round(frechet_distance(a, a), 9)
    0.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.spatial.distance
from threadpoolctl import threadpool_limits

from gliomagen.errors import GliomagenError


def _as_features(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise GliomagenError(
            f"{name}: expected a feature matrix [N, F], got shape {tuple(arr.shape)}"
        )
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
    """Frechet distance between Gaussians fitted to two feature sets ``[N1, F]`` and ``[N2, F]``.

    With centred features ``A [N1, F]`` and ``B [N2, F]``, ``S1 S2 = A^T A B^T B / c`` has the same
    non-zero eigenvalues as ``M M^T / c`` with ``M = A B^T [N1, N2]``, so ``Tr((S1 S2)^(1/2))`` is the
    sum of the singular values of ``M`` over ``sqrt(c)``, ``c = (N1 - 1)(N2 - 1)``: exact, and cheap
    when features outnumber cases (MedicalNet gives 2048 per modality).
    """
    a, b = _as_features(feats1, "first feature set"), _as_features(feats2, "second feature set")
    if a.shape[1] != b.shape[1]:
        raise GliomagenError(
            f"Frechet distance: feature sizes differ ({a.shape[1]} vs {b.shape[1]})"
        )
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise GliomagenError(
            f"Frechet distance: need at least 2 cases in each set, got {a.shape[0]} and {b.shape[0]}"
        )
    mu1, mu2 = a.mean(0), b.mean(0)
    ac, bc = a - mu1, b - mu2  # [N1, F], [N2, F]
    c1, c2 = a.shape[0] - 1, b.shape[0] - 1
    tr1, tr2 = float((ac * ac).sum() / c1), float((bc * bc).sum() / c2)
    if a.shape[1] <= min(a.shape[0], b.shape[0]):
        return frechet_distance_from_stats(mu1, ac.T @ ac / c1, mu2, bc.T @ bc / c2)
    tr_covmean = float(scipy.linalg.svdvals(ac @ bc.T).sum() / np.sqrt(c1 * c2))
    diff = mu1 - mu2
    return max(float(diff @ diff + tr1 + tr2 - 2.0 * tr_covmean), 0.0)


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
        raise GliomagenError(
            f"KID: need at least 2 cases in each set, got {a.shape[0]} and {b.shape[0]}"
        )
    if m == a.shape[0] == b.shape[0]:
        value = mmd2_unbiased(a, b)
        return value, 0.0
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            mmd2_unbiased(
                a[rng.choice(a.shape[0], m, replace=False)],
                b[rng.choice(b.shape[0], m, replace=False)],
            )
            for _ in range(num_subsets)
        ]
    )
    return float(values.mean()), float(values.std())


def _kth_neighbour_radius(dist: np.ndarray, k: int) -> np.ndarray:
    """k-th nearest-neighbour distance of each point from its square distance matrix (self excluded)."""
    return np.partition(dist, k, axis=1)[:, k]  # index 0 is the point itself


def _prdc_from_distances(
    d_rf: np.ndarray, r_radius: np.ndarray, f_radius: np.ndarray, k: int
) -> dict[str, float]:
    inside_real = d_rf < r_radius[:, None]  # [R, G]: fake j inside the ball of real i
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d_rf < f_radius[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d_rf.min(axis=1) < r_radius).mean()),
    }


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
        raise GliomagenError(
            f"PRDC: need at least 2 cases in each set, got {r.shape[0]} and {f.shape[0]}"
        )
    cdist = scipy.spatial.distance.cdist
    out: dict[str, float] = _prdc_from_distances(
        cdist(r, f), _kth_neighbour_radius(cdist(r, r), k), _kth_neighbour_radius(cdist(f, f), k), k
    )
    out["k"] = float(k)
    return out


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))


def distance_summary(
    real: Any,
    fake: Any,
    *,
    n_boot: int = 100,
    seed: int = 0,
    k: int = 5,
    kid_subsets: int = 100,
    level: float = 0.95,
) -> dict[str, Any]:
    """FD, KID and PRDC of ``fake`` against ``real``, each with a bootstrap interval.

    Both sets are resampled with replacement ``n_boot`` times. Repeated cases would bias the
    statistics, so each is resampled in a way that does not see the repeats:

    * KID: the unbiased MMD of a resample leaves out the pairs of copies of one case (a U-statistic
      over distinct originals), so it stays unbiased;
    * precision/recall/density/coverage: the k-NN radii are those of the full sets, only which
      balls and points take part is resampled;
    * FD: a resample has fewer distinct cases and FD's small-sample bias grows, so the percentile
      interval is shifted by the bootstrap median's offset from the estimate (bias-corrected
      percentile interval), and clipped at 0.

    Args:
        real: reference features ``[R, F]`` (held-out real cases).
        fake: compared features ``[G, F]`` (synthetic cases, or the training split for the floor).
        n_boot: bootstrap resamples for the intervals (0: no intervals).
        seed: seed of KID subsets and bootstrap draws.
        k: neighbourhood size of PRDC.
        kid_subsets: KID subsets of the point estimate.
        level: coverage of the intervals.

    Returns:
        ``{"n_real", "n_fake", "k", "fd": {"value", "ci"}, "kid": {"value", "std", "ci"},
        "precision": {...}, "recall": {...}, "density": {...}, "coverage": {...}}``
        (``ci`` is ``[low, high]`` or ``None``).
    """
    r, f = _as_features(real, "real features"), _as_features(fake, "generated features")
    if r.shape[1] != f.shape[1]:
        raise GliomagenError(f"feature sizes differ ({r.shape[1]} vs {f.shape[1]})")
    kid_mean, kid_std = kernel_inception_distance(r, f, num_subsets=kid_subsets, seed=seed)
    pr = prdc(r, f, k=k)
    kk = int(pr.pop("k"))
    values: dict[str, float] = {"fd": frechet_distance(r, f), "kid": kid_mean, **pr}
    cis: dict[str, list[float] | None] = dict.fromkeys(values)
    if n_boot > 0:
        cdist = scipy.spatial.distance.cdist
        d_rf = cdist(r, f)
        r_rad, f_rad = (
            _kth_neighbour_radius(cdist(r, r), kk),
            _kth_neighbour_radius(cdist(f, f), kk),
        )
        krr, kff, krf = _poly_kernel(r, r), _poly_kernel(f, f), _poly_kernel(r, f)
        rng = np.random.default_rng(seed)
        draws: dict[str, list[float]] = {key: [] for key in values}
        with threadpool_limits(1):
            for _ in range(n_boot):
                ia, ib = rng.integers(0, len(r), len(r)), rng.integers(0, len(f), len(f))
                draws["fd"].append(frechet_distance(r[ia], f[ib]))
                distinct_a = ia[:, None] != ia[None, :]
                distinct_b = ib[:, None] != ib[None, :]
                if distinct_a.any() and distinct_b.any():  # one repeated case has no pairs
                    kxx = krr[np.ix_(ia, ia)][distinct_a].mean()
                    kyy = kff[np.ix_(ib, ib)][distinct_b].mean()
                    draws["kid"].append(float(kxx + kyy - 2 * krf[np.ix_(ia, ib)].mean()))
                for key, val in _prdc_from_distances(
                    d_rf[np.ix_(ia, ib)], r_rad[ia], f_rad[ib], kk
                ).items():
                    draws[key].append(val)
        for key, d in draws.items():
            if not d:
                continue
            lo, hi = _percentiles(np.asarray(d), level)
            if key == "fd":
                shift = float(np.median(d)) - values["fd"]
                lo, hi = max(lo - shift, 0.0), max(hi - shift, 0.0)
            cis[key] = [lo, hi]
    out: dict[str, Any] = {"n_real": int(r.shape[0]), "n_fake": int(f.shape[0]), "k": kk}
    for key, val in values.items():
        out[key] = {"value": val, "ci": cis[key]}
    out["kid"]["std"] = kid_std
    return out
