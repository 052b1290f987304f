"""Validation of a resolved configuration: ranges, combinations, grid; the store check."""

from __future__ import annotations

import copy
import re
import typing
from typing import TYPE_CHECKING, Any

from gliomagen.config.grid import plan_grid
from gliomagen.errors import GliomagenError

if TYPE_CHECKING:  # type-only: schema imports this module at run time
    from gliomagen.config.schema import Config

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
"""The values of ``train.device``."""

# -- validation -----------------------------------------------------------------------------------
AT_LEAST_ONE = (
    "model.z_dim",
    "model.w_dim",
    "model.mapping_layers",
    "model.latent_prior_components",
    "model.cond_embed_dim",
    "model.g_channels",
    "model.g_max_channels",
    "model.d_channels",
    "model.d_max_channels",
    "train.steps",
    "train.batch_size",
    "train.grad_accum",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.sample_every",
    "train.log_every",
    "train.nan_patience",
    "train.val_batch_size",
    "train.val_pairs",
    "train.val_probe_steps",
    "train.memorisation_threshold",
    "loss.r1_interval",
    "augment.interval",
)
NON_NEGATIVE = (
    "model.mbstd_group",
    "model.d_freeze_blocks",
    "train.threads",
    "train.num_workers",
    "train.samples_per_condition",
    "train.w_avg_samples",
    "train.latent_prior_every",
    "loss.kl_warmup_steps",
    "train.val_every",
    "train.val_patience",
    "train.val_min_delta",
    "train.weight_decay_g",
    "train.weight_decay_d",
    "loss.r1_gamma",
    "loss.gp_weight",
    "loss.wgan_drift",
    "loss.aux_weight",
    "loss.recon_weight",
    "loss.recon_img_weight",
    "loss.kl_weight",
    "loss.presence_weight",
    "loss.focality_weight",
    "loss.covariate_weight",
    "loss.seg_weight",
    "train.ema_half_life_images",
    "train.ema_rampup",
    "augment.translate",
    "augment.rotate_deg",
    "augment.scale_std",
    "augment.brightness",
    "augment.contrast",
)
POSITIVE = (
    "train.lr_g",
    "train.lr_d",
    "train.lr_mapping_scale",
    "model.mapping_lr_mul",
    "augment.speed_images",
)
UNIT_INTERVAL = ("augment.p", "augment.target", "train.style_mixing", "loss.recon_scarce_ratio")


def _need(cfg: Config, ok: bool, key: str, what: str) -> None:
    """Raise ``GliomagenError("KEY=VALUE: WHAT")`` unless ``ok``."""
    if not ok:
        raise GliomagenError(f"{key}={_get(cfg, key)!r}: {what}")


def validate_config(cfg: Config) -> None:
    """Check ranges, combinations and the data grid; raise GliomagenError naming the key."""
    _validate_ranges(cfg)
    _validate_combinations(cfg)
    _validate_data(cfg)
    _need(cfg, cfg.model.hierarchical_from >= 0, "model.hierarchical_from", "must be >= 0 (0: off)")
    if cfg.model.hierarchical:
        check_hierarchical(cfg, cfg.data.size)


def apply_grid_defaults(cfg: Config, size: typing.Sequence[int]) -> str | None:
    """Switch ``model.hierarchical`` on in place when the store's 3D grid reaches
    ``model.hierarchical_from`` (the default preset: 64) and the grid fits hierarchical mode.

    Returns a line for the run's log saying what was decided, or ``None`` when the setting does
    not apply (off, hierarchical already, a 2D or smaller grid).
    """
    m = cfg.model
    sides = [int(s) for s in size]
    if (
        m.hierarchical
        or m.hierarchical_from <= 0
        or len(sides) != 3
        or max(sides) < m.hierarchical_from
    ):
        return None
    grid = "x".join(map(str, sides))
    trial = copy.deepcopy(cfg)
    trial.model.hierarchical = True
    try:
        check_hierarchical(trial, sides)
    except GliomagenError as exc:
        return f"model.hierarchical_from={m.hierarchical_from}: the {grid} grid trains full-volume ({exc})"
    m.hierarchical = True
    return (
        f"model.hierarchical: on, the {grid} grid reaches model.hierarchical_from={m.hierarchical_from} "
        f"(whole volume at {m.low_res}^3, {m.sub_volumes} sub-volume(s) of {m.sub_volume}^3 per sample)"
    )


def check_hierarchical(cfg: Config, size: typing.Sequence[int] | None) -> None:
    """Refuse a hierarchical configuration (``model.hierarchical``) that does not fit itself or
    the grid ``size`` (``None``: the store's, checked once it is known), with one line naming the key."""
    m, lo = cfg.model, cfg.loss
    for ok, key, what in (
        (cfg.data.spatial_dims != 2, "data.spatial_dims", "model.hierarchical is for 3D volumes, not 2D slices"),
        (m.style == "modulated", "model.style", "model.hierarchical needs modulated (AdaIN normalises over a sub-volume)"),
        (m.sub_volumes >= 1, "model.sub_volumes", "must be >= 1"),
        (lo.kind != "wgan-gp", "loss.kind", "wgan-gp is not supported with model.hierarchical yet"),
        (m.d_freeze_blocks == 0, "model.d_freeze_blocks", "is not supported with model.hierarchical (set 0)"),
        (not cfg.train.compile, "train.compile", "is not supported with model.hierarchical yet (set false)"),
    ):  # fmt: skip
        _need(cfg, ok, key, what)
    if size is None:
        return
    sides = [int(s) for s in size]
    grid = "x".join(map(str, sides))
    _need(cfg, len(sides) == 3, "model.hierarchical", f"is for 3D volumes, not a {grid} grid")
    _need(cfg, len(set(sides)) == 1, "model.hierarchical", f"needs a cubic grid, got {grid}")
    side, low = sides[0], m.low_res
    factor = side // low if low > 0 else 0
    _need(
        cfg,
        low > 0 and side % low == 0 and factor >= 2 and factor & (factor - 1) == 0,
        "model.low_res",
        f"must be the grid side {side} divided by a power of two >= 2 (e.g. {side // 2}, {side // 4})",
    )
    _need_grid("model.low_res", low)
    sub = m.sub_volume
    _need(
        cfg,
        sub % factor == 0 and factor <= sub <= side,
        "model.sub_volume",
        f"must be a multiple of {factor} (grid {side} / model.low_res {low}) and at most {side}",
    )
    _need_grid("model.sub_volume", sub)


def _need_grid(key: str, side: int) -> None:
    """``key=side`` must be a cube side the synthesis network can plan."""
    try:
        plan_grid((side,) * 3)
    except ValueError as exc:
        raise GliomagenError(f"{key}={side}: {exc}") from None


def _validate_ranges(cfg: Config) -> None:
    """Each key's own range (and the validation sample counts)."""
    t = cfg.train
    for key in AT_LEAST_ONE:
        _need(cfg, _get(cfg, key) >= 1, key, "must be >= 1")
    for key in NON_NEGATIVE:
        _need(cfg, _get(cfg, key) >= 0, key, "must be >= 0")
    for key in POSITIVE:
        _need(cfg, _get(cfg, key) > 0, key, "must be > 0")
    for key in UNIT_INTERVAL:
        _need(cfg, 0.0 <= _get(cfg, key) <= 1.0, key, "must be in [0, 1]")
    _need(cfg, 0.0 <= cfg.augment.cutout < 1.0, "augment.cutout", "must be in [0, 1)")
    _need(cfg, 0.0 < cfg.loss.presence_floor <= 1.0, "loss.presence_floor", "must be in (0, 1]")
    _need(cfg, 0.0 <= cfg.model.d_dropout < 1.0, "model.d_dropout", "must be in [0, 1)")
    _need(
        cfg,
        t.val_samples >= 2,
        "train.val_samples",
        "must be >= 2 (FD, KID and diversity need pairs)",
    )
    if t.val_every > 0 and t.stop_on_memorisation:
        _need(
            cfg,
            t.memorisation_threshold <= t.val_samples,
            "train.memorisation_threshold",
            f"must be <= train.val_samples={t.val_samples}",
        )
    _need(
        cfg,
        DEVICE.fullmatch(t.device) is not None,
        "train.device",
        "must be auto, cpu, cuda or cuda:N",
    )
    for key in ("train.betas_g", "train.betas_d"):
        _need(cfg, all(0.0 <= b < 1.0 for b in _get(cfg, key)), key, "betas must be in [0, 1)")


def _validate_combinations(cfg: Config) -> None:
    """Keys that only make sense together (batch split, split name, the VAE-GAN and its prior)."""
    t = cfg.train
    _need(
        cfg,
        t.batch_size % t.grad_accum == 0,
        "train.batch_size",
        f"must be divisible by train.grad_accum={t.grad_accum}",
    )
    _need(
        cfg,
        cfg.data.split in ("train", "val", "test", "all"),
        "data.split",
        "must be train, val, test or all",
    )
    recon = cfg.loss.recon_weight > 0 or cfg.loss.recon_img_weight > 0
    for ok, key, what in (
        (
            not recon or cfg.model.encoder,
            "loss.recon_weight",
            "reconstruction terms need model.encoder=true",
        ),
        (
            not cfg.loss.recon_exclude or cfg.model.encoder,
            "loss.recon_exclude",
            "excludes cases from the VAE-GAN's reconstruction: needs model.encoder=true",
        ),
        (
            cfg.loss.recon_scarce_ratio == 0 or cfg.model.encoder,
            "loss.recon_scarce_ratio",
            "excludes cases from the VAE-GAN's reconstruction: needs model.encoder=true",
        ),
        (
            not cfg.model.encoder or (recon and cfg.loss.kl_weight > 0),
            "model.encoder",
            "an encoder needs loss.recon_weight or loss.recon_img_weight, and loss.kl_weight, > 0",
        ),
        (
            t.latent_prior_every == 0 or cfg.model.latent_prior == "fitted",
            "train.latent_prior_every",
            "refits the fitted latent prior: set model.latent_prior=fitted (or 0)",
        ),
        (
            cfg.model.latent_prior == "normal" or cfg.model.encoder,
            "model.latent_prior",
            "fitted is fitted from the VAE-GAN encoder: set model.encoder=true",
        ),
        (
            cfg.model.latent_prior_components == 1 or cfg.model.latent_prior == "fitted",
            "model.latent_prior_components",
            "a mixture is a fitted prior: set model.latent_prior=fitted (or 1)",
        ),
    ):
        _need(cfg, ok, key, what)


def _validate_data(cfg: Config) -> None:
    """``data.spatial_dims`` and a ``data.size`` the networks can be built for."""
    d = cfg.data
    _need(
        cfg,
        d.spatial_dims in (None, 2, 3),
        "data.spatial_dims",
        "must be 2 (slices), 3 (volumes) or null",
    )
    if d.size is not None:
        try:
            plan_grid(d.size)
        except ValueError as exc:
            raise GliomagenError(f"data.size={d.size}: unsupported size: {exc}") from None
        _need(
            cfg,
            d.spatial_dims is None or len(d.size) == d.spatial_dims,
            "data.size",
            f"has {len(d.size)} sides but data.spatial_dims={d.spatial_dims}",
        )


def check_store_size(cfg: Config, size: typing.Sequence[int], name: str = "store") -> None:
    """Refuse a store whose grid does not suit ``cfg``, with one line naming the mismatch.

    A 3D configuration (``data.size`` with three sides, or ``data.spatial_dims=3``) on a 2D slice
    store, or a 2D one on a volume store, is named as such, with the presets that fit the store;
    otherwise a ``data.size`` must equal the store's grid.

    Raises:
        GliomagenError: e.g. ``preset origin: data.size=128x128x128 is for 3D volumes but STORE is
            a 2D slice store (64x64); use --preset origin-2d or small-data-2d, or --set data.size=null``.
    """
    dims = len(size)
    d = cfg.data
    want = d.spatial_dims or (len(d.size) if d.size is not None else None)
    grid = "x".join(str(int(s)) for s in size)
    if want is not None and want != dims:
        key = (
            f"data.size={'x'.join(map(str, d.size))}"
            if d.size is not None
            else f"data.spatial_dims={d.spatial_dims}"
        )
        kind = {2: "2D slices", 3: "3D volumes"}.get(want, f"{want}-D items")
        store = {2: "a 2D slice store", 3: "a 3D volume store"}.get(dims, f"a {dims}-D store")
        fits = "origin-2d or small-data-2d" if dims == 2 else "origin, small-data or demo-cpu"
        raise GliomagenError(
            f"preset {cfg.preset}: {key} is for {kind} but {name} is {store} ({grid}); "
            f"use --preset {fits}, or --set data.size=null --set data.spatial_dims=null"
        )
    if d.size is not None and tuple(int(s) for s in d.size) != tuple(int(s) for s in size):
        raise GliomagenError(
            f"data.size={'x'.join(map(str, d.size))} but {name} holds {grid} "
            f"{'slices' if dims == 2 else 'volumes'}; "
            f"prepare a store at that size or --set data.size=null"
        )


def _get(cfg: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)
