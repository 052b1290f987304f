"""Typed configuration of a training run: model, loss, augmentation, training, data.

A run starts from a *preset* (``origin``, ``small-data``, ``demo-cpu``), then a YAML file, then
``--set section.key=value`` overrides, each checked against the dataclass types; the resolved
configuration is validated once and saved as YAML in the run folder and as a plain dict in every
checkpoint. Problems are :class:`gliomagen.errors.GliomagenError` one-liners naming the key.

Presets:
    ``origin``: the origin design: AdaIN, LSGAN, Adam G 4e-4 / D 1e-4 with betas (0.5, 0.999),
    batch 4, 128^3 grid, no EMA, no augmentation; with the report's planned mitigations against
    overfitting: dropout 0.2 in D, weight decay 0.01 on G and D, validation every 2000 steps with
    early stopping.
    ``small-data``: StyleGAN2-ADA style for 60-150 cases: modulated convolutions, non-saturating loss
    with lazy R1, ADA, EMA of G, auxiliary classifier in D; validation every 2000 steps.
    ``demo-cpu``: a tiny (~1M-parameter) model at 32^3 that learns something in minutes on 2 cores;
    no validation unless asked (``--set train.val_every=N``).
    ``origin-2d``: the origin proposal's 2D recipe (before it moved to 3D): ``origin`` on 256x256
    slices of a slice store (``prepare --slices``), conditioned on the view (and position).
    ``small-data-2d``: ``small-data`` for slice stores of any size (``data.spatial_dims=2``),
    batch 16 (slices are cheap).

Example:
    >>> cfg = resolve_config("demo-cpu", overrides=["train.lr_g=0.001"])
    >>> cfg.train.lr_g
    0.001
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import write_text

LossKind = Literal["lsgan", "nonsaturating", "hinge", "wgan-gp"]
StyleKind = Literal["adain", "modulated"]


@dataclass
class ModelConfig:
    """Network shapes. Widths are channels at the output grid, doubling per halving up to a cap."""

    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    mapping_lr_mul: float = 0.01  # learning-rate multiplier of the mapping MLP
    cond_embed_dim: int = 32
    style: StyleKind = "modulated"  # adain (origin) | modulated (StyleGAN2 demodulation)
    g_channels: int = 16  # G channels at the output grid (x2 per halving, up to the cap)
    g_max_channels: int = 256
    d_channels: int = 16
    d_max_channels: int = 256
    noise: bool = True
    mask_first: bool = True  # image heads read the mask softmax (images drawn from the mask)
    mask_head: Literal["softmax", "nested"] = "softmax"  # nested: edema > enhancing > core as
    # nested level sets of one depth field (see gliomagen.models.mask_head)
    fused_modconv: bool = True  # grouped-conv modulation (False: scale activations; same maths)
    aux_classifier: bool = True  # AC-GAN head in D (predicts the conditions)
    mbstd_group: int = 4  # minibatch-std group (contiguous samples; 0 = off)
    spectral_norm: bool = False  # spectral normalisation of D's weights
    d_dropout: float = 0.0  # dropout probability on D's dense features (train mode only; 0 = off)
    d_stem: Literal["conv", "space_to_depth"] = "conv"  # space_to_depth: D starts at half grid
    start: Literal["const", "latent"] = "const"  # latent: + dense(w) at the start grid
    encoder: bool = False  # VAE-GAN: G carries an encoder q(z|x) for the reconstruction terms
    latent_prior: Literal["normal", "fitted"] = "normal"  # fitted (needs encoder): G_ema samples
    # z from a Gaussian fitted to the encoded training cases (gliomagen.training.latent_prior)
    latent_prior_components: int = 1  # >1: that fit is a mixture of this many Gaussians with a
    # shared covariance (draws stay near clusters of cases instead of between them)
    d_mask: Literal["soft", "straight_through"] = "soft"  # G's mask as D sees it: softmax, or
    # one-hot of the argmax with the softmax's gradient (what the user gets is the argmax)


@dataclass
class LossConfig:
    """Adversarial loss and regularisation (see :mod:`gliomagen.training.losses`)."""

    kind: LossKind = "nonsaturating"
    r1_gamma: float = 1.0  # R1 weight (0 = off); lazy: every r1_interval steps, weight x interval
    r1_interval: int = 16  # with R1 on, D's Adam lr/betas are scaled by interval/(interval+1)
    gp_weight: float = 10.0  # wgan-gp penalty weight
    wgan_drift: float = 1e-3
    aux_weight: float = 1.0  # AC-GAN loss weight (D on reals, G on fakes)
    recon_weight: float = 0.0  # VAE-GAN (needs model.encoder): mask cross-entropy of encoded reals
    recon_img_weight: float = 0.0  # VAE-GAN: L1 of the reconstructed images
    recon_img_balanced: bool = False  # that L1 as the mean of per-mask-class means (small
    # tumour regions weigh as much as the brain)
    kl_weight: float = 0.0  # VAE-GAN: KL(q(z|x) || N(0, I)), nats summed over z, mean over cases
    kl_warmup_steps: int = 0  # the KL weight ramps linearly from 0 to kl_weight over these steps
    # (KL annealing: a full KL weight from the start can switch the encoder off before it learns)
    presence_weight: float = 0.0  # tumour presence: in each of G's samples, the k voxels most
    # likely tumour should be tumour, k = presence_floor x the smallest training tumour with the
    # sample's condition code (hinge: zero once the sample has a tumour that large)
    presence_floor: float = 0.5  # that share of the smallest training tumour, in (0, 1]
    focality_weight: float = 0.0  # focality: the tumour outside the largest connected lesion of
    # each of G's samples, beyond the most any training case with its condition code has, is
    # pushed back to background (scattered satellites, or two lesions where the cases have one)


@dataclass
class AugmentConfig:
    """Discriminator augmentation (see :mod:`gliomagen.models.augment`)."""

    ada: bool = True  # adapt p from D's overfitting heuristic (False: fixed p)
    p: float = 0.0  # initial (or fixed) probability of each augmentation
    target: float = 0.6
    interval: int = 4  # steps between p updates
    speed_images: float = 50_000.0  # real images for p to move by 1
    flips: bool = True
    translate: float = 0.125
    rotate_deg: float = 10.0
    scale_std: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.2
    cutout: float = 0.25


@dataclass
class TrainConfig:
    """Optimisation, schedule, precision, logging. ``batch_size`` is the global batch of one step."""

    steps: int = 50_000  # optimiser steps in total (--max-minutes may stop earlier)
    batch_size: int = 4
    grad_accum: int = 1  # micro-batches per step (per-worker micro-batch = batch / accum / workers)
    lr_g: float = 2e-3
    lr_d: float = 2e-3
    betas_g: tuple[float, float] = (0.0, 0.99)
    betas_d: tuple[float, float] = (0.0, 0.99)
    ema_half_life_images: float = 2_000.0  # G_ema half-life in images (0 = G_ema is G)
    ema_rampup: float = 0.05  # half-life at most images_seen x rampup (0 = off)
    style_mixing: float = 0.0  # probability of mixing two latents per generated sample
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    compile: bool = False
    # recompute G's styled layers and D's residual blocks in the backward pass instead of storing
    # their activations: same gradients, far less activation memory, about 1/3 more compute
    activation_checkpointing: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0  # CPU threads per worker (0 = cores / workers on this node - 1, >= 1)
    num_workers: int = 0
    checkpoint_every: int = 1_000
    keep_checkpoints: int = 3
    sample_every: int = 1_000
    samples_per_condition: int = 2
    log_every: int = 50
    nan_patience: int = 20  # non-finite steps in a row before the run stops
    w_avg_samples: int = 1_000  # latents per condition for the checkpoint's mean w
    # with model.latent_prior=fitted: refit G's own prior every N steps, so that the adversarial
    # loss judges draws from the fit (what G_ema will sample) instead of N(0, I); 0 = never
    latent_prior_every: int = 0
    # decoupled weight decay (AdamW): every step p -= lr * weight_decay * p, apart from Adam's step
    weight_decay_g: float = 0.0
    weight_decay_d: float = 0.0
    # validation on the store's val split (gliomagen.training.validation); 0 = off
    val_every: int = 0  # steps between evaluations
    # best.pt and the plateau stop; mask: tumour-structure distance per condition (lower is better)
    val_metric: Literal["fd", "kid", "fidelity", "diversity", "mask"] = "fd"
    val_patience: int = 10  # evaluations without improvement before stopping (0 = never)
    val_min_delta: float = 0.0  # an improvement must exceed this
    val_samples: int = 64  # G_ema samples per evaluation
    val_batch_size: int = 8  # volumes per batch when sampling and extracting features
    val_pairs: int = 64  # sample pairs of the diversity (MS-SSIM) estimate
    val_probe_steps: int = 100  # training steps of the validation probe network (once per run)
    stop_on_memorisation: bool = True  # stop when memorisation_threshold samples are flagged
    memorisation_threshold: int = 8  # flagged samples that stop the run (chance: <~5% of samples)


@dataclass
class DataConfig:
    """What the run reads from the store. ``size``/``conditions`` ``None`` = the store's own."""

    split: str = "train"
    size: list[int] | None = None
    conditions: list[str] | None = None
    spatial_dims: int | None = None  # 2: a slice store, 3: a volume store, None: either


@dataclass
class Config:
    """A whole run configuration."""

    preset: str = "small-data"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def validate(self) -> Config:
        """Check ranges and combinations; raise GliomagenError naming the key. Returns ``self``."""
        _validate(self)
        return self


SECTIONS = ("model", "loss", "augment", "train", "data")

REMOVED_KEYS: dict[str, tuple[Any, str]] = {
    "model.tumour_crop": (0, "a second, tumour-crop discriminator"),
    "loss.volume_weight": (0.0, "class-volume matching"),
}
"""Keys that options measured not to help once had: ``key -> (its 'off' value, what it was)``.
A configuration or checkpoint holding the 'off' value loads as if the key were absent; any other
value is refused (:func:`set_value`)."""


def _origin() -> Config:
    return Config(
        preset="origin",
        model=ModelConfig(style="adain", aux_classifier=False, d_dropout=0.2),
        loss=LossConfig(kind="lsgan", r1_gamma=0.0),
        augment=AugmentConfig(ada=False, p=0.0),
        train=TrainConfig(
            batch_size=4,
            lr_g=4e-4,
            lr_d=1e-4,
            betas_g=(0.5, 0.999),
            betas_d=(0.5, 0.999),
            ema_half_life_images=0.0,
            weight_decay_g=0.01,  # the origin report's mitigations: L2 and dropout, early stopping
            weight_decay_d=0.01,
            val_every=2_000,
        ),
        data=DataConfig(size=[128, 128, 128]),
    )


def _small_data() -> Config:
    return Config(preset="small-data", train=TrainConfig(val_every=2_000))


def _demo_cpu() -> Config:
    return Config(
        preset="demo-cpu",
        model=ModelConfig(
            z_dim=32,
            w_dim=64,
            mapping_layers=2,
            cond_embed_dim=16,
            g_channels=8,
            g_max_channels=64,
            d_channels=8,
            d_max_channels=64,
            fused_modconv=False,
            mbstd_group=2,
            d_stem="space_to_depth",
        ),
        loss=LossConfig(kind="lsgan", r1_gamma=0.0, aux_weight=1.0),
        augment=AugmentConfig(ada=False, p=0.0),
        train=TrainConfig(
            steps=3_000,
            batch_size=4,
            lr_g=2e-3,
            lr_d=2e-3,
            ema_half_life_images=500.0,
            checkpoint_every=500,
            sample_every=500,
            log_every=25,
            w_avg_samples=256,
            threads=1,  # measured: on 2 shared cores, 2 OpenMP threads ran up to 6x slower than 1
            val_samples=16,  # validation is off (val_every=0); these keep it cheap when asked
            val_batch_size=4,
            val_pairs=24,
            val_probe_steps=60,
            memorisation_threshold=4,
        ),
        data=DataConfig(size=[32, 32, 32]),
    )


def _origin_2d() -> Config:
    cfg = _origin()
    cfg.preset = "origin-2d"
    cfg.data = DataConfig(size=[256, 256], spatial_dims=2)
    cfg.train.val_every = 0  # validation (training.validation) measures 3D volumes only
    return cfg


def _small_data_2d() -> Config:
    cfg = _small_data()
    cfg.preset = "small-data-2d"
    cfg.train.batch_size = 16
    cfg.data = DataConfig(spatial_dims=2)
    cfg.train.val_every = 0  # validation (training.validation) measures 3D volumes only
    return cfg


_PRESETS = {"origin": _origin, "small-data": _small_data, "demo-cpu": _demo_cpu,
            "origin-2d": _origin_2d, "small-data-2d": _small_data_2d}  # fmt: skip
PRESETS: tuple[str, ...] = tuple(_PRESETS)


def preset(name: str) -> Config:
    """A fresh copy of a named preset (``origin``, ``small-data``, ``demo-cpu``, ``origin-2d``,
    ``small-data-2d``)."""
    if name not in _PRESETS:
        raise GliomagenError(
            f"--preset {name!r}: unknown preset; choose one of {', '.join(PRESETS)}"
        )
    return _PRESETS[name]()


# -- typed assignment -----------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to type ``tp`` or raise GliomagenError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    bad = GliomagenError(f"{key}={value!r}: expected {_type_name(tp)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except GliomagenError:
                pass
        raise bad
    if origin is Literal:
        if value not in args:
            raise bad
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(v, args[0], key) for v in value]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise bad
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad


def _unknown(kind: str, name: str, known: list[str]) -> GliomagenError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    return GliomagenError(f"unknown {kind} {name!r}{hint}")


def set_value(cfg: Config, key: str, value: Any) -> None:
    """Set ``section.name`` on ``cfg`` after type checking (in place)."""
    parts = key.split(".")
    if parts == ["preset"]:
        cfg.preset = _coerce(value, str, key)
        return
    if len(parts) != 2:
        raise GliomagenError(f"config key {key!r}: expected section.name, e.g. train.lr_g")
    if key in REMOVED_KEYS:
        off, what = REMOVED_KEYS[key]
        if value == off:  # an older configuration or checkpoint with the option off
            return
        raise GliomagenError(
            f"{key}={value!r}: this option ({what}) was removed, as it was measured not to help; "
            f"delete {key} from the configuration"
        )
    section, name = parts
    if section not in SECTIONS:
        raise _unknown("config section", section, list(SECTIONS))
    obj = getattr(cfg, section)
    hints = typing.get_type_hints(type(obj))
    if name not in hints:
        raise _unknown(f"config key in {section}:", name, [f.name for f in dataclasses.fields(obj)])
    setattr(obj, name, _coerce(value, hints[name], key))


def apply_overrides(cfg: Config, items: list[str]) -> Config:
    """Apply ``--set section.key=value`` strings (values parsed as YAML scalars/lists)."""
    for item in items:
        if "=" not in item:
            raise GliomagenError(
                f"--set {item!r}: expected section.key=value, e.g. train.lr_g=0.001"
            )
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        set_value(cfg, key.strip(), value)
    return cfg


def merge_dict(cfg: Config, data: dict[str, Any], source: str = "config") -> Config:
    """Apply a nested dict ``{section: {key: value}}`` (e.g. from YAML) onto ``cfg``."""
    if not isinstance(data, dict):
        raise GliomagenError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    for section, values in data.items():
        if section == "preset":
            continue
        if section not in SECTIONS:
            raise GliomagenError(
                f"{source}: {_unknown('config section', str(section), list(SECTIONS))}"
            )
        if not isinstance(values, dict):
            raise GliomagenError(f"{source}: section {section!r} must be a mapping")
        for key, value in values.items():
            try:
                set_value(cfg, f"{section}.{key}", value)
            except GliomagenError as exc:
                raise GliomagenError(f"{source}: {exc}") from None
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    """A plain, YAML/``weights_only``-safe dict (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    out: dict[str, Any] = {"preset": cfg.preset}
    for s in SECTIONS:
        out[s] = {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, s)).items()}
    return out


def from_dict(data: dict[str, Any], source: str = "config") -> Config:
    """Rebuild a Config from :func:`to_dict` output (defaults fill missing keys)."""
    cfg = Config(preset=str(data.get("preset", "custom")))
    return merge_dict(cfg, data, source)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a dict; GliomagenError for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise GliomagenError(f"--config {p}: file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        raise GliomagenError(f"{p}: not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise GliomagenError(
            f"{p}: expected a mapping of sections (model, loss, augment, train, data)"
        )
    return data


def dump_yaml(cfg: Config, path: str | os.PathLike[str]) -> Path:
    """Write the configuration as YAML atomically (:func:`gliomagen.io.atomic.write_text`)."""
    return write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def resolve_config(
    preset_name: str | None = None,
    yaml_path: str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """Preset -> YAML file -> ``--set`` overrides, validated.

    The base preset is ``preset_name``, else the YAML file's ``preset:`` key, else ``small-data``.
    """
    data = load_yaml(yaml_path) if yaml_path is not None else {}
    base = preset_name or data.get("preset") or "small-data"
    cfg = preset(str(base))
    if data:
        merge_dict(cfg, data, str(yaml_path))
    apply_overrides(cfg, list(overrides or []))
    return cfg.validate()


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
    "train.ema_half_life_images",
    "train.ema_rampup",
    "augment.translate",
    "augment.rotate_deg",
    "augment.scale_std",
    "augment.brightness",
    "augment.contrast",
)
POSITIVE = ("train.lr_g", "train.lr_d", "model.mapping_lr_mul", "augment.speed_images")
UNIT_INTERVAL = ("augment.p", "augment.target", "train.style_mixing")


def _need(cfg: Config, ok: bool, key: str, what: str) -> None:
    """Raise ``GliomagenError("KEY=VALUE: WHAT")`` unless ``ok``."""
    if not ok:
        raise GliomagenError(f"{key}={_get(cfg, key)!r}: {what}")


def _validate(cfg: Config) -> None:
    _validate_ranges(cfg)
    _validate_combinations(cfg)
    _validate_data(cfg)


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
    _need(cfg, t.val_samples >= 2, "train.val_samples", "must be >= 2 (FD, KID and diversity need pairs)")
    if t.val_every > 0 and t.stop_on_memorisation:
        _need(
            cfg,
            t.memorisation_threshold <= t.val_samples,
            "train.memorisation_threshold",
            f"must be <= train.val_samples={t.val_samples}",
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
        (not recon or cfg.model.encoder, "loss.recon_weight", "reconstruction terms need model.encoder=true"),
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
    _need(cfg, d.spatial_dims in (None, 2, 3), "data.spatial_dims", "must be 2 (slices), 3 (volumes) or null")
    if d.size is not None:
        from gliomagen.models.grid import plan_grid  # config sits below models: checked lazily

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
        key = f"data.size={'x'.join(map(str, d.size))}" if d.size is not None else f"data.spatial_dims={d.spatial_dims}"
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
