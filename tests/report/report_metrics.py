"""A small hand-made ``metrics.json`` dict for the report tests (no evaluation needed)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _ci(value: float) -> dict[str, Any]:
    return {"value": value, "ci": [0.8 * value, 1.2 * value]}


def _dist(n: int, kid: float) -> dict[str, Any]:
    entry = {m: _ci(0.5) for m in ("precision", "recall", "density", "coverage")}
    return {"n_real": n, "n_synthetic": n,
            "synthetic": {"fd": _ci(12.0), "kid": _ci(kid), **entry},
            "floor": {"fd": _ci(8.0), "kid": _ci(0.001), **entry}}  # fmt: skip


def metrics(n: int = 20, kid: float = 0.0042) -> dict[str, Any]:
    """Distances, diversity, memorisation, masks, intensity and curves with ``n`` cases per set."""
    rng = np.random.default_rng(0)
    v = rng.normal(10, 2, n)
    q25, median, q75 = np.percentile(v, [25, 50, 75]).tolist()
    values = {"values": v.tolist(), "median": median, "q25": q25, "q75": q75, "n": n}
    grid = np.linspace(-1, 1, 32).tolist()
    dens = {"T1": {"0": grid, "1": grid}, "FLAIR": {"0": grid, "1": None}}
    cases = [{"case_id": f"SYN{i}", "labels": {"grade": 4}, "nearest_by_ssim": "TRAIN0", "ssim": 0.5,
              "nearest_by_feature": "TRAIN1", "feature_distance": 3.0, "flagged": False,
              "flag_ssim": False, "flag_feature": False} for i in range(n)]  # fmt: skip
    near = {
        "ssim": rng.uniform(0, 1, n).tolist(),
        "feature_distance": rng.uniform(1, 5, n).tolist(),
    }
    return {
        "format_version": 1,
        "distances": {"all": _dist(n, kid), "grade=4": _dist(n, kid)},
        "diversity": {"all": {"synthetic": {"mean": 0.4, "ci": [0.3, 0.5], "n_pairs": 10},
                              "real": {"mean": 0.35, "ci": [0.3, 0.4], "n_pairs": 10}}},
        "memorisation": {"percentile": 5.0, "threshold": {"ssim": 0.9, "feature_distance": 1.5},
                         "expected_fraction": 0.0, "n_flagged": 0, "fraction_flagged": 0.0,
                         "by_condition": {"all": {"n": n, "n_flagged": 0}}, "cases": cases,
                         "heldout": near, "synthetic": near},
        "masks": {"all": {q: {"real": values, "synthetic": values, "ks": 0.1, "ks_p": 0.5, "wasserstein": 0.3}
                          for q in ("wt_volume_ml", "enhancing_fraction")}},
        "intensity": {"all": {"bin_centres": grid, "tissues": ["0", "1"], "real": dens,
                              "synthetic": dens, "w1": {"T1": {"0": 0.1, "1": 0.2}}}},
        "curves": {"run": "RUN", "series": {"loss/G": {"step": [0, 1, 2], "value": [3.0, 2.0, 1.0]}}},
    }  # fmt: skip
