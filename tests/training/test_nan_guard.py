"""A non-finite step is skipped and logged; K in a row stop the run with a clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gliomagen.errors import GliomagenError
from gliomagen.training import load_checkpoint, train
from gliomagen.training.batches import StepPlan


def test_one_bad_step_is_skipped(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    cfg = tiny_cfg(train={"steps": 2, "checkpoint_every": 1, "keep_checkpoints": 5})
    store = fake_store(n=8)
    plan = StepPlan(
        seed=cfg.train.seed,
        n_train=8,
        batch=4,
        accum=1,
        world=1,
        rank=0,
        z_dim=8,
        num_ws=6,
        style_mixing=0.0,
        augment=None,
        size=(16, 16, 16),
    )
    bad = plan.real_positions(1)[0]  # a case seen at step 2 only (8 cases, 2 steps of 4)
    assert bad not in plan.real_positions(0)
    store.images[bad] = np.nan
    train(cfg, store, tmp_path, progress=False)
    c1, c2 = (
        load_checkpoint(tmp_path / "checkpoints" / "step-0000001.pt"),
        load_checkpoint(tmp_path),
    )
    for k, v in c1["D"].items():
        assert torch.equal(v, c2["D"][k]), "the bad D update was applied"
    assert any(not torch.equal(v, c2["G"][k]) for k, v in c1["G"].items()), (
        "the good G update was skipped"
    )
    assert all(bool(torch.isfinite(v).all()) for v in c2["D"].values())
    log = (tmp_path / "log.txt").read_text()
    assert "step 2: non-finite D loss or gradients; update skipped (1 in a row)" in log
    assert c2["train_state"]["nan_streak"] == 1


def test_k_bad_steps_in_a_row_stop(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = fake_store(n=4)
    store.images[:] = np.nan
    with pytest.raises(
        GliomagenError, match=r"training stopped at step 3: 3 steps in a row had non-finite"
    ):
        train(tiny_cfg(train={"steps": 10, "nan_patience": 3}), store, tmp_path, progress=False)
