"""What a run is built from: the store, the precision, the threads, the networks, the optimisers.

Each function builds one piece of :class:`gliomagen.training.loop.Trainer` from the configuration;
the trainer calls them in a fixed order (the order the seeded initialisation depends on).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable
from typing import Any

import torch

from gliomagen.config import Config
from gliomagen.data import open_store as open_store_folder
from gliomagen.errors import GliomagenError
from gliomagen.models import (
    Discriminator,
    Generator,
    build_augment,
    build_discriminator,
    build_generator,
)
from gliomagen.models.augment import AugmentPipe
from gliomagen.models.hierarchical_d import HierarchicalDiscriminator
from gliomagen.training import distributed as dd
from gliomagen.training.batches import StepPlan, SubVolumePlan, TrainingData


def open_store(store: Any, cfg: Config) -> tuple[Any, str]:
    """``(dataset, name)``: a store folder opened with ``data.split``, or an opened store as is."""
    if isinstance(store, (str, os.PathLike)):
        split = None if cfg.data.split == "all" else cfg.data.split
        return open_store_folder(store, split=split), str(store)
    return store, str(getattr(store, "path", "store"))


def autocast_factory(
    cfg: Config, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """The autocast context of ``train.precision``: bf16 on CUDA for ``auto``/``bf16``, else none."""
    precision = cfg.train.precision
    if precision == "bf16" and device.type != "cuda":
        raise GliomagenError(
            "train.precision=bf16 needs a CUDA device; use auto (fp32 on CPU) or fp32"
        )
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def set_cpu_threads(cfg: Config, dist: dd.DistInfo) -> None:
    """On a CPU worker, use ``train.threads`` OpenMP threads (0 = its share of the cores - 1)."""
    # auto: the worker's share of the cores minus one; measured on 2 shared cores, 2 OpenMP
    # threads ran 6x slower than 1 (spinning threads fight the other processes)
    threads = cfg.train.threads or max(1, (os.cpu_count() or 1) // dist.local_world_size - 1)
    if dist.device.type == "cpu":
        torch.set_num_threads(threads)


def build_networks(
    cfg: Config, data: TrainingData, dist: dd.DistInfo
) -> tuple[Generator, Discriminator | HierarchicalDiscriminator, Generator]:
    """``(G, D, G_ema)`` seeded with ``train.seed``, on the worker's device, equal on all workers."""
    torch.manual_seed(cfg.train.seed)
    dev = dist.device
    G = build_generator(cfg, data.schema, data.size, data.n_modalities).to(dev)
    D = build_discriminator(cfg, data.schema, data.size, data.n_modalities).to(dev)
    rows = torch.as_tensor(data.train_index)
    G.mapping.set_case_table(data.cat[rows], data.cont[rows])  # the training cases' conditions
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    for net in (G, D, G_ema):
        dd.broadcast_module(net, dist.world_size)
    return G, D, G_ema


def frozen_d_parameters(cfg: Config, D: torch.nn.Module) -> list[torch.nn.Parameter]:
    """D's parameters that ``model.d_freeze_blocks = N`` freezes (FreezeD, Mo et al. 2020): the
    input conv and the first ``N`` residual blocks from the input side (none for ``N = 0``).

    Raises:
        GliomagenError: ``N`` is more than D's residual blocks at this grid.
    """
    n = int(cfg.model.d_freeze_blocks)
    if n == 0 or not isinstance(D, Discriminator):  # the hierarchical D refuses FreezeD (config)
        return []
    if n > len(D.blocks):
        raise GliomagenError(
            f"model.d_freeze_blocks={n}: D has {len(D.blocks)} residual blocks at "
            f"{'x'.join(map(str, D.size))}"
        )
    modules = [D.from_input, *list(D.blocks)[:n]] if n else []
    return [p for mod in modules for p in mod.parameters()]


def generator_param_groups(cfg: Config, G: Generator) -> list[dict[str, Any]]:
    """G's parameter groups: one, or with ``train.lr_mapping_scale != 1`` the rest and then the
    mapping MLP at ``lr_g x lr_mapping_scale`` (the condition embeddings keep ``lr_g``, so new
    condition codes learn at the full rate)."""
    scale = float(cfg.train.lr_mapping_scale)
    if scale == 1.0:
        return [{"params": list(G.parameters())}]
    mlp = {id(p) for p in G.mapping.layers.parameters()}
    rest = [p for p in G.parameters() if id(p) not in mlp]
    return [
        {"params": rest},
        {"params": list(G.mapping.layers.parameters()), "lr": cfg.train.lr_g * scale},
    ]


def build_optimisers(
    cfg: Config, G: Generator, D: torch.nn.Module
) -> tuple[torch.optim.AdamW, torch.optim.AdamW]:
    """AdamW for G and D (decoupled weight decay; with wd = 0 it is Adam). With lazy R1, D's
    learning rate and betas are scaled by ``r1_interval / (r1_interval + 1)`` (StyleGAN2).
    G's mapping MLP may have its own rate (:func:`generator_param_groups`); D's frozen
    parameters (:func:`frozen_d_parameters`) are left out of D's optimiser."""
    t = cfg.train
    lazy = cfg.loss.r1_gamma > 0
    ratio = cfg.loss.r1_interval / (cfg.loss.r1_interval + 1) if lazy else 1.0
    opt_G = torch.optim.AdamW(
        generator_param_groups(cfg, G),
        lr=t.lr_g,
        betas=t.betas_g,
        eps=1e-8,
        weight_decay=t.weight_decay_g,
    )
    frozen = {id(p) for p in frozen_d_parameters(cfg, D)}
    opt_D = torch.optim.AdamW(
        [p for p in D.parameters() if id(p) not in frozen],
        lr=t.lr_d * ratio,
        betas=(t.betas_d[0] ** ratio, t.betas_d[1] ** ratio),
        eps=1e-8,
        weight_decay=t.weight_decay_d,
    )
    return opt_G, opt_D


def build_augment_pipe(cfg: Config, data: TrainingData) -> AugmentPipe | None:
    """The augmentation pipeline, or ``None`` when augmentation is off (no ADA and p = 0)."""
    if not (cfg.augment.ada or cfg.augment.p > 0):
        return None
    return build_augment(cfg, len(data.size), data.n_modalities)


def build_plan(
    cfg: Config, data: TrainingData, dist: dd.DistInfo, num_ws: int, augment: AugmentPipe | None
) -> StepPlan:
    """The run's :class:`~gliomagen.training.batches.StepPlan` (every step's random draws)."""
    t, m = cfg.train, cfg.model
    size, sub_volumes = data.size, None
    if m.hierarchical:  # D's augmentation sees the low-res grid; the boxes have their own
        size = (m.low_res,) * len(data.size)
        factor = data.size[0] // m.low_res
        sub_volumes = SubVolumePlan(data.size[0], m.sub_volume, factor, m.sub_volumes)
    return StepPlan(
        seed=t.seed,
        n_train=len(data.train_index),
        batch=t.batch_size,
        accum=t.grad_accum,
        world=dist.world_size,
        rank=dist.rank,
        z_dim=cfg.model.z_dim,
        num_ws=num_ws,
        style_mixing=t.style_mixing,
        augment=augment,
        size=size,
        encoder=bool(cfg.model.encoder),
        sub_volumes=sub_volumes,
    )


__all__ = [
    "autocast_factory",
    "build_augment_pipe",
    "build_networks",
    "build_optimisers",
    "build_plan",
    "frozen_d_parameters",
    "generator_param_groups",
    "open_store",
    "set_cpu_threads",
]
