"""The typed configuration: one dataclass per section, the keys and their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gliomagen.config.validate import validate_config

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
    d_freeze_blocks: int = 0  # FreezeD (fine-tuning): D's input conv and first N residual blocks
    # from the input side keep their weights (left out of D's optimiser); 0 = train all of D
    start: Literal["const", "latent"] = "const"  # latent: + dense(w) at the start grid
    encoder: bool = False  # VAE-GAN: G carries an encoder q(z|x) for the reconstruction terms
    latent_prior: Literal["normal", "fitted"] = "normal"  # fitted (needs encoder): G_ema samples
    # z from a Gaussian fitted to the encoded training cases (gliomagen.training.latent_prior)
    latent_prior_components: int = 1  # >1: that fit is a mixture of this many Gaussians with a
    # shared covariance (draws stay near clusters of cases instead of between them)
    # hierarchical (HA-GAN-like, gliomagen.models.hierarchical): G renders the whole volume at
    # low_res^3 and, in training, sub_volumes boxes of sub_volume^3 at the full grid; D judges both
    hierarchical: bool = False
    hierarchical_from: int = 0  # >0: hierarchical on for a 3D store grid whose largest side is at
    # least this (once the store is known; a grid hierarchical mode cannot take stays full-volume)
    low_res: int = 32  # side of the low-resolution whole volume (full side / a power of two)
    sub_volume: int = 32  # side of a high-resolution training sub-volume (and inference tile)
    sub_volumes: int = 1  # sub-volumes per sample per step
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
    recon_exclude: list[str] = field(default_factory=list)  # categorical name=value (e.g.
    # cohort=SSA): cases with it are never reconstruction targets (their KL stays), so the
    # generator is not taught to rebuild those patients case by case
    recon_scarce_ratio: float = 0.0  # a value of the ``cohort`` condition with fewer training
    # cases than this share of the largest cohort's is excluded as recon_exclude would (0: off;
    # e.g. 0.5 keeps a 16-case site out of the reconstruction beside 60 public cases)
    presence_weight: float = 0.0  # tumour presence: in each of G's samples, the k voxels most
    # likely tumour should be tumour, k = presence_floor x the smallest training tumour with the
    # sample's condition code (hinge: zero once the sample has a tumour that large)
    presence_floor: float = 0.5  # that share of the smallest training tumour, in (0, 1]
    focality_weight: float = 0.0  # focality: the tumour outside the largest connected lesion of
    # each of G's samples, beyond the most any training case with its condition code has, is
    # pushed back to background (scattered satellites, or two lesions where the cases have one)
    covariate_weight: float = 0.0  # covariate consistency: each of G's soft masks holds the
    # tumour volume and enhancing fraction its wt_volume_ml / enhancing_fraction conditions ask
    # for (when those are conditions): L1 of the fraction, log-ratio of the volume beyond 25%
    seg_weight: float = 0.0  # label consistency: a segmenter in D (D.seg) learns the real cases'
    # tumour regions from their images; G's images must give G's own mask back through it


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
    device: str = "auto"  # auto (CUDA when present, else CPU), cpu, cuda or cuda:N (one worker)
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
    lr_mapping_scale: float = 1.0  # G's mapping MLP learns at lr_g x this (fine-tuning: < 1)
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
    # false: a store without a usable val split (fewer than 2 val cases) trains without
    # validation (logged; the last checkpoint is the one to use) instead of refusing the run
    val_required: bool = True
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
        validate_config(self)
        return self


SECTIONS = ("model", "loss", "augment", "train", "data")

REMOVED_KEYS: dict[str, tuple[Any, str]] = {
    "model.tumour_crop": (0, "a second, tumour-crop discriminator"),
    "loss.volume_weight": (0.0, "class-volume matching"),
}
"""Keys that options measured not to help once had: ``key -> (its 'off' value, what it was)``.
A configuration or checkpoint holding the 'off' value loads as if the key were absent; any other
value is refused (:func:`set_value`)."""
