"""What ``gliomagen bench`` times for a preset: a full G+D training step and generation.

The training step goes through the real loss code (:class:`gliomagen.training.losses.StyleGANLoss`,
or :class:`gliomagen.training.hierarchical.HierarchicalLoss` with ``model.hierarchical``: the
low-resolution volume and the high-resolution sub-volumes) with the preset's terms (the default
preset's presence, focality and VAE-GAN reconstruction; the mask tables they read are stand-ins,
:func:`bench_tables`) as the training loop drives it: phase ``G`` (G forward, D forward, backward into G, Adam step)
then phase ``D`` (G forward without gradients, D on fakes and reals, backward into D, Adam step),
on random "real" volumes with one-hot masks. Not included: data loading, augmentation (the
presets start with ADA's p = 0), the EMA update, the loop's non-finite guard and logging. Lazy R1
(``small-data``) runs every ``loss.r1_interval`` = 16 steps; the timed steps are steps without it
(one R1 step is timed separately and reported as ``r1_step_s``).

Generation goes through :func:`gliomagen.generation.synthesis.synthesize`, the path
``gliomagen generate`` takes: styles from the case seeds, the synthesis network per case on the
CPU (batched on a GPU), all modalities and the mask logits copied to host memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gliomagen.config import Config, apply_grid_defaults, resolve_config
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.generation.sampling import case_seeds, case_ws
from gliomagen.generation.source import GeneratorSource
from gliomagen.generation.synthesis import synthesize
from gliomagen.models import build_discriminator, build_generator, cat_sizes
from gliomagen.training.batches import SubVolumePlan
from gliomagen.training.hierarchical import HierarchicalLoss
from gliomagen.training.losses import MicroBatch, StyleGANLoss
from gliomagen.training.terms.registry import build_terms

SCHEMA = ConditionSchema(
    [
        ConditionField("cohort", "categorical", categories=["GLI", "SSA"]),
        ConditionField("grade", "categorical", categories=["HGG", "LGG"]),
    ]
)
"""Conditions of the benchmark models (two categorical fields, as a BraTS-style store)."""

N_IMG, N_CLS = 4, 4


def bench_config(
    preset: str, size: int, batch: int, overrides: list[str] | None = None
) -> Config:
    """The preset at a cubic grid ``size`` with batch ``batch`` (plus ``--set``-style overrides),
    hierarchical where training would make it so (``model.hierarchical_from``; the default preset
    from 64^3: ``--set model.hierarchical_from=0`` times its full-volume model)."""
    cfg = resolve_config(preset, overrides=list(overrides or []))
    cfg.data.size = [int(size)] * 3
    apply_grid_defaults(cfg, cfg.data.size)  # as training decides on the store's grid
    cfg.data.conditions = list(SCHEMA.names)  # the models are conditioned on SCHEMA's fields
    cfg.train.batch_size = int(batch)
    cfg.train.grad_accum = 1
    return cfg.validate()


def bench_tables() -> dict[str, torch.Tensor]:
    """Stand-ins for the per-condition tables of the training masks that the mask-statistics terms
    read (``[n_cat, n_codes]``, as :class:`gliomagen.training.terms.tables.MaskTables` gives): a
    0.5% tumour floor and a 0.5 main-lesion share for every code. The cost of a term does not
    depend on the values."""
    shape = (len(SCHEMA.categorical), max(cat_sizes(SCHEMA)))
    return {"tumour_floor": torch.full(shape, 0.005), "focal_floor": torch.full(shape, 0.5)}


def autocast_factory(
    device: torch.device, precision: str
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """bf16 autocast on a GPU with ``precision`` bf16, fp32 otherwise (as the training loop)."""
    if device.type == "cuda" and precision == "bf16":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def conditions(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cat [B, 2] int64, cont [B, 0])`` cycling through the four cohort x grade combinations."""
    cat = torch.tensor([[i % 2, (i // 2) % 2] for i in range(batch)], dtype=torch.int64)
    return cat, torch.zeros(batch, 0)


def random_reals(
    batch: int, size: int, device: torch.device, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [B, 4, S, S, S] in [-1, 1], one-hot masks [B, 4, S, S, S])`` on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    img = torch.rand(batch, N_IMG, size, size, size, generator=gen) * 2 - 1
    labels = torch.randint(0, N_CLS, (batch, size, size, size), generator=gen)
    mask = F.one_hot(labels, N_CLS).movedim(-1, 1).float()
    return img.to(device), mask.to(device)


class GanStep:
    """One full training step (G phase + D phase) of a preset's networks; call it to run one.

    Args:
        cfg: the configuration (:func:`bench_config`).
        device: where to run.
        precision: ``fp32`` or ``bf16`` (GPU autocast).
        seed: weights and data seed.
    """

    def __init__(self, cfg: Config, device: torch.device, precision: str = "fp32", seed: int = 0):
        assert cfg.data.size is not None
        self.cfg, self.device = cfg, device
        size = tuple(cfg.data.size)
        torch.manual_seed(seed)
        self.G = build_generator(cfg, SCHEMA, size, N_IMG).to(device)
        self.D = build_discriminator(cfg, SCHEMA, size, N_IMG).to(device)
        t, lz = cfg.train, cfg.loss
        ratio = lz.r1_interval / (lz.r1_interval + 1) if lz.r1_gamma > 0 else 1.0
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=t.betas_g)
        self.opt_D = torch.optim.Adam(
            self.D.parameters(),
            lr=t.lr_d * ratio,
            betas=(t.betas_d[0] ** ratio, t.betas_d[1] ** ratio),
        )
        loss_kind = HierarchicalLoss if cfg.model.hierarchical else StyleGANLoss  # as the loop
        self.loss = loss_kind(
            self.G,
            self.D,
            cfg,
            None,
            autocast_factory(device, precision),
            cat_sizes(SCHEMA),
            compile=t.compile,
            terms=build_terms(cfg, tables=bench_tables()),
        )
        self.batch = t.batch_size
        self.real_img, self.real_mask = random_reals(self.batch, size[0], device, seed)
        self.cat, self.cont = (c.to(device) for c in conditions(self.batch))
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.step_index = 0
        m = cfg.model
        self.sub_volumes = (  # where the step's high-resolution boxes lie, as the step plan draws
            SubVolumePlan(size[0], m.sub_volume, size[0] // m.low_res, m.sub_volumes) if m.hierarchical else None
        )

    def _micro(self) -> MicroBatch:
        z = torch.randn(self.batch, self.cfg.model.z_dim, generator=self.gen).to(self.device)
        seeds = [int(s) for s in torch.randint(0, 2**31 - 1, (self.batch,), generator=self.gen)]
        return MicroBatch(
            real_img=self.real_img,
            real_mask=self.real_mask,
            real_cat=self.cat,
            real_cont=self.cont,
            z=z,
            gen_cat=self.cat,
            gen_cont=self.cont,
            noise_seeds=seeds,
            corners=None if self.sub_volumes is None else self.sub_volumes.corners(self.gen),
        )

    def _phase(self, phase: str, do_r1: bool) -> None:
        opt = self.opt_G if phase == "G" else self.opt_D
        self.G.requires_grad_(phase == "G")
        self.D.requires_grad_(phase == "D")
        opt.zero_grad(set_to_none=True)
        self.loss.accumulate_gradients(phase, self._micro(), 1.0, do_r1)
        opt.step()

    def __call__(self, r1: bool = False) -> None:
        """One optimiser step of G and one of D (``r1``: with the lazy R1 term in the D phase)."""
        self._phase("G", False)
        self._phase("D", bool(r1 and self.cfg.loss.r1_gamma > 0))
        self.step_index += 1

    @property
    def has_r1(self) -> bool:
        """Whether this preset uses (lazy) R1."""
        return self.cfg.loss.r1_gamma > 0


class Generation:
    """Generation of ``batch`` volumes (all modalities and the mask) through ``synthesize``.

    Args:
        cfg: the configuration (:func:`bench_config`).
        device: where to run.
        batch: volumes per call.
        seed: weights seed.
    """

    def __init__(self, cfg: Config, device: torch.device, batch: int, seed: int = 0) -> None:
        assert cfg.data.size is not None
        torch.manual_seed(seed)
        G = build_generator(cfg, SCHEMA, tuple(cfg.data.size), N_IMG).to(device).eval()
        G.requires_grad_(False)
        self.source = GeneratorSource(
            path=Path("<bench>"), sha256="", G=G, schema=SCHEMA, config=cfg
        )
        self.batch = batch
        cat, cont = conditions(batch)
        self.cat, self.cont = cat.numpy(), cont.numpy()
        self.calls = 0

    @property
    def G(self) -> Any:
        """The generator."""
        return self.source.G

    def __call__(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Generate ``n`` (default ``batch``) new cases (new seeds every call)."""
        n = self.batch if n is None else int(n)
        seeds = case_seeds(1000 * self.calls, n)
        self.calls += 1
        with torch.no_grad():
            ws = case_ws(self.G, seeds, self.cat[:n], self.cont[:n])
        return synthesize(self.source, ws, "random", seeds)
