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

from gliomagen.config.presets import PRESETS, preset
from gliomagen.config.schema import (
    REMOVED_KEYS,
    SECTIONS,
    AugmentConfig,
    Config,
    DataConfig,
    LossConfig,
    LossKind,
    ModelConfig,
    StyleKind,
    TrainConfig,
)
from gliomagen.config.validate import apply_grid_defaults, check_hierarchical, check_store_size
from gliomagen.config.values import (
    apply_overrides,
    dump_yaml,
    from_dict,
    load_yaml,
    merge_dict,
    resolve_config,
    set_value,
    to_dict,
)

__all__ = [
    "AugmentConfig",
    "Config",
    "DataConfig",
    "LossConfig",
    "LossKind",
    "ModelConfig",
    "PRESETS",
    "REMOVED_KEYS",
    "SECTIONS",
    "StyleKind",
    "TrainConfig",
    "apply_overrides",
    "check_hierarchical",
    "check_store_size",
    "apply_grid_defaults",
    "dump_yaml",
    "from_dict",
    "load_yaml",
    "merge_dict",
    "preset",
    "resolve_config",
    "set_value",
    "to_dict",
]
