"""A run's checkpoint contents beyond the weights, and what a resumed run may change.

:func:`resume_changes` compares a checkpoint's configuration with the one a resumed run brings:
keys of ``model`` and ``data`` fix the weights' shapes and meaning and must stay (except
:data:`RESUME_CHANGEABLE`); the rest may change and are logged. :func:`use_configured_hparams`
lets the configured learning rates and weight decay win over the optimisers' saved ones
(:func:`configured_hparams` takes them per parameter group before a load).
:func:`compute_w_avg` is the per-condition mean ``w`` a checkpoint keeps for truncation, and
:func:`checkpoint_state` the checkpoint dict of a trainer (keys: :mod:`gliomagen.io.checkpoint`).
"""

from __future__ import annotations

from typing import Any

import torch

from gliomagen.config import Config, from_dict, to_dict
from gliomagen.errors import GliomagenError
from gliomagen.io.checkpoint import FORMAT_VERSION, rng_state
from gliomagen.training.monitor import condition_grid

MAX_W_AVG_CONDITIONS = 256

# model keys a resumed run may change: they do not change any weight's shape or meaning
RESUME_CHANGEABLE = frozenset({"model.latent_prior", "model.latent_prior_components"})

CHANGEABLE_SECTIONS = ("loss", "augment", "train")
"""Sections whose keys a resumed run may change freely (``model`` and ``data`` may not)."""


def _plain(v: Any) -> Any:
    """A config value as YAML gives it back (tuples as lists), for comparisons."""
    return list(v) if isinstance(v, tuple) else v


def resume_changes(saved: dict[str, Any], cfg: Config, source: str) -> dict[str, tuple[Any, Any]]:
    """The keys whose value ``cfg`` changes from a checkpoint's configuration ``saved``.

    A key newer than the checkpoint counts as having had its default there.

    Args:
        saved: the checkpoint's ``config`` (a :func:`gliomagen.config.to_dict` dict).
        cfg: the resumed run's configuration.
        source: the checkpoint, for messages.

    Returns:
        ``{"section.key": (saved value, new value)}``.

    Raises:
        GliomagenError: the checkpoint's configuration sets a removed option, or a ``model`` /
            ``data`` key (other than :data:`RESUME_CHANGEABLE`) changed.
    """
    from_dict(saved, source=source)  # refuses a checkpoint of a removed option, by name
    now, base = to_dict(cfg), to_dict(Config())
    changed = {
        f"{sec}.{k}": (_plain(was.get(k)), _plain(v))
        for sec in ("model", "data", *CHANGEABLE_SECTIONS)
        for was in [{**base[sec], **saved.get(sec, {})}]
        for k, v in now[sec].items()
        if _plain(v) != _plain(was.get(k))
    }
    for key, (was, v) in changed.items():  # shapes and data must stay what the weights saw
        if key.split(".")[0] not in CHANGEABLE_SECTIONS and key not in RESUME_CHANGEABLE:
            raise GliomagenError(
                f"--resume: {key} differs from the run's checkpoint "
                f"({was!r} -> {v!r}); keep it or start a new run"
            )
    return changed


HPARAM_KEYS = ("lr", "weight_decay", "decoupled_weight_decay")


def configured_hparams(*optimisers: torch.optim.Optimizer) -> list[list[dict[str, Any]]]:
    """Each optimiser's parameter groups' learning rate and weight decay as built (take them
    before ``load_state_dict`` brings the saved ones)."""
    return [
        [{k: group[k] for k in HPARAM_KEYS if k in group} for group in opt.param_groups]
        for opt in optimisers
    ]


def use_configured_hparams(
    *optimisers: torch.optim.Optimizer, configured: list[list[dict[str, Any]]] | None = None
) -> None:
    """Set each parameter group's learning rate and weight decay back to the configured ones
    (after ``load_state_dict`` brought the saved ones): those of ``configured``
    (:func:`configured_hparams`, per group), else the optimiser's defaults."""
    for i, opt in enumerate(optimisers):
        for j, group in enumerate(opt.param_groups):
            want = configured[i][j] if configured is not None else opt.defaults
            for key in HPARAM_KEYS:
                if key in want:
                    group[key] = want[key]


@torch.no_grad()
def compute_w_avg(G: Any, schema: Any, n_samples: int, seed: int) -> dict[str, torch.Tensor] | None:
    """Mean ``w`` of ``G`` per combination of categorical conditions (continuous at 0)."""
    cat, cont, _ = condition_grid(schema, limit=MAX_W_AVG_CONDITIONS)
    if n_samples <= 0 or len(cat) == 0:
        return None
    gen = torch.Generator().manual_seed(seed)
    dev = next(G.parameters()).device
    z = torch.randn(n_samples, G.z_dim, generator=gen).to(dev)
    ws = [
        G.mapping(z, c.expand(n_samples, -1).to(dev), k.expand(n_samples, -1).to(dev)).mean(0)
        for c, k in zip(cat, cont, strict=True)
    ]
    return {"cat": cat, "cont": cont, "w": torch.stack(ws).cpu()}


def checkpoint_state(trainer: Any) -> dict[str, Any]:
    """The checkpoint dict of a :class:`gliomagen.training.loop.Trainer` now (its weights,
    optimisers, counters, the RNG states, configuration, store and mean ``w``)."""
    tr = trainer
    return {
        "format_version": FORMAT_VERSION,
        "step": tr.step,
        "images_seen": tr.images_seen,
        "G": tr.G.state_dict(),
        "D": tr.D.state_dict(),
        "G_ema": tr.G_ema.state_dict(),
        "opt_G": tr.opt_G.state_dict(),
        "opt_D": tr.opt_D.state_dict(),
        "aug_p": tr.aug_p,
        "train_state": {
            "ada_sign_sum": tr.ada_sign_sum,
            "ada_count": tr.ada_count,
            "nan_streak": tr.nan_streak,
            "elapsed_s": tr.elapsed_s,
            **({"validation": tr.validator.state()} if tr.validator is not None else {}),
        },
        "rng": rng_state(),
        "config": to_dict(tr.cfg),
        "schema": tr.data.schema.to_dict(),
        "store_meta": tr.data.meta,
        "store": dict(tr.store_record),
        "size": list(tr.data.size),
        "n_modalities": tr.data.n_modalities,
        "w_avg": compute_w_avg(
            tr.G_ema, tr.data.schema, tr.cfg.train.w_avg_samples, tr.cfg.train.seed
        ),
        # the run started from another's weights (train --init): that checkpoint and its sha256
        **({"parent": tr.parent} if getattr(tr, "parent", None) else {}),
    }


__all__ = [
    "MAX_W_AVG_CONDITIONS",
    "RESUME_CHANGEABLE",
    "checkpoint_state",
    "compute_w_avg",
    "configured_hparams",
    "resume_changes",
    "use_configured_hparams",
]
