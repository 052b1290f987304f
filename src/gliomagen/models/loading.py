"""Rebuild the trained generator from a checkpoint (read through :mod:`gliomagen.io.checkpoint`).

Lives in ``models`` because it builds a network; ``gliomagen.io`` only reads and writes the
checkpoint dict, so generation and evaluation load a generator without importing training.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from gliomagen.config import Config, from_dict
from gliomagen.data.conditions import ConditionSchema
from gliomagen.io.checkpoint import load_checkpoint
from gliomagen.models import build_discriminator, build_generator


def load_generator(
    path: str | os.PathLike[str], device: str | torch.device = "cpu", ema: bool = True
) -> tuple[torch.nn.Module, ConditionSchema, Config, dict[str, Any]]:
    """Rebuild the trained generator from a checkpoint.

    Args:
        path: a checkpoint file or a run folder (its newest checkpoint).
        device: where to put the generator.
        ema: load ``G_ema`` (the averaged weights, the ones to sample from) instead of ``G``.

    Returns:
        ``(G, schema, config, store_meta)``: the generator in eval mode, the conditioning schema,
        the resolved :class:`gliomagen.config.Config`, and the store's meta (size, modalities,
        spacing_mm, template_geometry) plus ``w_avg`` (per-condition mean ``w``) and ``parent``
        (the checkpoint a fine-tuned run started from: ``parent``, ``parent_sha256``, ...) when
        present.
    """
    ckpt = load_checkpoint(path)
    config = from_dict(ckpt["config"], source=str(path))
    schema = ConditionSchema.from_dict(ckpt["schema"])
    G = build_generator(config, schema, [int(s) for s in ckpt["size"]], int(ckpt["n_modalities"]))
    G.load_state_dict(ckpt["G_ema" if ema else "G"])
    G.to(device).eval().requires_grad_(False)
    meta = dict(ckpt.get("store_meta", {}))
    if ckpt.get("w_avg") is not None:
        meta["w_avg"] = ckpt["w_avg"]
    if ckpt.get("parent"):
        meta["parent"] = dict(ckpt["parent"])
    return G, schema, config, meta


def load_discriminator(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, ConditionSchema, Config]:
    """Rebuild the trained discriminator from a checkpoint (e.g. for the membership attack
    through D's score, :func:`gliomagen.evaluation.privacy.discriminator_scores`).

    Returns:
        ``(D, schema, config)``: D in eval mode without gradients, the conditioning schema and the
        resolved configuration.
    """
    ckpt = load_checkpoint(path)
    config = from_dict(ckpt["config"], source=str(path))
    schema = ConditionSchema.from_dict(ckpt["schema"])
    size, n_mod = [int(s) for s in ckpt["size"]], int(ckpt["n_modalities"])
    D = build_discriminator(config, schema, size, n_mod)
    D.load_state_dict(ckpt["D"])
    D.to(device).eval().requires_grad_(False)
    return D, schema, config
