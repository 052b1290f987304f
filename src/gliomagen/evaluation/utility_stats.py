"""Statistics of the downstream benchmark: intervals over cases, paired tests, convergence.

A figure of an arm is a table ``[n_seeds, n_cases]`` (one value per seed and test case, e.g. a
case's mean region Dice). Its point estimate is the mean over seeds of the per-seed mean over
cases (= the mean over cases of the per-case seed mean: every seed scores the same cases).

- spread over seeds: the standard deviation of the per-seed means (ddof=1; 0 for one seed);
- 95% interval over cases: a percentile bootstrap of the mean over cases of the seed-averaged
  per-case values (resampling cases with replacement, ``n_boot`` resamples, seeded), i.e. how much
  the figure would move with another test set of the same size;
- paired comparison of arm A with arm B: per case the difference averaged over seeds,
  ``d_c = mean_s (A[s, c] - B[s, c])``, so the pairs are independent cases; its mean, a bootstrap
  interval of that mean, and the two-sided Wilcoxon signed-rank p-value over the ``d_c`` (scipy).

numpy's vectorised resampling is written here by hand (a few lines) because scipy's ``bootstrap``
resamples a generic statistic per resample and is much slower for thousands of small means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

N_BOOT = 2000
"""Bootstrap resamples of every interval."""

LEVEL = 0.95
"""Coverage of every interval."""


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (cases resampled with replacement).

    Example:
        >>> lo, hi = bootstrap_ci(np.arange(100.0))
        >>> lo < 49.5 < hi
        True
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(int(n_boot), v.size))].mean(axis=1)  # [n_boot]
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return float(lo), float(hi)


def summarise(table: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Mean, spread over seeds and interval over cases of a ``[n_seeds, n_cases]`` table."""
    t = np.asarray(table, dtype=np.float64)
    per_seed = t.mean(axis=1)  # [n_seeds]
    lo, hi = bootstrap_ci(t.mean(axis=0), n_boot, seed)
    return {
        "mean": float(per_seed.mean()),
        "std_seeds": float(per_seed.std(ddof=1)) if per_seed.size > 1 else 0.0,
        "ci_low": lo,
        "ci_high": hi,
        "per_seed": [float(x) for x in per_seed],
        "n_seeds": int(t.shape[0]),
        "n_cases": int(t.shape[1]),
    }


def paired(a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Arm ``a`` minus arm ``b`` (tables ``[n_seeds, n_cases]`` over the same seeds and cases).

    All-zero differences give p = 1.0 (scipy refuses them: nothing differs).
    """
    d = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean(axis=0)  # [n_cases]
    if d.size == 0:
        return {"mean_diff": None, "ci_low": None, "ci_high": None, "p_value": None,
                "n_cases": 0, "n_seeds": int(np.shape(a)[0]), "n_positive": 0, "n_negative": 0}  # fmt: skip
    p = 1.0 if not np.any(d != 0) else float(wilcoxon(d, alternative="two-sided").pvalue)
    lo, hi = bootstrap_ci(d, n_boot, seed)
    return {
        "mean_diff": float(d.mean()),
        "median_diff": float(np.median(d)),
        "ci_low": lo,
        "ci_high": hi,
        "p_value": p,
        "n_cases": int(d.size),
        "n_seeds": int(np.shape(a)[0]),
        "n_positive": int((d > 0).sum()),
        "n_negative": int((d < 0).sum()),
    }


def convergence(
    curves: Mapping[Any, Mapping[str, Sequence[float]]], steps: int, tol: float = 0.01
) -> dict[str, Any]:
    """Has an arm's val Dice stopped improving? Over the last third of the steps, how much did
    the best val score so far (mean over seeds of each seed's curve) still rise?

    Args:
        curves: per seed ``{"step": [...], "val_dice": [...]}`` (the same steps for every seed).
        steps: the run's optimisation steps.
        tol: converged when the rise is below this (1 Dice point = 0.01).

    Returns:
        ``{"gain_last_third", "converged", "tol", "from_step", "curve": {"step", "val_dice"}}``
        (``converged`` is ``None`` without a curve).
    """
    seqs = [c for c in curves.values() if c.get("step")]
    if not seqs:
        return {"gain_last_third": None, "converged": None, "tol": tol, "from_step": None, "curve": None}
    step = np.asarray(seqs[0]["step"], dtype=np.int64)
    val = np.mean([np.asarray(c["val_dice"], dtype=np.float64) for c in seqs], axis=0)  # [n_evals]
    cut = int(np.floor(2 * steps / 3))
    before = val[step <= cut]
    gain = float(val.max() - (before.max() if before.size else val[0]))
    return {
        "gain_last_third": gain,
        "converged": bool(gain < tol),
        "tol": tol,
        "from_step": cut,
        "curve": {"step": [int(s) for s in step], "val_dice": [float(v) for v in val]},
    }
