"""The benchmark end to end at 16^3: reproducible for a seed, consistent figures, the outputs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from gliomagen.evaluation import utility_privacy, utility_train
from gliomagen.evaluation import utility_stats as st
from gliomagen.evaluation.segmentation import REGIONS
from gliomagen.evaluation.utility import format_table, run_utility
from gliomagen.evaluation.utility_report import best_real_arm

FAST = {"steps": 3, "batch_size": 2, "network": "unet", "init_filters": 4, "progress": False,
        "val_every": 1, "pretrain_steps": 2, "n_boot": 300}  # fmt: skip


def _figures(report: dict) -> dict:
    """Every number of a report except the timings."""
    arms = {
        a: {s: {k: v for k, v in r.items() if k != "seconds"} for s, r in res["seeds"].items()}
        for a, res in report["arms"].items()
    }
    return {"arms": arms, "paired": report["paired"], "realism": report["realism"]}


def test_two_runs_of_a_seed_give_identical_numbers(
    tiny_real: Path, tiny_synthetic: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    kw = dict(FAST, arms=["real", "real+synthetic"], seeds=(0,))
    a = run_utility(tiny_real, tiny_synthetic, "SSA", tmp_path / "a", **kw)
    b = run_utility(tiny_real, tiny_synthetic, "SSA", tmp_path / "b", **kw)
    assert _figures(a) == _figures(b)
    c = run_utility(tiny_real, tiny_synthetic, "SSA", tmp_path / "c", **dict(kw, seeds=(1,)))
    assert a["arms"]["real"]["seeds"]["0"]["loss_first"] != c["arms"]["real"]["seeds"]["1"]["loss_first"]


def _mean_region(res: dict, seed: str, key: str = "per_case") -> list[float]:
    pc = res["seeds"][seed][key]
    return [float(np.mean([pc[c][r]["dice"] for r in REGIONS])) for c in pc]


def test_report_is_consistent_and_written(
    tiny_real: Path, tiny_synthetic: Path, tmp_path: Path, stores: Any
) -> None:
    torch.set_num_threads(1)
    real = stores.write(tmp_path / "real3", stores.cases("SSA", "SSA", {"train": 3, "val": 2, "test": 4}, 100)
                        + stores.cases("GLI", "GLI", {"train": 4}, 200))  # fmt: skip
    out = tmp_path / "out"
    rep = run_utility(real, tiny_synthetic, "SSA", out, seeds=(0, 1), synthetic_multiples=(1,), **FAST)
    assert list(rep["arms"]) == ["real", "real+large", "large-then-real", "real+synthetic",
                                 "real+large+synthetic", "large-then-real+synthetic", "synthetic"]  # fmt: skip
    assert rep["config"]["samples_per_run"] == 6 and rep["config"]["n_real"] == 3
    assert rep["cases"]["heldout"] == ["SSA-005", "SSA-006", "SSA-007", "SSA-008"]
    assert rep["cases"]["val"] == ["SSA-003", "SSA-004"]
    assert rep["cases"]["synthetic@1x"] == ["SYN-00000", "SYN-00002", "SYN-00004"]  # 3 x HGG
    assert rep["metrics"]["headline"] == "voxel" and not rep["metrics"]["lesion_available"]
    for res in rep["arms"].values():
        s = res["summary"]["voxel"]["mean"]["dice"]
        per_seed = [np.mean(_mean_region(res, k)) for k in ("0", "1")]
        assert s["per_seed"] == pytest.approx(per_seed)
        assert s["mean"] == pytest.approx(np.mean(per_seed))
        assert s["std_seeds"] == pytest.approx(np.std(per_seed, ddof=1))
        assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["n_cases"] == 4
        for r in REGIONS:
            seeds = [np.mean([pc[r]["dice"] for pc in v["per_case"].values()]) for v in res["seeds"].values()]
            assert res["summary"]["voxel"][r]["dice"]["mean"] == pytest.approx(np.mean(seeds))
        assert len(res["seeds"]["0"]["curve"]["step"]) == 4  # steps 0..3
    assert rep["arms"]["large-then-real"]["pretrain_steps"] == 2 and rep["arms"]["real"]["pretrain_steps"] == 0
    # paired: per case the difference averaged over seeds
    a, b = rep["arms"]["real+synthetic"], rep["arms"]["real"]
    ta = np.array([_mean_region(a, k) for k in ("0", "1")])
    tb = np.array([_mean_region(b, k) for k in ("0", "1")])
    want = st.paired(ta, tb, n_boot=300)
    got = rep["paired"]["real+synthetic vs real"]["voxel"]["mean"]["dice"]
    assert got["mean_diff"] == pytest.approx(want["mean_diff"]) and got["p_value"] == pytest.approx(want["p_value"])
    assert "large-then-real+synthetic vs large-then-real" in rep["paired"]
    assert "real vs real" not in rep["paired"]
    best = rep["best_real_arm"]["arm"]
    assert best in ("real+large", "large-then-real")
    assert best_real_arm({a: r["seeds"] for a, r in rep["arms"].items()}) is not None
    others = [a for a in rep["arms"] if a not in (best, "real")]
    assert all(f"{a} vs {best}" in rep["paired"] for a in others)  # every arm vs the best real-data arm
    names = [c["name"] for c in rep["checks"]["voxel"]]
    assert names[0] == "real arm converged on val" and "real+synthetic - real" in names
    syn = rep["realism"]["synthetic"]
    assert syn["all"]["WT"]["n"] == 3 and set(syn["by_condition"]["grade"]) == {"HGG"}
    on_disk = json.loads((out / "utility.json").read_text())
    assert on_disk["arms"]["real"]["summary"] == rep["arms"]["real"]["summary"]  # floats round-trip
    html = (out / "index.html").read_text()
    for text in ("data:image/png;base64,", "large-then-real+synthetic", "[voxel]", "Paired differences",
                 "Target checks", "<h3>Privacy</h3>", "Flagged synthetic cases"):  # fmt: skip
        assert text in html, text
    assert rep["privacy"]["available"]  # the privacy module is part of the package
    lesion = "lesion-wise metrics not computed" in html  # only without the optional brats extra
    assert lesion == (not rep["metrics"]["lesion_available"])
    assert (out / "utility.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))
    table = format_table(rep)
    assert "[voxel]" in table and table.count("baseline") == 1 and "target checks" in table


def _stub_lesion(monkeypatch: pytest.MonkeyPatch) -> None:
    def lesion_wise(pred: np.ndarray, gt: np.ndarray, spacing: Any) -> dict:
        return {r: {"dice": 0.25 * k, "hd95": 10.0 * k} for k, r in enumerate(REGIONS, 1)}

    stub = SimpleNamespace(available=lambda: (True, "stub"), lesion_wise=lesion_wise)
    monkeypatch.setattr(utility_train, "brats_metrics", stub)


def _stub_privacy(monkeypatch: pytest.MonkeyPatch, seen: dict) -> None:
    def Cases(ids: list, images: np.ndarray, masks: np.ndarray) -> Any:  # noqa: N802
        return SimpleNamespace(ids=ids, images=images, masks=masks)

    def privacy_report(train: Any, heldout: Any, synthetic: Any, **kw: Any) -> dict:
        seen.update(train=train, heldout=heldout, synthetic=synthetic, members=kw.get("members"))
        return {"image": {"passes": False, "flagged_ids": [synthetic.ids[1]]}, "membership": {"max": 0.5}}

    stub = SimpleNamespace(Cases=Cases, privacy_report=privacy_report, format_privacy=lambda r: "stub privacy")
    monkeypatch.setattr(utility_privacy, "privacy", stub)


def test_lesion_metrics_and_privacy_when_available(
    tiny_real: Path, tiny_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    _stub_lesion(monkeypatch)
    seen: dict = {}
    _stub_privacy(monkeypatch, seen)
    out = tmp_path / "o"
    rep = run_utility(tiny_real, tiny_synthetic, "SSA", out, arms=["real", "real+synthetic"], seeds=(0,), **FAST)
    assert rep["metrics"]["headline"] == "lesion" and list(rep["metrics"]["families"]) == ["voxel", "lesion"]
    les = rep["arms"]["real"]["summary"]["lesion"]
    assert les["WT"]["dice"]["mean"] == pytest.approx(0.25) and les["ET"]["hd95"]["mean"] == pytest.approx(30.0)
    assert les["mean"]["dice"]["mean"] == pytest.approx(0.5)
    assert rep["paired"]["real+synthetic vs real"]["lesion"]["mean"]["dice"]["mean_diff"] == pytest.approx(0.0)
    # privacy: the real training cases (scarce + large: the generator's training split) vs test
    assert seen["train"].ids == ["SSA-000", "SSA-001", "SSA-002", "SSA-003"] + [f"GLI-{k:03d}" for k in range(6)]
    assert seen["heldout"].ids == ["SSA-005"] and seen["synthetic"].images.dtype == np.float32
    assert seen["members"] == ["SSA-000", "SSA-001", "SSA-002", "SSA-003"]  # the held-out cases' cohort
    assert seen["synthetic"].images.shape == (4, 4, 16, 16, 16) and seen["synthetic"].masks.shape == (4, 16, 16, 16)
    priv = rep["privacy"]["sources"]["synthetic"]
    assert priv["flagged"] == ["SYN-00002"] and priv["text"] == "stub privacy"
    html = (out / "index.html").read_text()
    assert "[lesion]" in html and "SYN-00002" in html and "stub privacy" in html
    assert "[lesion]" in format_table(rep) and "stub privacy" in format_table(rep)


@pytest.mark.slow
def test_the_real_only_segmenter_learns_the_tiny_cohort(tiny_real: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    rep = run_utility(
        tiny_real, None, "SSA", tmp_path / "o", arms=["real"], seeds=(0,), steps=60, lr=3e-3,
        batch_size=2, network="unet", init_filters=8, progress=False, val_every=20,
    )  # fmt: skip
    s = rep["arms"]["real"]["summary"]["voxel"]
    assert s["WT"]["dice"]["mean"] > 0.7  # an untrained network scores about 0
    assert s["WT"]["hd95"]["mean"] < 6.0  # mm, at 2 mm voxels
    assert rep["convergence"]["real"]["curve"]["step"] == [0, 20, 40, 60]
    assert "synthetic" not in rep["realism"]


def _d_checkpoint(store: Path, folder: Path, hierarchical: bool = False) -> Path:
    """A real checkpoint with a tiny discriminator on ``store``'s grid and conditions."""
    from gliomagen.config import resolve_config, to_dict
    from gliomagen.data.store import open_store
    from gliomagen.io.checkpoint import FORMAT_VERSION, save_checkpoint
    from gliomagen.models import build_discriminator, build_generator

    ds = open_store(store)
    size = [int(s) for s in ds.size]
    cfg = resolve_config("demo-cpu")
    m = cfg.model
    m.d_channels, m.d_max_channels, m.g_channels, m.g_max_channels = 4, 8, 4, 8
    cfg.data.size = size
    torch.manual_seed(0)
    D = build_discriminator(cfg, ds.schema, size)
    G = build_generator(cfg, ds.schema, size)
    state = {
        "format_version": FORMAT_VERSION, "step": 0, "images_seen": 0, "G": G.state_dict(),
        "G_ema": G.state_dict(), "D": D.state_dict(), "config": to_dict(cfg),
        "schema": ds.schema.to_dict(), "store_meta": {}, "size": size, "n_modalities": 4,
    }  # fmt: skip
    return save_checkpoint(state, folder)


def test_the_attack_through_the_discriminator_score(
    tiny_real: Path, tiny_synthetic: Path, tmp_path: Path
) -> None:
    """--discriminator: the privacy report gets the d_score attack, members the n scarce training
    cases, non-members the held-out ones; without a synthetic cohort the CLI refuses it."""
    torch.set_num_threads(1)
    ckpt = _d_checkpoint(tiny_real, tmp_path / "run")
    rep = run_utility(tiny_real, tiny_synthetic, "SSA", tmp_path / "o", arms=["real", "real+synthetic"],
                      seeds=(0,), discriminator=ckpt, **FAST)  # fmt: skip
    report = rep["privacy"]["sources"]["synthetic"]["report"]
    attack = report["membership"]["attacks"]["d_score"]
    assert attack["n_members"] == 4 and attack["n_nonmembers"] == 1
    assert 0.0 <= attack["auc"] <= 1.0 and attack["score"] == "the discriminator's score"
    assert "d_score" in rep["privacy"]["text"]
    from typer.testing import CliRunner

    from gliomagen.cli import app

    res = CliRunner().invoke(
        app, ["utility", "--real", str(tiny_real), "--out", str(tmp_path / "c"),
              "--discriminator", str(ckpt)],
    )  # fmt: skip
    assert res.exit_code == 2 and "--discriminator: needs --synthetic" in res.output
    from gliomagen.errors import GliomagenError
    from gliomagen.evaluation.utility_data import load_benchmark_data
    from gliomagen.evaluation.utility_privacy import discriminator_attack_scores

    data = load_benchmark_data(tiny_real, tiny_synthetic, "SSA", cache_dir=tmp_path / "cache")
    assert set(discriminator_attack_scores(data, ckpt)) == {r.case_id for r in (*data.pools["real"], *data.heldout)}
    data.size = (8, 8, 8)  # another grid than the checkpoint's: one line naming the option
    with pytest.raises(GliomagenError, match="--discriminator .* trained on a 16x16x16 grid"):
        discriminator_attack_scores(data, ckpt)
