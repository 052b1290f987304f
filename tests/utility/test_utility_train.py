"""Training an arm: the checkpoint is chosen on val (never test), pretraining runs once per seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from gliomagen.evaluation import segmentation as seg
from gliomagen.evaluation import utility_runs, utility_train
from gliomagen.evaluation.utility_data import load_benchmark_data
from gliomagen.evaluation.utility_train import Arrays, TrainOptions, fit, region_dice, run_arm

OPTS = TrainOptions(steps=4, batch_size=2, network="unet", init_filters=4, lr=3e-3, val_every=1,
                    pretrain_steps=3, device="cpu")  # fmt: skip


def _arrays(real: Path, syn: Path | None, tmp: Path) -> Arrays:
    data = load_benchmark_data(real, syn, "SSA", cache_dir=tmp / "cache", needs_synthetic=False)
    assert data.bank is not None
    return Arrays(data.bank, data.index, data.spacing)


def test_fit_keeps_the_best_val_weights_not_the_last() -> None:
    torch.manual_seed(0)
    net = nn.Conv3d(4, 4, 1)
    x, y = torch.randn(2, 4, 4, 4, 4), torch.randint(0, 4, (2, 4, 4, 4))
    seen: list[dict[str, torch.Tensor]] = []
    scores = iter([0.1, 0.2, 0.9, 0.3, 0.9])  # steps 0..4; 0.9 first at step 2 (ties: earliest)

    def val(model: nn.Module) -> np.ndarray:
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return np.full((3, 3), next(scores))

    res = fit(net, iter([(x, y)] * 4), steps=4, lr=0.05, device="cpu", seed=0, val=val, val_every=1)
    assert res.best_step == 2 and res.best_val == pytest.approx(0.9)
    assert res.curve["step"] == [0, 1, 2, 3, 4] and res.curve["val_dice"][2] == pytest.approx(0.9)
    assert all(torch.equal(res.state[k], seen[2][k]) for k in res.state)
    assert not torch.equal(res.state["weight"], net.state_dict()["weight"])  # not the last weights
    last = fit(nn.Conv3d(4, 4, 1), iter([(x, y)] * 3), steps=3, lr=0.05, device="cpu", seed=0,
               val=val, val_every=0)  # fmt: skip
    assert last.best_step == 3 and last.best_val is None and last.curve["step"] == []


def test_run_arm_scores_on_test_the_weights_val_chose(
    tiny_real: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Val and test disagree: val prefers step 1, the test score must be that of step 1's weights."""
    torch.set_num_threads(1)
    arrays = _arrays(tiny_real, None, tmp_path)
    states: list[dict[str, torch.Tensor]] = []

    def scripted(arr: Arrays, opts: TrainOptions) -> Any:
        def val(net: nn.Module) -> np.ndarray:
            states.append({k: v.clone() for k, v in net.state_dict().items()})
            return np.full((1, 3), 1.0 if len(states) == 2 else 0.0)  # best: step 1

        return val

    monkeypatch.setattr(utility_train, "_validator", scripted)
    res = run_arm(arrays, "real", 0, OPTS)
    assert res["best_step"] == 1 and len(states) == 5

    def test_dice(state: dict[str, torch.Tensor]) -> float:
        net = seg.build_network("unet", out_channels=3, init_filters=4)
        net.load_state_dict(state)
        rows = arrays.index["heldout"]
        pred = utility_train.predict(net, arrays.bank, rows, 4, "cpu")
        return float(region_dice(pred, arrays.bank.labels[rows]).mean())

    got = float(np.mean([res["per_case"][c][r]["dice"] for c in res["per_case"] for r in seg.REGIONS]))
    assert got == pytest.approx(test_dice(states[1]), abs=1e-6)
    assert got != pytest.approx(test_dice(states[-1]), abs=1e-6)  # the last weights score otherwise


def test_large_then_real_pretrains_once_per_seed(
    tiny_real: Path, tiny_synthetic: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    arrays = _arrays(tiny_real, tiny_synthetic, tmp_path)
    calls: list[int] = []
    real_pretrain = utility_runs.pretrain

    def counted(arr: Arrays, seed: int, opts: TrainOptions) -> Any:
        calls.append(seed)
        return real_pretrain(arr, seed, opts)

    monkeypatch.setattr(utility_runs, "pretrain", counted)
    arms = ["real", "large-then-real", "large-then-real+synthetic"]
    res, pre = utility_runs.run_all(arrays, arms, [0, 1], OPTS, progress=False)
    assert calls == [0, 1] and sorted(pre) == [0, 1]
    assert pre[0]["steps"] == 3 and pre[0]["curve"]["step"] == [0, 1, 2, 3]
    assert set(res["large-then-real"]) == {0, 1}
    # the pretrained start differs from the seed's random start: the first losses differ
    assert res["large-then-real"][0]["loss_first"] != res["real"][0]["loss_first"]
    calls.clear()
    utility_runs.run_all(arrays, ["real", "real+large"], [0], OPTS, progress=False)
    assert calls == []  # no large-then-real arm: no pretraining
    # with a cache folder the pretraining is kept on disk and shared by a later run (e.g. another n)
    cache = tmp_path / "pre"
    first, _ = utility_runs.run_all(arrays, ["large-then-real"], [0], OPTS, progress=False, cache_dir=cache)
    again, pre2 = utility_runs.run_all(arrays, ["large-then-real"], [0], OPTS, progress=False, cache_dir=cache)
    assert calls == [0] and len(list(cache.glob("pretrain-seed0-*.pt"))) == 1 and "cached" in pre2[0]
    assert first["large-then-real"][0]["per_case"] == again["large-then-real"][0]["per_case"]
    other = TrainOptions(**{**OPTS.__dict__, "pretrain_steps": 2})
    utility_runs.run_all(arrays, ["large-then-real"], [0], other, progress=False, cache_dir=cache)
    assert calls == [0, 0]  # other options: another pretraining


def test_pretraining_trains_on_the_large_cohort_only(tiny_real: Path, tmp_path: Path) -> None:
    arrays = _arrays(tiny_real, None, tmp_path)
    used: list[list[int]] = []
    take = arrays.bank.take

    def spy(idx: Any) -> Any:
        used.append(list(idx))
        return take(idx)

    arrays.bank.take = spy  # type: ignore[method-assign]
    utility_train.pretrain(arrays, 0, TrainOptions(steps=2, batch_size=2, network="unet", init_filters=4,
                                                   val_every=0, pretrain_steps=3))  # fmt: skip
    assert len(used) == 3 and {i for b in used for i in b} <= set(arrays.index["large"])


@pytest.mark.slow
def test_jobs_give_the_same_numbers_as_one_process(tiny_real: Path, tiny_synthetic: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    arrays = _arrays(tiny_real, tiny_synthetic, tmp_path)
    arms = ["real", "large-then-real", "real+synthetic"]
    one, pre1 = utility_runs.run_all(arrays, arms, [0, 1], OPTS, jobs=1, progress=False)
    two, pre2 = utility_runs.run_all(arrays, arms, [0, 1], OPTS, jobs=2, progress=False)
    for a in arms:
        for s in (0, 1):
            assert one[a][s]["per_case"] == two[a][s]["per_case"]
            assert one[a][s]["curve"] == two[a][s]["curve"]
    assert pre1[1]["curve"] == pre2[1]["curve"]
