"""gliomagen.io.device.resolve_device: auto, cpu, cuda, cuda:N and the worker's local rank."""

from __future__ import annotations

import pytest
import torch

from gliomagen.errors import GliomagenError
from gliomagen.io.device import resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def _fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_cpu_and_torch_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("cpu", local_rank=3) == torch.device("cpu")


@no_cuda
def test_auto_is_cpu_without_cuda() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto", local_rank=1) == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("request_", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_cuda_is_one_line_error(request_: str) -> None:
    with pytest.raises(
        GliomagenError,
        match=f"--device {request_}: no CUDA GPU is available here; use --device cpu",
    ):
        resolve_device(request_)
    with pytest.raises(GliomagenError, match="no CUDA GPU"):
        resolve_device(request_, local_rank=0)  # the training path (one worker)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ("gpu0", "--device 'gpu0': not a device"),
        ("tpu", "--device 'tpu': not a device"),
        ("meta", "--device meta: only cpu and cuda are supported"),
    ],
)
def test_unknown_devices_are_errors(request_: str, message: str) -> None:
    with pytest.raises(GliomagenError, match=message):
        resolve_device(request_)


def test_cuda_index_follows_the_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpus(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda")  # generation: the current CUDA device
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto", local_rank=0) == torch.device("cuda", 0)  # training
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 1)  # rank % GPUs
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)  # explicit wins


def test_torchrun_refuses_one_fixed_gpu_for_every_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    from gliomagen.errors import GliomagenError
    from gliomagen.training.distributed import init_distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(
        GliomagenError, match=r"train.device=cuda:1: under torchrun each worker takes the GPU"
    ):
        init_distributed("cuda:1")
