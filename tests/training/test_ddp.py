"""Two gloo workers on CPU take the same step as one worker on the same global batch."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gliomagen.training import load_checkpoint, train

HERE = Path(__file__).resolve().parent


def _training_conftest():  # noqa: ANN202
    """This folder's conftest, by path: ``import conftest`` could find another folder's one."""
    import importlib.util

    name = "gliomagen_tests_training_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _cfg():  # noqa: ANN202
    tiny_config = _training_conftest().tiny_config

    # mbstd groups of 2 = one worker's share; ADA and R1 on, so augmentation rows and the
    # double-backward penalty are split across workers too
    return tiny_config(
        model={"mbstd_group": 2},
        loss={"kind": "nonsaturating", "r1_gamma": 1.0, "r1_interval": 1},
        augment={"ada": True, "p": 0.5},
        train={"steps": 2, "batch_size": 4, "style_mixing": 0.5},
    )


def _store():  # noqa: ANN202
    FakeStore = _training_conftest().FakeStore  # noqa: N806

    return FakeStore(n=6)


def _worker(rank: int, world: int, port: int, run_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        train(_cfg(), _store(), run_dir, progress=False)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_workers_equal_one(tmp_path: Path) -> None:
    one = load_checkpoint(train(_cfg(), _store(), tmp_path / "one", progress=False))
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    two = load_checkpoint(tmp_path / "two")
    assert one["step"] == two["step"] == 2
    for net in ("G", "D", "G_ema"):
        for k, v in one[net].items():
            torch.testing.assert_close(two[net][k], v, rtol=1e-4, atol=1e-5, msg=f"{net}.{k}")
    assert all(
        float(v["exp_avg"].abs().max()) > 0
        for v in one["opt_G"]["state"].values()
        if v["exp_avg"].numel() > 4
    )
