"""A run killed and resumed ends with exactly the weights of an uninterrupted run (CPU, fixed seed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gliomagen.training import load_checkpoint, train


class Killed(Exception):
    pass


def _cfg(tiny_cfg):  # noqa: ANN001, ANN202
    # ADA, R1 (lazy every 2 steps), style mixing, EMA: every piece of state a resume must restore
    return tiny_cfg(
        loss={"kind": "nonsaturating", "r1_gamma": 1.0, "r1_interval": 2},
        augment={"ada": True, "p": 0.3, "interval": 1, "speed_images": 100.0},
        train={"steps": 6, "checkpoint_every": 3, "style_mixing": 0.5, "ema_half_life_images": 8.0},
    )


def test_killed_and_resumed_equals_uninterrupted(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = fake_store(n=6)
    full = load_checkpoint(train(_cfg(tiny_cfg), store, tmp_path / "full", progress=False))

    def kill_at_5(step: int) -> None:
        if step == 5:  # the last checkpoint is step 3; steps 4-5 are lost
            raise Killed

    with pytest.raises(Killed):
        train(_cfg(tiny_cfg), store, tmp_path / "cut", callback=kill_at_5, progress=False)
    resumed = load_checkpoint(
        train(_cfg(tiny_cfg), store, tmp_path / "cut", resume=True, progress=False)
    )

    assert resumed["step"] == full["step"] == 6
    assert resumed["aug_p"] == full["aug_p"] and full["aug_p"] != 0.3
    for net in ("G", "D", "G_ema"):
        for k, v in full[net].items():
            assert torch.equal(v, resumed[net][k]), f"{net}.{k} differs after resume"
    for k, v in full["opt_D"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], resumed["opt_D"]["state"][k]["exp_avg_sq"])


def test_resume_refuses_a_changed_model(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    from gliomagen.errors import GliomagenError

    store = fake_store(n=4)
    train(tiny_cfg(train={"steps": 1}), store, tmp_path / "r", progress=False)
    with pytest.raises(GliomagenError, match="model.g_channels differs"):
        train(
            tiny_cfg(train={"steps": 2}, model={"g_channels": 2}),
            store,
            tmp_path / "r",
            resume=True,
            progress=False,
        )
    with pytest.raises(GliomagenError, match="already holds checkpoints"):
        train(tiny_cfg(train={"steps": 2}), store, tmp_path / "r", progress=False)
    with pytest.raises(GliomagenError, match="no checkpoints to resume"):
        train(tiny_cfg(), store, tmp_path / "empty", resume=True, progress=False)
