"""The named presets: ``default`` (what ``gliomagen train`` runs without ``--preset``),
``origin``, ``small-data``, ``demo-cpu`` and the 2D versions of the origin and small-data ones."""

from __future__ import annotations

from gliomagen.config.schema import (
    AugmentConfig,
    Config,
    DataConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
)
from gliomagen.errors import GliomagenError


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


def _default() -> Config:
    """The best measured recipe (the conditioning benchmark, 32^3 phantoms, 2-core CPU): the
    demo-cpu widths, a VAE-GAN whose mask is drawn as nested level sets, sampled from a
    16-Gaussian mixture fitted to the encoded training cases (per condition), with the tumour
    presence and focality terms and label consistency (a segmenter in D, trained on the real
    cases, must find G's own mask in G's images); validation by tumour structure when the store
    has a val split. On a 64^3 or finer store the model is hierarchical (``model.hierarchical_from``:
    a 32^3 whole volume and 32^3 high-resolution sub-volumes; the VAE-GAN and the other terms act
    on the whole volume). See docs/experiments/2026-12-06-conditioning-recipe.md and
    docs/experiments/2026-12-07-label-consistency.md."""
    cfg = _demo_cpu()
    cfg.preset = "default"
    m, lo, t = cfg.model, cfg.loss, cfg.train
    m.mask_head, m.d_mask, m.start = "nested", "straight_through", "latent"
    m.encoder, m.latent_prior, m.latent_prior_components = True, "fitted", 16
    lo.recon_weight, lo.recon_img_weight, lo.recon_img_balanced = 5.0, 5.0, True
    lo.kl_weight, lo.kl_warmup_steps = 0.2, 4_000  # KL annealing: 0.2 from step 0 kills the encoder
    lo.presence_weight, lo.focality_weight = 1.0, 3.0
    lo.seg_weight = 1.0  # label consistency (utility: +2.3 on the best real-data arm)
    m.hierarchical_from = 64  # 64^3 and finer: low-resolution whole volume + sub-volumes
    t.steps = 50_000  # --max-minutes is the usual bound
    t.threads = 0  # one per core less one: measured faster than all cores on a shared 2-core CPU
    t.latent_prior_every = 50  # G's adversarial draws come from the (refitted) fit too
    t.val_every, t.val_metric, t.val_samples, t.val_patience = 500, "mask", 64, 0
    t.memorisation_threshold = 8  # of 64 samples (by chance about 3 are flagged)
    t.val_required = False  # a store without a val split trains without validation
    cfg.data = DataConfig(size=None)  # the store's grid
    return cfg


def _origin_2d() -> Config:
    cfg = _origin()
    cfg.preset = "origin-2d"
    cfg.data = DataConfig(size=[256, 256], spatial_dims=2)
    return cfg


def _small_data_2d() -> Config:
    cfg = _small_data()
    cfg.preset = "small-data-2d"
    cfg.train.batch_size = 16
    cfg.data = DataConfig(spatial_dims=2)
    return cfg


_PRESETS = {"default": _default, "origin": _origin, "small-data": _small_data, "demo-cpu": _demo_cpu,
            "origin-2d": _origin_2d, "small-data-2d": _small_data_2d}  # fmt: skip
PRESETS: tuple[str, ...] = tuple(_PRESETS)


def preset(name: str) -> Config:
    """A fresh copy of a named preset (``default``, ``origin``, ``small-data``, ``demo-cpu``,
    ``origin-2d``, ``small-data-2d``)."""
    if name not in _PRESETS:
        raise GliomagenError(
            f"--preset {name!r}: unknown preset; choose one of {', '.join(PRESETS)}"
        )
    return _PRESETS[name]()


