"""Activation checkpointing (``train.activation_checkpointing``) changes memory, not gradients."""

from __future__ import annotations

import contextlib

import pytest
import torch

from gliomagen.bench.workloads import SCHEMA, conditions, random_reals
from gliomagen.config import resolve_config
from gliomagen.models import build_discriminator, build_generator, cat_sizes
from gliomagen.models.discriminator import Discriminator
from gliomagen.models.generator import StyledLayer
from gliomagen.training.losses import MicroBatch, StyleGANLoss

TINY = [
    "model.g_channels=4",
    "model.g_max_channels=8",
    "model.d_channels=4",
    "model.d_max_channels=8",
    "model.z_dim=8",
    "model.w_dim=8",
    "model.cond_embed_dim=4",
    "model.mapping_layers=2",
    "data.size=[16,16,16]",
]


def _grads(preset: str, checkpointing: bool, phase: str, r1: bool) -> dict[str, torch.Tensor]:
    cfg = resolve_config(
        preset, overrides=[*TINY, f"train.activation_checkpointing={str(checkpointing).lower()}"]
    )
    torch.manual_seed(0)
    G = build_generator(cfg, SCHEMA, (16, 16, 16))
    D = build_discriminator(cfg, SCHEMA, (16, 16, 16))
    assert all(m.checkpoint_activations == checkpointing for m in G.modules() if isinstance(m, StyledLayer))
    assert isinstance(D, Discriminator) and D.checkpoint_activations == checkpointing
    loss = StyleGANLoss(G, D, cfg, None, contextlib.nullcontext, cat_sizes(SCHEMA))
    img, mask = random_reals(2, 16, torch.device("cpu"), seed=1)
    cat, cont = conditions(2)
    gen = torch.Generator().manual_seed(2)
    mb = MicroBatch(img, mask, cat, cont, torch.randn(2, 8, generator=gen), cat, cont, [11, 12])
    with torch.no_grad():  # non-zero noise strengths, so the noise (and its seeds) matter
        for m in G.modules():
            if isinstance(m, StyledLayer) and m.noise is not None:
                m.noise.strength.uniform_(0.5, 1.0)
    net = G if phase == "G" else D
    G.requires_grad_(phase == "G")
    D.requires_grad_(phase == "D")
    loss.accumulate_gradients(phase, mb, 1.0, do_r1=r1)
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    ("preset", "phase", "r1"),
    [("origin", "G", False), ("origin", "D", False), ("small-data", "G", False), ("small-data", "D", True)],
)
def test_gradients_identical_with_and_without_checkpointing(preset: str, phase: str, r1: bool) -> None:
    plain = _grads(preset, False, phase, r1)
    ckpt = _grads(preset, True, phase, r1)
    assert plain.keys() == ckpt.keys() and len(plain) > 5
    nonzero = 0
    for name, g in plain.items():
        torch.testing.assert_close(ckpt[name], g, rtol=1e-6, atol=1e-7, msg=name)
        nonzero += int(g.abs().sum() > 0)
    assert nonzero > len(plain) // 2  # the gradients are real, not all zero
