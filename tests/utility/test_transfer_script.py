"""benchmarks/transfer.py: the three stores, the arms (fine-tune from the GLI model), the curves."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gliomagen.data.store import open_store

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "transfer.py"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("transfer_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_noise_level_is_the_high_pass_spread_inside_the_brain() -> None:
    rng = np.random.default_rng(0)
    smooth = np.full((1, 2, 16, 16, 16), 0.2, np.float32)
    smooth[:, :, :2] = -1.0  # background and the brain's edge, left out
    assert _module().noise_level(smooth) < 1e-3
    noisy = smooth + np.where(smooth > -1, rng.normal(0, 0.05, smooth.shape), 0).astype(np.float32)
    level = _module().noise_level(noisy)
    assert 0.035 < level < 0.05  # white noise loses a little to the sigma-1 smoothing it includes


@pytest.mark.slow
def test_quick_transfer_run(tmp_path: Path) -> None:
    out = tmp_path / "t"
    _module().main(["--quick", "--out", str(out), "--workers", "1"])
    work = out / "work"
    splits = {}
    for name in ("gli", "ssa", "joint"):
        ds = open_store(work / f"store-{name}")
        splits[name] = {c: r["split"] for c, r in zip(ds.case_ids, ds.index_rows, strict=True)}
    assert sorted(splits["gli"].values()) == ["train"] * 6 and all(
        "GLI" in c for c in splits["gli"]
    )
    ssa_train = sorted(c for c, s in splits["ssa"].items() if s == "train")
    ssa_test = sorted(c for c, s in splits["ssa"].items() if s == "test")
    assert len(ssa_train) == len(ssa_test) == 4 and not set(ssa_train) & set(ssa_test)
    assert splits["joint"] == {**splits["gli"], **splits["ssa"]}  # the same SSA split, GLI added
    with open(work / "ssa-order.csv", newline="") as fh:
        order = [r["case_id"] for r in csv.DictReader(fh)]
    assert sorted(order[:4]) == ssa_train and len(order) == len(set(order)) == 112
    res = json.loads((out / "transfer.json").read_text())
    for arm in ("scratch", "finetune", "joint"):
        curve = res["curves"][arm]
        assert [p["step"] for p in curve] == [2, 4]
        assert all(
            p["fd"] is not None and np.isfinite(p["fd"]) and p["minutes"] >= 0 for p in curve
        )
        assert all(p["parent"] == (arm == "finetune") for p in curve)
        assert all(0 <= p["faithful_HGG"] <= 1 for p in curve)
    ck = torch.load(
        sorted((work / "run-finetune" / "checkpoints").glob("step-*.pt"))[-1], weights_only=True
    )
    assert ck["parent"]["mapped"] == {"cohort=SSA": "cohort=GLI"}
    assert [c["name"] for c in res["checks"]] == [
        "finetune reaches scratch's final FD within a third of its minutes",
        "finetune's noise level within 10% of real SSA's",
    ]
