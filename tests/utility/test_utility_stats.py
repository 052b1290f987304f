"""The benchmark's statistics: bootstrap intervals over cases, paired tests, convergence."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wilcoxon

from gliomagen.evaluation import utility_stats as st


def test_bootstrap_ci_contains_the_mean_and_shrinks_with_more_cases() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(0.6, 0.1, 16)
    large = rng.normal(0.6, 0.1, 256)
    lo_s, hi_s = st.bootstrap_ci(small)
    lo_l, hi_l = st.bootstrap_ci(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    # width ~ 2 * 1.96 * sd / sqrt(n): 16x the cases -> about a quarter of the width
    assert (hi_l - lo_l) == pytest.approx((hi_s - lo_s) / 4, rel=0.35)
    assert (hi_s - lo_s) == pytest.approx(2 * 1.96 * small.std(ddof=1) / 4, rel=0.2)
    assert st.bootstrap_ci(small) == st.bootstrap_ci(small)  # seeded
    assert st.bootstrap_ci(np.full(10, 0.3)) == pytest.approx((0.3, 0.3))


def test_summarise_is_mean_of_seed_means_with_their_spread() -> None:
    table = np.array([[0.5, 0.7, 0.6], [0.4, 0.8, 0.9]])  # [seeds, cases]
    s = st.summarise(table, n_boot=500)
    assert s["per_seed"] == pytest.approx([0.6, 0.7])
    assert s["mean"] == pytest.approx(0.65)
    assert s["std_seeds"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
    assert s["ci_low"] <= s["mean"] <= s["ci_high"]
    assert (s["n_seeds"], s["n_cases"]) == (2, 3)
    assert st.summarise(table[:1])["std_seeds"] == 0.0


def test_paired_difference_averages_seeds_per_case_then_tests_over_cases() -> None:
    # 6 cases, every case better in A by a distinct amount: the exact two-sided Wilcoxon p is
    # 2 / 2^6 = 0.03125 (all signs positive is one of 64 equally likely sign patterns, x2 sides)
    base = np.array([[0.5, 0.6, 0.4, 0.7, 0.5, 0.3], [0.6, 0.5, 0.4, 0.6, 0.4, 0.3]])
    lift = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    a = base + lift  # the same lift under both seeds
    r = st.paired(a, base, n_boot=500)
    assert r["mean_diff"] == pytest.approx(lift.mean())
    assert r["p_value"] == pytest.approx(0.03125)
    assert (r["n_cases"], r["n_seeds"], r["n_positive"], r["n_negative"]) == (6, 2, 6, 0)
    assert r["ci_low"] <= r["mean_diff"] <= r["ci_high"] and r["ci_low"] > 0
    # seeds disagreeing on a case: its pair is the mean over seeds (+0.1 and -0.04 -> +0.03)
    a2 = base.copy()
    a2[0] += 0.1
    a2[1] -= 0.04
    r2 = st.paired(a2, base)
    assert r2["mean_diff"] == pytest.approx(0.03)
    assert r2["p_value"] == pytest.approx(wilcoxon((a2 - base).mean(axis=0)).pvalue)
    assert st.paired(base, base)["p_value"] == 1.0  # nothing differs


def test_paired_on_a_known_noisy_difference() -> None:
    rng = np.random.default_rng(1)
    b = rng.uniform(0.4, 0.8, (3, 60))
    a = b + 0.03 + rng.normal(0, 0.02, (3, 60))
    r = st.paired(a, b)
    assert r["mean_diff"] == pytest.approx(0.03, abs=0.005)
    assert r["p_value"] < 1e-6
    r0 = st.paired(b + rng.normal(0, 0.02, (3, 60)), b)
    assert r0["p_value"] > 0.01 and r0["ci_low"] < 0 < r0["ci_high"]


def test_convergence_looks_at_the_best_score_over_the_last_third() -> None:
    steps = list(range(0, 601, 50))
    flat = {"step": steps, "val_dice": [0.1, 0.4, 0.5, 0.55, 0.6, 0.6, 0.61, 0.6, 0.61, 0.605, 0.6, 0.6, 0.61]}
    rising = {"step": steps, "val_dice": [0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.52, 0.55, 0.57, 0.59, 0.6, 0.62]}
    c = st.convergence({0: flat, 1: flat}, steps=600)
    assert c["from_step"] == 400 and c["converged"] is True
    assert c["gain_last_third"] == pytest.approx(0.0)  # best so far at 400 was already 0.61
    r = st.convergence({0: rising}, steps=600)
    assert r["gain_last_third"] == pytest.approx(0.62 - 0.55) and r["converged"] is False
    mixed = st.convergence({0: flat, 1: rising}, steps=600)  # the curve is the mean over seeds
    assert mixed["curve"]["val_dice"][-1] == pytest.approx(0.615)
    assert st.convergence({0: {"step": [], "val_dice": []}}, steps=10)["converged"] is None


def test_the_best_real_data_arm_is_chosen_on_val_not_test() -> None:
    from gliomagen.evaluation.utility_report import best_real_arm

    def run(val: float, test: float) -> dict:
        return {"best_val": val, "per_case": {"c": {r: {"dice": test, "hd95": 0.0} for r in ("WT", "TC", "ET")}}}

    results = {
        "real": {0: run(0.1, 0.1)},
        "real+large": {0: run(0.6, 0.9), 1: run(0.6, 0.9)},  # better on test
        "large-then-real": {0: run(0.7, 0.2), 1: run(0.65, 0.2)},  # better on val
    }
    best = best_real_arm(results)
    assert best is not None and best["arm"] == "large-then-real" and best["chosen_on"] == "val"
    assert best["val_dice"] == pytest.approx({"real+large": 0.6, "large-then-real": 0.675})
    assert best_real_arm({"real": results["real"]}) is None
