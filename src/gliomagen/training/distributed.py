"""Data-parallel training under ``torchrun`` (NCCL on GPU, gloo on CPU).

Every worker builds the same networks from the same seed, draws the same random numbers for the
*global* batch and keeps its own slice; after each phase the gradients are averaged with one
all-reduce of a flattened buffer (as StyleGAN3 does), so N workers take exactly the step one worker
takes on the whole batch. A manual all-reduce is used instead of ``DistributedDataParallel``'s
reducer because the R1 and gradient penalties need a double backward, which DDP does not support.

``torchrun --nproc_per_node N -m gliomagen train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from gliomagen.errors import GliomagenError
from gliomagen.io.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this worker sits.

    Attributes:
        rank: global rank.
        world_size: number of workers.
        local_rank: rank on this node (selects the GPU).
        local_world_size: workers on this node (shares the CPU threads).
        device: the torch device of this worker.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the worker that writes the run folder)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_preference: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` (or a test) describes; a single worker otherwise.

    An already initialised default group (e.g. from a test's ``init_process_group``) is used as is.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        return DistInfo(rank, world, local, local_world, resolve_device(device_preference, local))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=resolve_device(device_preference, 0))
    if device_preference.startswith("cuda:"):
        raise GliomagenError(
            f"train.device={device_preference}: under torchrun each worker takes the GPU of its "
            "local rank; give cuda or auto (and CUDA_VISIBLE_DEVICES to choose the GPUs)"
        )
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    device = resolve_device(device_preference, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, local_world, device, owns_group=True)


def shutdown(info: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean_grads(params: Iterable[torch.nn.Parameter], world_size: int) -> None:
    """Average the gradients of ``params`` over all workers (missing gradients count as zero)."""
    params = [p for p in params if p.requires_grad]
    if world_size <= 1 or not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])  # type: ignore[union-attr]
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].reshape(p.shape))  # type: ignore[union-attr]
        offset += n


def all_reduce_sum(values: torch.Tensor, world_size: int) -> torch.Tensor:
    """Sum a tensor over all workers (returns the input unchanged for one worker)."""
    if world_size > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_module(module: torch.nn.Module, world_size: int) -> None:
    """Copy rank 0's parameters and buffers to every worker."""
    if world_size <= 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def any_worker(flag: bool, world_size: int, device: torch.device) -> bool:
    """True when ``flag`` is true on at least one worker (all workers get the same answer)."""
    if world_size <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(world_size: int) -> None:
    """Wait for every worker."""
    if world_size > 1:
        dist.barrier()
