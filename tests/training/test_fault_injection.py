"""Training killed with SIGKILL at random steps, five times, resumes to an uninterrupted run's weights.

Each try trains in a child process (forked from a server that has imported torch once, so a child
starts in well under a second) that kills itself with SIGKILL: after a step (between
checkpoints: ``checkpoint_every=2``), or halfway through writing a checkpoint (a half-written
temporary file left behind). The next child resumes from the newest checkpoint on disk (or starts
again when there is none yet). The kill points come from a fixed seed. After the fifth kill a last
child trains to the end; its final checkpoint must equal, tensor for tensor, that of one
uninterrupted run, and no temporary file may be left.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from gliomagen.config import resolve_config
from gliomagen.io import checkpoint as ck
from gliomagen.io.atomic import atomic_path
from gliomagen.io.checkpoint import list_checkpoints, load_checkpoint
from gliomagen.training import train

STEPS, EVERY, KILLS, SEED = 8, 2, 5, 1
TINY = ["data.size=null", "model.z_dim=8", "model.w_dim=16", "model.mapping_layers=2",
        "model.cond_embed_dim=8", "model.g_channels=4", "model.g_max_channels=8",
        "model.d_channels=4", "model.d_max_channels=8", "train.batch_size=4",
        f"train.steps={STEPS}", f"train.checkpoint_every={EVERY}", "train.keep_checkpoints=2",
        "train.threads=1", "train.sample_every=1000", "train.log_every=1",
        "train.w_avg_samples=16", "train.samples_per_condition=1"]  # fmt: skip
PRESETS = {
    "demo-cpu": ["train.style_mixing=0.5"],
    # the default preset: ADA moving p every step, lazy R1 every 2 steps, validation configured
    # (every 2000 steps: built, never due)
    "small-data": ["augment.interval=1", "augment.speed_images=100", "loss.r1_interval=2"],
}


def _child(store: str, run: str, preset: str, kill_step: int, where: str) -> None:
    """Train (resuming when the run has a checkpoint); SIGKILL self at ``kill_step``."""
    torch.set_num_threads(1)

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "save":
        real_write = ck.write_bytes

        def half_then_die(path: Path, data: bytes) -> Path:
            if Path(path).name == f"step-{kill_step:07d}.pt":
                with atomic_path(path) as tmp:  # half of the bytes reach the disk
                    tmp.write_bytes(data[: len(data) // 2])
                    die()
            return real_write(path, data)

        ck.write_bytes = half_then_die  # this child only

    cfg = resolve_config(preset, overrides=[*TINY, *PRESETS[preset]])
    train(
        cfg, store, run, resume=bool(list_checkpoints(run)), progress=False,
        callback=lambda step: die() if where == "step" and step == kill_step else None,
    )  # fmt: skip


def _kill_plan() -> list[tuple[int, str]]:
    """Five increasing kill steps in 1..STEPS-1; at a checkpoint step, half of them mid-write."""
    rng = np.random.default_rng(SEED)
    steps = sorted(int(s) for s in rng.choice(np.arange(1, STEPS), size=KILLS, replace=False))
    return [(s, "save" if s % EVERY == 0 and rng.random() < 0.5 else "step") for s in steps]


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.BaseContext:
    """A forkserver context whose server imported torch and gliomagen.training once."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "gliomagen.training", __name__])
    return ctx


def _run_child(ctx: multiprocessing.context.BaseContext, *args: object) -> int | None:
    proc = ctx.Process(target=_child, args=args)  # type: ignore[attr-defined]
    proc.start()
    proc.join(timeout=240)
    if proc.is_alive():
        proc.kill()
        pytest.fail("a training child hung")
    return proc.exitcode


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_sigkilled_five_times_resumes_to_the_uninterrupted_weights(
    preset: str, tmp_path: Path, forkserver, disk_store, same_state  # noqa: ANN001
) -> None:
    store = str(disk_store(tmp_path / "store", n=8, splits=["train"] * 6 + ["val"] * 2))
    run = tmp_path / "killed"
    plan = _kill_plan()
    # the seed's plan: before the first checkpoint, mid-write of the first one, between
    # checkpoints, and mid-write with older checkpoints on disk
    assert plan == [(1, "step"), (2, "save"), (3, "step"), (4, "step"), (6, "save")]
    for step, where in plan:
        assert _run_child(forkserver, store, str(run), preset, step, where) == -signal.SIGKILL
    assert _run_child(forkserver, store, str(run), preset, -1, "none") == 0

    torch.set_num_threads(1)
    cfg = resolve_config(preset, overrides=[*TINY, *PRESETS[preset]])
    full = load_checkpoint(train(cfg, store, tmp_path / "full", progress=False))
    killed = load_checkpoint(run)
    assert killed["step"] == full["step"] == STEPS
    for key in ("G", "G_ema", "D", "opt_G", "opt_D", "aug_p"):
        same_state(full[key], killed[key], key)
    left = [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not left, f"half-written files left: {left}"
    assert "resumed from step" in (run / "log.txt").read_text()

