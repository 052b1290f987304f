"""The benchmark end to end at 16^3: reproducible for a seed, consistent figures, the outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gliomagen.evaluation.segmentation import REGIONS
from gliomagen.evaluation.utility import format_table, run_utility

FAST = {"steps": 3, "batch_size": 2, "network": "unet", "init_filters": 4, "progress": False}


def _figures(report: dict) -> dict:
    """Every number of a report except the timings."""
    arms = {
        a: {s: {k: v for k, v in r.items() if k != "seconds"} for s, r in res["seeds"].items()}
        for a, res in report["arms"].items()
    }
    return {"arms": arms, "paired": report["paired_vs_real"], "realism": report["realism"]}


def test_two_runs_of_a_seed_give_identical_numbers(
    tiny_real: Path, tiny_synthetic: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    kw = dict(FAST, arms=["real", "real+synthetic"], seeds=(0,))
    a = run_utility(tiny_real, tiny_synthetic, "SSA", tmp_path / "a", **kw)
    b = run_utility(tiny_real, tiny_synthetic, "SSA", tmp_path / "b", **kw)
    assert _figures(a) == _figures(b)
    c = run_utility(tiny_real, tiny_synthetic, "SSA", tmp_path / "c", **dict(kw, seeds=(1,)))
    assert (
        a["arms"]["real"]["seeds"]["0"]["loss_first"]
        != c["arms"]["real"]["seeds"]["1"]["loss_first"]
    )


def test_report_is_consistent_and_written(
    tiny_real: Path, tiny_synthetic: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "out"
    rep = run_utility(tiny_real, tiny_synthetic, "SSA", out, seeds=(0, 1), mix_ratio=0.5, **FAST)
    assert list(rep["arms"]) == [
        "real",
        "real+large",
        "synthetic",
        "real+synthetic",
        "real+large+synthetic",
    ]
    assert rep["config"]["samples_per_run"] == 6
    assert rep["cases"]["heldout"] == ["SSA-004", "SSA-005"]
    for res in rep["arms"].values():
        for region in REGIONS:
            per_seed = [s["mean"][region]["dice"] for s in res["seeds"].values()]
            per_case = [
                np.mean([pc[region]["dice"] for pc in s["per_case"].values()])
                for s in res["seeds"].values()
            ]
            assert per_seed == pytest.approx(per_case)
            assert res["summary"][region]["dice_mean"] == pytest.approx(np.mean(per_seed))
            assert res["summary"][region]["dice_std"] == pytest.approx(np.std(per_seed, ddof=1))
            assert 0.0 <= res["summary"][region]["dice_mean"] <= 1.0
        assert set(res["seeds"]) == {"0", "1"}
    assert "real" not in rep["paired_vs_real"]
    assert rep["paired_vs_real"]["synthetic"]["WT"]["dice"]["n_pairs"] == 4  # 2 seeds x 2 cases
    # realism: the synthetic cases grouped by their grade (HGG: SYN-0, SYN-2; LGG: SYN-1, SYN-3)
    syn = rep["realism"]["synthetic"]
    assert syn["all"]["WT"]["n"] == 4
    assert set(syn["by_condition"]["grade"]) == {"HGG", "LGG"}
    hgg = [syn["per_case"][c]["ET"] for c in ("SYN-00000", "SYN-00002")]
    assert syn["by_condition"]["grade"]["HGG"]["ET"]["mean"] == pytest.approx(np.mean(hgg))
    assert rep["realism"]["real_heldout"]["TC"]["n"] == 2
    on_disk = json.loads((out / "utility.json").read_text())
    assert on_disk["arms"]["real"]["summary"] == rep["arms"]["real"]["summary"]  # floats round-trip
    html = (out / "index.html").read_text()
    assert (
        "data:image/png;base64," in html and "real+large+synthetic" in html and "grade=LGG" in html
    )
    assert (out / "utility.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))
    table = format_table(rep)
    assert table.splitlines()[2].startswith("real ") and "baseline" in table


@pytest.mark.slow
def test_the_real_only_segmenter_learns_the_tiny_cohort(tiny_real: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rep = run_utility(
        tiny_real,
        None,
        "SSA",
        tmp_path / "o",
        arms=["real"],
        seeds=(0,),
        steps=60,
        lr=3e-3,
        batch_size=2,
        network="unet",
        init_filters=8,
        progress=False,
    )
    s = rep["arms"]["real"]["summary"]
    assert s["WT"]["dice_mean"] > 0.7  # an untrained network scores about 0
    assert s["WT"]["hd95_mean"] < 6.0  # mm, at 2 mm voxels
    assert "synthetic" not in rep["realism"]
