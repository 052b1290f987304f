"""Pieces of one optimiser step: a worker's micro-batches, the phase's reduction, the EMA of G.

:class:`gliomagen.training.loop.Trainer` runs a phase as: :func:`micro_batch` for each
accumulation round, the loss's ``accumulate_gradients`` on it, then :func:`reduce_phase` (gradients
and statistics averaged over the workers, one host-device sync, the finite check) before the
optimiser steps. After G's step :func:`update_ema` moves ``G_ema`` toward ``G``.
"""

from __future__ import annotations

from typing import Any

import torch

from gliomagen.config import TrainConfig
from gliomagen.models.latent_prior import is_prior_buffer
from gliomagen.training import distributed as dd
from gliomagen.training.batches import MicroBatch, PhaseDraws, StepPlan, TrainingData, slice_params


def micro_batch(
    data: TrainingData,
    plan: StepPlan,
    draws: PhaseDraws,
    round_: int,
    real: tuple[torch.Tensor, torch.Tensor],
    real_rows: list[int],
    device: torch.device,
    step: int,
) -> MicroBatch:
    """Micro-batch ``round_`` of this worker at ``step``: its real cases and its rows of the draws.

    Args:
        data: the training data (condition codes by store row).
        plan: the run's step plan (which rows of the global draws are this worker's).
        draws: the phase's global draws.
        round_: the accumulation round.
        real: ``(images, one-hot masks)`` of this worker's real cases of the step (all rounds).
        real_rows: their store rows.
        device: where the tensors go.
        step: the optimiser step.
    """
    rows = plan.local_rows(round_)  # rows of the global draws
    gen_rows = data.train_index[draws.cond_rows[rows].numpy()]  # conditions of the fakes
    mine = slice(round_ * plan.micro, (round_ + 1) * plan.micro)  # of the local reals
    real_idx = real_rows[mine]
    return MicroBatch(
        real_img=real[0][mine],
        real_mask=real[1][mine],
        real_cat=data.cat[real_idx].to(device),
        real_cont=data.cont[real_idx].to(device),
        z=draws.z[rows].to(device),
        gen_cat=data.cat[gen_rows].to(device),
        gen_cont=data.cont[gen_rows].to(device),
        noise_seeds=[int(s) for s in draws.noise_seeds[rows]],
        aug_real=slice_params(draws.aug_real, rows),
        aug_fake=slice_params(draws.aug_fake, rows),
        mix_z=None if draws.mix_z is None else draws.mix_z[rows].to(device),
        mix_cutoff=None if draws.mix_cutoff is None else draws.mix_cutoff[rows],
        gp_alpha=draws.gp_alpha[rows],
        step=step,
        enc_eps=None if draws.enc_eps is None else draws.enc_eps[rows].to(device),
        corners=draws.corners,
        aug_sub_real=slice_params(draws.aug_sub_real, rows),
        aug_sub_fake=slice_params(draws.aug_sub_fake, rows),
    )


def grads_finite(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """A 0-d bool tensor on the gradients' device: all finite (no host sync per parameter)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    return torch.stack([torch.isfinite(g).all() for g in grads]).all()


def reduce_phase(
    acc: dict[str, torch.Tensor], params: list[torch.nn.Parameter], dist: dd.DistInfo
) -> tuple[bool, dict[str, torch.Tensor]]:
    """Average a phase's gradients over the workers and sum its statistics, in one host sync.

    Args:
        acc: the phase's statistics summed over this worker's micro-batches (on the device).
        params: the parameters the phase trains.
        dist: the data-parallel layout.

    Returns:
        ``(ok, stats)``: whether every statistic and gradient is finite, and the statistics summed
        over the workers (host tensors: 0-d for scalars).
    """
    dd.all_reduce_mean_grads(params, dist.world_size)
    keys = sorted(acc)
    flat = dd.all_reduce_sum(
        torch.cat([acc[k].reshape(-1) for k in keys]).to(dist.device), dist.world_size
    )
    grads_ok = grads_finite(params).to(flat.device, flat.dtype).reshape(1)
    host = torch.cat([flat, grads_ok]).cpu()  # the phase's one host-device sync
    flat, finite_grads = host[:-1], bool(host[-1])
    stats, off = {}, 0
    for k in keys:
        n = acc[k].numel()
        stats[k] = flat[off : off + n] if n > 1 else flat[off]
        off += n
    return bool(torch.isfinite(flat).all()) and finite_grads, stats


def ema_beta(t: TrainConfig, images_seen: int) -> float:
    """The EMA decay of this step: half-life ``train.ema_half_life_images`` (at most
    ``images_seen x train.ema_rampup``) in units of ``train.batch_size``; 0 = G_ema is G."""
    if t.ema_half_life_images <= 0:
        return 0.0
    hl = t.ema_half_life_images
    if t.ema_rampup > 0:
        hl = min(hl, images_seen * t.ema_rampup)
    return 0.5 ** (t.batch_size / max(hl, 1e-8))


@torch.no_grad()
def update_ema(G_ema: Any, G: Any, beta: float) -> None:
    """``G_ema <- lerp(G, G_ema, beta)`` for the parameters; buffers copied from G, except the
    latent prior's (G_ema's fitted prior is its own)."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for (name, b_ema), b in zip(G_ema.named_buffers(), G.buffers(), strict=True):
        if not is_prior_buffer(name):
            b_ema.copy_(b)


__all__ = ["ema_beta", "grads_finite", "micro_batch", "reduce_phase", "update_ema"]
