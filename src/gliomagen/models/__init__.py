"""Networks: mapping, synthesis (images + mask logits), discriminator, augmentation.

Build them from a configuration and the conditioning schema of a store::

    G = build_generator(config, schema, size=(32, 32, 32))
    D = build_discriminator(config, schema, size=(32, 32, 32))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gliomagen import MASK_CLASSES
from gliomagen.data.conditions import ConditionSchema
from gliomagen.models.augment import AugmentPipe, ada_adjust
from gliomagen.models.discriminator import Discriminator, DOutput
from gliomagen.models.encoder import LatentEncoder
from gliomagen.models.fastops import set_activation_checkpointing
from gliomagen.models.generator import Generator, SynthesisNetwork
from gliomagen.models.grid import plan_grid
from gliomagen.models.hierarchical import HierarchicalSynthesis
from gliomagen.models.hierarchical_d import HierarchicalDiscriminator
from gliomagen.models.mapping import MappingNetwork
from gliomagen.models.segmenter import build_segmenter


def _model_cfg(cfg: Any) -> Any:
    return cfg.model if hasattr(cfg, "model") else cfg


def activation_checkpointing(cfg: Any) -> bool:
    """``train.activation_checkpointing`` of a full configuration (False for a ``model`` section)."""
    return bool(getattr(getattr(cfg, "train", None), "activation_checkpointing", False))


def cat_sizes(schema: ConditionSchema) -> list[int]:
    """Embedding table sizes of the schema's categorical fields (categories + unknown slot)."""
    return [f.num_embeddings for f in schema.categorical]


def build_generator(
    cfg: Any, schema: ConditionSchema, size: Sequence[int], n_modalities: int = 4
) -> Generator:
    """Build the generator.

    Args:
        cfg: a :class:`gliomagen.config.Config` or its ``model`` section.
        schema: the conditioning schema (from the store or a checkpoint).
        size: output grid, e.g. ``(32, 32, 32)``, ``(96, 112, 96)`` or ``(64, 64)`` (2D).
        n_modalities: image channels.

    Returns:
        A :class:`Generator` producing ``(images [N, n_modalities, *size], mask_logits [N, 4, *size])``.
    """
    m = _model_cfg(cfg)
    synthesis = None
    if getattr(m, "hierarchical", False):  # low-res whole volume + high-res boxes
        synthesis = HierarchicalSynthesis(
            tuple(size), m.low_res, m.sub_volume, m.w_dim, m.g_channels, m.g_max_channels,
            n_modalities, len(MASK_CLASSES), m.noise, m.mask_first, m.fused_modconv,
            getattr(m, "mask_head", "softmax"),
        )  # fmt: skip
    G = Generator(
        size=tuple(size),
        cat_sizes=cat_sizes(schema),
        n_cont=len(schema.continuous),
        n_img=n_modalities,
        n_cls=len(MASK_CLASSES),
        z_dim=m.z_dim,
        w_dim=m.w_dim,
        mapping_layers=m.mapping_layers,
        mapping_lr_mul=m.mapping_lr_mul,
        embed_dim=m.cond_embed_dim,
        style=m.style,
        channels=m.g_channels,
        max_channels=m.g_max_channels,
        noise=m.noise,
        mask_first=m.mask_first,
        fused_modconv=m.fused_modconv,
        mask_head=getattr(m, "mask_head", "softmax"),
        synthesis=synthesis,
    )
    if getattr(m, "start", "const") == "latent":
        G.synthesis.add_latent_start()
    if getattr(m, "encoder", False):  # VAE-GAN option: the encoder travels with G's weights
        # hierarchical: the encoder reads the low-resolution view the VAE-GAN terms compare
        enc_size = (m.low_res,) * len(tuple(size)) if synthesis is not None else tuple(size)
        G.encoder = LatentEncoder(
            enc_size,
            m.z_dim,
            n_img=n_modalities,
            n_cls=len(MASK_CLASSES),
            channels=m.g_channels,
            max_channels=m.g_max_channels,
            stem=m.d_stem,
        )
    set_activation_checkpointing(G, activation_checkpointing(cfg))
    return G


def build_discriminator(
    cfg: Any, schema: ConditionSchema, size: Sequence[int], n_modalities: int = 4
) -> Discriminator | HierarchicalDiscriminator:
    """Build the discriminator (same arguments as :func:`build_generator`); with
    ``model.hierarchical`` a :class:`HierarchicalDiscriminator`."""
    m = _model_cfg(cfg)
    kind: Any = Discriminator
    extra: dict[str, Any] = {}
    if getattr(m, "hierarchical", False):  # low-res whole volume + sub-volume with position
        kind = HierarchicalDiscriminator
        extra = {"low_res": m.low_res, "sub_volume": m.sub_volume}
    D = kind(
        size=tuple(size),
        **extra,
        cat_sizes=cat_sizes(schema),
        n_cont=len(schema.continuous),
        n_img=n_modalities,
        n_cls=len(MASK_CLASSES),
        channels=m.d_channels,
        max_channels=m.d_max_channels,
        mbstd_group=m.mbstd_group,
        aux_classifier=m.aux_classifier,
        spectral_norm=m.spectral_norm,
        stem=m.d_stem,
        dropout=float(getattr(m, "d_dropout", 0.0)),
    )
    if float(getattr(getattr(cfg, "loss", None), "seg_weight", 0.0)) > 0:
        # label consistency's segmenter lives in D: checkpointed, resumed and reduced with it
        D.add_module("seg", build_segmenter(n_modalities, spatial_dims=len(tuple(size))))
    set_activation_checkpointing(D, activation_checkpointing(cfg))
    return D


def build_augment(cfg: Any, spatial_dims: int, n_modalities: int = 4) -> AugmentPipe:
    """Build the augmentation pipeline from a :class:`gliomagen.config.Config` or its ``augment`` section."""
    a = cfg.augment if hasattr(cfg, "augment") else cfg
    return AugmentPipe(
        spatial_dims,
        n_modalities,
        flips=a.flips,
        translate=a.translate,
        rotate_deg=a.rotate_deg,
        scale_std=a.scale_std,
        brightness=a.brightness,
        contrast=a.contrast,
        cutout=a.cutout,
    )


__all__ = [
    "AugmentPipe",
    "DOutput",
    "Discriminator",
    "Generator",
    "HierarchicalDiscriminator",
    "HierarchicalSynthesis",
    "MappingNetwork",
    "SynthesisNetwork",
    "ada_adjust",
    "build_augment",
    "build_discriminator",
    "build_generator",
    "cat_sizes",
    "plan_grid",
]
