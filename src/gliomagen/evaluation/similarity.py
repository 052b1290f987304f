"""Voxel-wise similarity of 3D volumes inside the brain: SSIM, MS-SSIM, PSNR and MSE.

The SSIM maths is MONAI's (``monai.metrics.regression.compute_ssim_and_cs``: Gaussian window,
"valid" filtering, constants ``k1 = 0.01``, ``k2 = 0.03``); the Gaussian window is applied as three
1D passes (band-matrix products), which gives the same numbers as MONAI's full 3D kernel (it is
their outer product) about ten times faster on CPU. What MONAI does not do, and this module adds, is averaging the SSIM and
contrast maps *inside the brain* only: a store's background is exactly -1 in every case, so a
plain average over the cube rewards two volumes for sharing empty space. With ``mask=None`` the
results equal MONAI's ``SSIMMetric`` / ``compute_ms_ssim`` (see the tests).

MS-SSIM scales: MONAI's default (5 scales, 11-voxel window) needs volumes of at least 161 voxels
per side. Volumes here are 32^3-128^3, so :func:`ms_ssim` uses a 7-voxel window (sigma 1.0) and as
many scales as keep the coarsest image at least one window wide, at most 5: 2 scales at 16^3,
3 at 32^3, 4 at 64^3, 5 at 128^3. The weights are the first scales' weights of Wang et al. (2003),
``(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)``, renormalised to sum to 1. Values computed at
different sizes are therefore not comparable with each other; within one evaluation they are.

2-D slices (``[B, C, H, W]``, a slice store) go straight through MONAI's
``compute_ssim_and_cs`` with ``spatial_dims=2`` (the same formulas and window), with the same
brain masking; MS-SSIM pools with 2-D average pooling and picks its scales the same way
(2 scales at 16^2, 3 at 32^2, 4 at 64^2, 5 from 128^2).

Images are expected in the store's range [-1, 1] (``data_range = 2``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
DATA_RANGE = 2.0
BACKGROUND_THRESHOLD = -0.98
"""A voxel is brain where any modality exceeds this value (the store's background is exactly -1)."""


def brain_mask(images: torch.Tensor, threshold: float = BACKGROUND_THRESHOLD) -> torch.Tensor:
    """Brain voxels of images ``[B, C, *S]``: any channel above ``threshold`` -> ``[B, *S]`` bool."""
    return images.amax(dim=1) > threshold


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """The 1D Gaussian window MONAI builds its 3D kernel from: ``[size]``, sums to 1."""
    dist = torch.arange(start=(1 - size) / 2, end=(1 + size) / 2, step=1, dtype=torch.float64)
    gauss = torch.exp(-((dist / sigma) ** 2) / 2)
    return (gauss / gauss.sum()).float()


def _band_matrix(window: torch.Tensor, length: int) -> torch.Tensor:
    """``[length, length - k + 1]`` matrix whose product with a signal is its 'valid' correlation with ``window``."""
    k = window.numel()
    out = torch.zeros(length, length - k + 1, dtype=window.dtype)
    for j in range(length - k + 1):
        out[j : j + k, j] = window
    return out


def _filter3d(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of ``x [B, C, D, H, W]`` -> ``[B, C, D-k+1, H-k+1, W-k+1]``.

    Each 1D pass is a product with a band matrix (a BLAS matrix product), which on CPU is about ten
    times faster than ``conv3d`` with a ``k x 1 x 1`` kernel and gives the same sums.
    """
    b, c, d, h, w = x.shape
    k = window.numel()
    win = window.to(device=x.device, dtype=x.dtype)
    y = x.reshape(b * c, d, h, w) @ _band_matrix(win, w).to(x.device)  # [BC, D, H, W']
    y = _band_matrix(win, h).to(x.device).T @ y  # [BC, D, H', W']
    y = _band_matrix(win, d).to(x.device).T @ y.reshape(b * c, d, -1)  # [BC, D', H'W']
    return y.reshape(b, c, d - k + 1, h - k + 1, w - k + 1)


def ssim_and_cs_maps(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    win_size: int = 11,
    sigma: float = 1.5,
    data_range: float = DATA_RANGE,
    k1: float = 0.01,
    k2: float = 0.03,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-sensitivity maps of ``x`` and ``y`` ``[B, C, D, H, W]`` (MONAI's formulas),
    or of 2-D slices ``[B, C, H, W]`` (MONAI's ``compute_ssim_and_cs``, ``spatial_dims=2``).

    ``x`` may also be a single volume ``[1, C, D, H, W]`` compared with every volume of ``y``: its
    local statistics are then filtered once, not ``B`` times.

    Returns:
        ``(ssim, cs)``, each ``[B, C, D - win + 1, H - win + 1, W - win + 1]`` (2-D: ``[B, C, H - win + 1, W - win + 1]``).
    """
    if x.ndim not in (4, 5) or x.shape[1:] != y.shape[1:] or x.shape[0] not in (1, y.shape[0]):
        raise ValueError(
            f"SSIM: expected [B, C, D, H, W] or [B, C, H, W] tensors of one shape (or x with B = 1), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if min(x.shape[2:]) < win_size:
        raise ValueError(
            f"SSIM: volume {tuple(x.shape[2:])} is smaller than the {win_size}-voxel window"
        )
    x, y = x.float(), y.float()
    if x.ndim == 4:
        # MONAI: a heavy import (seconds), only for 2-D slices
        from monai.metrics.regression import compute_ssim_and_cs

        return compute_ssim_and_cs(
            x.expand_as(y), y, spatial_dims=2, kernel_size=[win_size] * 2,
            kernel_sigma=[sigma] * 2, data_range=data_range, k1=k1, k2=k2,
        )  # fmt: skip
    window = gaussian_window(win_size, sigma)
    mu_x, mu_y = _filter3d(x, window), _filter3d(y, window)
    sigma_x = _filter3d(x * x, window) - mu_x * mu_x
    sigma_y = _filter3d(y * y, window) - mu_y * mu_y
    sigma_xy = _filter3d(x * y, window) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    cs = (2 * sigma_xy + c2) / (sigma_x + sigma_y + c2)
    ssim = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return ssim, cs


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None, win_size: int) -> torch.Tensor:
    """Per-case mean of a valid-filtered map ``[B, C, *s]`` over the window centres inside ``mask``."""
    if mask is None:
        return values.flatten(1).mean(1)
    pad = (win_size - 1) // 2
    inner = tuple(slice(pad, pad + n) for n in values.shape[2:])
    m = mask[(slice(None), *inner)].unsqueeze(1).to(values.dtype)  # [B, 1, *s]
    m = m.expand_as(values)
    count = m.flatten(1).sum(1)
    total = (values * m).flatten(1).sum(1)
    full = values.flatten(1).mean(1)
    return torch.where(count > 0, total / count.clamp_min(1), full)


def _pair_mask(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | bool | None
) -> torch.Tensor | None:
    if mask is None or mask is False:
        return None
    if mask is True:
        return brain_mask(x) | brain_mask(y)
    return mask.bool()


@torch.no_grad()
def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | bool | None = True,
    *,
    win_size: int = 11,
    sigma: float = 1.5,
    data_range: float = DATA_RANGE,
) -> torch.Tensor:
    """3D (or 2D) SSIM per case, averaged over channels and over the brain.

    Args:
        x: images ``[B, C, D, H, W]`` (or slices ``[B, C, H, W]``).
        y: images of the same shape.
        mask: ``True`` = union of both brains (default), ``None``/``False`` = the whole cube (MONAI's
            ``SSIMMetric``), or an explicit ``[B, D, H, W]`` bool tensor.
        win_size: Gaussian window size.
        sigma: Gaussian window sigma.
        data_range: intensity range (2 for [-1, 1]).

    Returns:
        ``[B]`` SSIM values.
    """
    s, _ = ssim_and_cs_maps(x, y, win_size=win_size, sigma=sigma, data_range=data_range)
    return _masked_mean(s, _pair_mask(x, y, mask), win_size)


def ms_ssim_scales(shape: tuple[int, ...], win_size: int = 7, max_scales: int = 5) -> int:
    """Number of MS-SSIM scales that keep the coarsest image at least ``win_size`` voxels wide."""
    smallest = min(shape)
    if smallest < win_size:
        raise ValueError(
            f"MS-SSIM: volume {tuple(shape)} is smaller than the {win_size}-voxel window"
        )
    return max(1, min(max_scales, int(math.floor(math.log2(smallest / win_size))) + 1))


@torch.no_grad()
def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | bool | None = True,
    *,
    win_size: int = 7,
    sigma: float = 1.0,
    weights: tuple[float, ...] | None = None,
    data_range: float = DATA_RANGE,
) -> torch.Tensor:
    """3D (or 2D) multi-scale SSIM per case inside the brain (see the module notes on scales).

    Args:
        x: images ``[B, C, D, H, W]`` (or slices ``[B, C, H, W]``).
        y: images of the same shape.
        mask: as in :func:`ssim`; the mask is halved with the images (a coarse voxel is brain when
            at least half of its children are).
        win_size: Gaussian window size at every scale.
        sigma: Gaussian window sigma.
        weights: per-scale exponents; default: the standard weights cut to the scales that fit,
            renormalised.
        data_range: intensity range.

    Returns:
        ``[B]`` MS-SSIM values.
    """
    if weights is None:
        n = ms_ssim_scales(tuple(x.shape[2:]), win_size)
        w = torch.tensor(MS_SSIM_WEIGHTS[:n], dtype=torch.float64)
        w = w / w.sum()
    else:
        w = torch.tensor(weights, dtype=torch.float64)
    m = _pair_mask(x, y, mask)
    x, y = x.float(), y.float()
    pool = F.avg_pool3d if x.ndim == 5 else F.avg_pool2d
    factors = []
    for level in range(len(w)):
        s, cs = ssim_and_cs_maps(x, y, win_size=win_size, sigma=sigma, data_range=data_range)
        value = s if level == len(w) - 1 else cs
        factors.append(torch.relu(_masked_mean(value, m, win_size)).double())
        if level < len(w) - 1:
            x, y = pool(x, 2), pool(y, 2)
            if m is not None:
                m = pool(m.unsqueeze(1).float(), 2).squeeze(1) >= 0.5
    stacked = torch.stack(factors)  # [S, B]
    return torch.prod(stacked ** w.view(-1, 1), dim=0).float()


@torch.no_grad()
def mse(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | bool | None = True) -> torch.Tensor:
    """Mean squared error per case ``[B]`` over channels and brain voxels (or the whole cube)."""
    sq = (x.float() - y.float()) ** 2  # [B, C, *S]
    m = _pair_mask(x, y, mask)
    if m is None:
        return sq.flatten(1).mean(1)
    mm = m.unsqueeze(1).expand_as(sq).float()
    count = mm.flatten(1).sum(1)
    return torch.where(
        count > 0, (sq * mm).flatten(1).sum(1) / count.clamp_min(1), sq.flatten(1).mean(1)
    )


@torch.no_grad()
def psnr(
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor | bool | None = True,
    *,
    data_range: float = DATA_RANGE,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per case ``[B]``, from :func:`mse` inside the brain."""
    err = mse(x, y, mask).clamp_min(1e-12)
    return 10.0 * torch.log10(torch.tensor(data_range**2) / err)
