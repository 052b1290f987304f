"""The resolutions of a network: the start grid and number of doublings, channels per level, and
the low-resolution view of full-grid cases that a hierarchical model's low-resolution parts see."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gliomagen.config.grid import MAX_SIDE, MIN_SIDE, plan_grid


def level_channels(level: int, n_levels: int, base: int, max_channels: int) -> int:
    """Channels at ``level`` (0 = coarsest): ``base`` at the finest, doubling per halving, capped."""
    return int(min(max_channels, base * 2 ** (n_levels - 1 - level)))


def low_view(
    img: torch.Tensor, onehot: torch.Tensor, factor: int, hard: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The low-resolution view of full-grid 3D cases: block averages over ``factor``^3 voxels (the
    images' area downsampling; the mask's class shares, with ``hard`` the one-hot of each low
    voxel's largest share)."""
    low_img = F.avg_pool3d(img, factor)  # [n, C, *S/f]
    share = F.avg_pool3d(onehot.float(), factor)  # [n, K, *S/f]
    if hard:
        share = F.one_hot(share.argmax(1), share.shape[1]).movedim(-1, 1).to(share.dtype)
    return low_img, share


__all__ = ["MAX_SIDE", "MIN_SIDE", "level_channels", "low_view", "plan_grid"]
