"""The hierarchical generator (``model.hierarchical``): a low-resolution whole volume plus
high-resolution boxes of it, so that a training step costs in proportion to the low-resolution
grid and the sub-volume, not to the whole output grid.

In the spirit of HA-GAN (Sun et al., "Hierarchical Amortized GAN for 3D High Resolution Medical
Image Synthesis", IEEE JBHI 2022): :class:`HierarchicalSynthesis` is the ordinary synthesis network
(:class:`~gliomagen.models.generator.SynthesisNetwork`) at ``low_res^3`` (images and mask logits
of the whole volume, as the non-hierarchical model at that grid), followed by a *high-resolution
branch*: the remaining levels of a full-grid synthesis network (styled by the same ``w``, the
``w`` indices continuing those of the low levels), run on a crop of the low-resolution features.

Unlike HA-GAN, whose crops see zero padding at their borders (its inference renders the whole
volume at once), the crop here carries a *halo* of low-resolution voxels wide enough for the
branch's receptive field (:func:`halo`), is clipped only at the edges of the volume (where the
whole-volume computation pads too), and the branch's noise is a field defined on the whole grid
(:func:`gliomagen.models.field_noise.field_noise`). So a sub-volume is exactly (up to float
rounding) the same region of the volume the branch would render on the whole low-resolution grid:
the training sub-volumes are what inference draws, and tiles agree where they overlap. The branch
therefore needs modulated convolutions (``model.style=modulated``): AdaIN normalises over the
crop, which would make a box depend on its extent.

At inference :meth:`HierarchicalSynthesis.forward` renders the whole grid as one box up to
:data:`WHOLE_SIDE` per side, beyond it in abutting tiles (they agree at their borders; an optional
overlap is blended with a separable linear window, which only averages values that already agree).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from gliomagen.models.field_noise import field_noise
from gliomagen.models.generator import SynthesisNetwork, finish_outputs
from gliomagen.models.grid import level_channels
from gliomagen.models.levels import OutputHeads, StyledLayer

WHOLE_SIDE = 128
"""Largest grid side inference renders as one box; larger grids go in tiles of this side, so that
the finest activations of a box stay those of a 128^3 volume (8x less than 256^3)."""


def halo(levels: int) -> int:
    """Low-resolution voxels a crop needs on each side for ``levels`` doublings to be exact.

    Per doubling, the wrong band at a crop's inner border grows from ``b`` fine voxels to
    ``2 (b + 1) + 2``: the coarse 3x3 conv (+1 coarse voxel), the linear upsampling (x2, +1 for
    its clamped edge) and the fine 3x3 conv (+1). In low-resolution voxels that is
    ``ceil(b_L / 2^L)``: 2, 3, 4, 4, ... for 1, 2, 3, 4 doublings.
    """
    b = 0
    for _ in range(levels):
        b = 2 * b + 4
    return math.ceil(b / 2**levels)


def tile_corners(size: int, tile: int, overlap: int, step: int) -> list[int]:
    """Tile starts along one axis: every ``tile - overlap`` voxels, the last flush with the end;
    all multiples of ``step``."""
    if tile >= size:
        return [0]
    stride = max(step, (tile - overlap) // step * step)
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def blend_window(start: int, tile: int, size: int, overlap: int) -> torch.Tensor:
    """``[tile]`` weights of a tile along one axis: linear ramps over ``overlap`` voxels where a
    neighbouring tile overlaps it, 1 elsewhere (and at the volume's edges)."""
    w = torch.ones(tile, dtype=torch.float64)
    if overlap <= 0:
        return w
    ramp = (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap
    if start > 0:
        w[:overlap] = ramp
    if start + tile < size:
        w[tile - overlap :] = torch.minimum(w[tile - overlap :], ramp.flip(0))
    return w


class HierarchicalSynthesis(nn.Module):
    """A low-resolution synthesis network and the high-resolution branch that continues it.

    Args:
        size: the full output grid (a cube, e.g. ``(128, 128, 128)``).
        low_res: side of the low-resolution whole volume (``size / low_res`` a power of two >= 2).
        sub_volume: side of a training sub-volume (a multiple of ``size / low_res``); also the
            default inference tile.
        w_dim, channels, max_channels, n_img, n_cls, noise, mask_first, fused_modconv, mask_head:
            as :class:`~gliomagen.models.generator.SynthesisNetwork` at the full grid (channels
            at the full grid, doubling per halving).
        tile: inference tile side (default: ``max(sub_volume, size / 2)``).
    """

    def __init__(
        self,
        size: Sequence[int],
        low_res: int,
        sub_volume: int,
        w_dim: int,
        channels: int = 16,
        max_channels: int = 256,
        n_img: int = 4,
        n_cls: int = 4,
        noise: bool = True,
        mask_first: bool = True,
        fused_modconv: bool = True,
        mask_head: str = "softmax",
        tile: int | None = None,
    ) -> None:
        super().__init__()
        self.size = tuple(int(s) for s in size)
        if len(self.size) != 3 or len(set(self.size)) != 1:
            raise ValueError(f"the hierarchical generator needs a cubic 3D grid, got {self.size}")
        side = self.size[0]
        factor = side // low_res
        if side % low_res or factor < 2 or factor & (factor - 1):
            raise ValueError(f"size / low_res must be a power of two >= 2, got {side}/{low_res}")
        if sub_volume % factor or not factor <= sub_volume <= side:
            raise ValueError(
                f"sub_volume {sub_volume} must be a multiple of {factor} and <= {side}"
            )
        self.factor, self.levels = factor, factor.bit_length() - 1
        self.low_res, self.sub_volume = int(low_res), int(sub_volume)
        # inference renders the whole grid as one box up to WHOLE_SIDE (no halo, no tile seams
        # to blend; 4.6x faster at 128^3 than 27 overlapping 64^3 tiles, docs/performance.md),
        # in abutting tiles beyond
        self.tile = int(tile) if tile is not None else min(side, max(self.sub_volume, WHOLE_SIDE))
        self.halo = halo(self.levels)
        self.w_dim, self.n_img, self.n_cls, self.mask_head = w_dim, n_img, n_cls, mask_head
        self.spatial_dims = 3
        self.low = SynthesisNetwork(
            (low_res,) * 3, w_dim, channels * factor, max_channels, "modulated", n_img, n_cls,
            noise, mask_first, fused_modconv, mask_head,
        )  # fmt: skip
        n_low = len(self.low.heads)
        n_full = n_low + self.levels
        chans = [level_channels(i, n_full, channels, max_channels) for i in range(n_full)]
        kw: dict[str, Any] = {"style": "modulated", "noise": noise, "fused": fused_modconv}
        self.layers = nn.ModuleList()
        self.heads = nn.ModuleList()
        self.level_index: list[int] = []  # full-network level of each branch level
        for i in range(n_low, n_full):
            # shape (1, 1, 1): the layers' own constant-noise buffers stay unused and tiny; the
            # branch always hands them whole-grid field noise
            one = (1, 1, 1)
            self.layers.append(
                StyledLayer(chans[i - 1], chans[i], w_dim, one, up=True, seed=0, **kw)
            )
            self.layers.append(StyledLayer(chans[i], chans[i], w_dim, one, up=False, seed=0, **kw))
            self.heads.append(
                OutputHeads(chans[i], w_dim, 3, style="modulated", n_img=n_img, n_cls=n_cls,
                            mask_first=mask_first, fused=fused_modconv, mask_head=mask_head)
            )  # fmt: skip
            self.level_index.append(i)
        self.noise = noise
        self.num_ws = 2 * (n_full - 1) + 2

    # -- pieces ------------------------------------------------------------------------------
    def add_latent_start(self) -> None:
        """``model.start=latent`` on the low-resolution network."""
        self.low.add_latent_start()

    def low_features(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        noise_seeds: Sequence[int] | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The low-resolution network's ``(features, raw images, raw mask)`` at ``low_res^3``."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        return self.low.features(ws[:, : self.low.num_ws], noise_mode, noise_seeds)

    def low_output(
        self, feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images [N, n_img, *low] in [-1, 1], mask logits [N, n_cls, *low])`` of the features."""
        return finish_outputs(feats[1], feats[2], self.mask_head)

    def branch_seeds(
        self, n: int, noise_mode: str, noise_seeds: Sequence[int] | torch.Tensor | None
    ) -> torch.Tensor | None:
        """The ``[N]`` seeds of the branch's field noise (``None`` for no noise): the samples'
        noise seeds, fresh ones from the global generator, or 0 for ``"const"``."""
        if not self.noise or noise_mode == "none":
            return None
        if noise_mode == "const":
            return torch.zeros(n, dtype=torch.int64)
        if noise_mode != "random":
            raise ValueError(f"noise_mode must be random, const or none, got {noise_mode!r}")
        if noise_seeds is None:
            return torch.randint(0, 2**62, (n,), dtype=torch.int64)
        seeds = torch.as_tensor([int(s) for s in noise_seeds], dtype=torch.int64)
        if len(seeds) != n:
            raise ValueError(f"need {n} noise seeds, got {len(seeds)}")
        return seeds

    def render_box(
        self,
        ws: torch.Tensor,
        feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        corner: Sequence[int],
        side: Sequence[int] | int,
        seeds: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw ``(images, mask)`` of the full-grid box ``corner .. corner + side`` (before
        :func:`finish_outputs`), computed on its crop of the low-resolution features plus the halo.

        ``corner`` and ``side`` must be multiples of ``size / low_res``.
        """
        f = self.factor
        sides = [int(side)] * 3 if isinstance(side, int) else [int(s) for s in side]
        corner = [int(c) for c in corner]
        for c, s, full in zip(corner, sides, self.size, strict=True):
            if c % f or s % f or c < 0 or s <= 0 or c + s > full:
                raise ValueError(
                    f"box {corner}+{sides} must lie on the {self.size} grid, on multiples of {f}"
                )
        lo = [max(0, c // f - self.halo) for c in corner]
        hi = [
            min(self.low_res, (c + s) // f + self.halo) for c, s in zip(corner, sides, strict=True)
        ]
        crop = (slice(None), slice(None), *(slice(a, b) for a, b in zip(lo, hi, strict=True)))
        x, img, raw = (t[crop] for t in feats)
        cur = list(lo)  # the crop's first voxel, in voxels of the current level
        for j, head in enumerate(self.heads):
            cur = [a * 2 for a in cur]
            origin, shape = cur, [2 * n for n in x.shape[2:]]
            level = self.level_index[j]
            for k, li in enumerate((2 * level - 1, 2 * level)):
                noise = None
                if seeds is not None:
                    noise = field_noise(seeds, li, origin, shape, x.device, x.dtype)
                mode = "none" if noise is None else "const"
                x = self.layers[2 * j + k](x, ws[:, li], mode, None, noise)
            img, raw = head(x, ws[:, 2 * level + 1], img, raw)
            x, img, raw, cur = self._trim(x, img, raw, cur, corner, sides, self.levels - j - 1)
        out = (slice(None), slice(None)) + tuple(
            slice(c - a, c - a + s) for c, a, s in zip(corner, cur, sides, strict=True)
        )
        return img[out], raw[out]

    def _trim(
        self,
        x: torch.Tensor,
        img: torch.Tensor,
        raw: torch.Tensor,
        cur: list[int],
        corner: Sequence[int],
        sides: Sequence[int],
        left: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """The crop cut down to the box plus the halo the ``left`` remaining doublings need (in
        this level's voxels): the voxels beyond it only feed the wrong band at the crop's border,
        so the finest levels, which cost the most, run on little more than the box."""
        if left == 0:
            return x, img, raw, cur
        f, m = 2**left, halo(left)
        lo = [max(a, c // f - m) for a, c in zip(cur, corner, strict=True)]
        hi = [
            min(a + n, (c + s) // f + m)
            for a, n, c, s in zip(cur, x.shape[2:], corner, sides, strict=True)
        ]
        cut = (
            slice(None),
            slice(None),
            *(slice(b - a, e - a) for a, b, e in zip(cur, lo, hi, strict=True)),
        )
        return x[cut], img[cut], raw[cut], lo

    def sub_volume_output(
        self,
        ws: torch.Tensor,
        feats: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        corner: Sequence[int],
        seeds: torch.Tensor | None,
        side: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images in [-1, 1], mask logits)`` ``[N, *, s, s, s]`` of the sub-volume at ``corner``
        (side ``sub_volume`` unless given)."""
        img, raw = self.render_box(ws, feats, corner, side or self.sub_volume, seeds)
        return finish_outputs(img, raw, self.mask_head)

    def tiles(
        self, tile: int | None = None, overlap: int = 0
    ) -> Iterator[tuple[tuple[int, ...], torch.Tensor]]:
        """``(corner, weights [t, t, t])`` of every inference tile, overlapping by ``overlap``
        voxels (rounded down to a multiple of ``size / low_res``). Boxes are exact, so abutting
        tiles (``overlap=0``, the default) already agree at their borders; an overlap only
        averages values that agree, at extra cost."""
        f, side = self.factor, self.size[0]
        t = min(side, int(tile or self.tile))
        overlap = min(int(overlap), t // 2) // f * f if t < side else 0
        starts = tile_corners(side, t, overlap, f)
        wins = {s: blend_window(s, t, side, overlap) for s in starts}
        for a in starts:
            for b in starts:
                for c in starts:
                    w = wins[a][:, None, None] * wins[b][None, :, None] * wins[c][None, None, :]
                    yield (a, b, c), w

    # -- the whole volume ----------------------------------------------------------------------
    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        noise_seeds: Sequence[int] | torch.Tensor | None = None,
        tile: int | None = None,
        overlap: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Render the whole grid, in one box or in tiles of side ``tile`` (default: the whole grid
        up to :data:`WHOLE_SIDE`) overlapping by ``overlap`` voxels (as :meth:`SynthesisNetwork.forward`).

        Returns:
            ``(images [N, n_img, *size] in [-1, 1], mask_logits [N, n_cls, *size])``.
        """
        feats = self.low_features(ws, noise_mode, noise_seeds)
        seeds = self.branch_seeds(ws.shape[0], noise_mode, noise_seeds)
        n, dev = ws.shape[0], ws.device
        acc_img = torch.zeros((n, self.n_img, *self.size), device=dev)
        acc_raw = torch.zeros((n, self.n_cls, *self.size), device=dev)
        acc_w = torch.zeros(self.size, device=dev)
        t = min(self.size[0], int(tile or self.tile))
        for corner, w in self.tiles(t, overlap):
            img, raw = self.render_box(ws, feats, corner, t, seeds)
            box = tuple(slice(c, c + t) for c in corner)
            wt = w.to(dev, torch.float32)
            acc_img[(slice(None), slice(None), *box)] += img.float() * wt
            acc_raw[(slice(None), slice(None), *box)] += raw.float() * wt
            acc_w[box] += wt
        return finish_outputs(acc_img / acc_w, acc_raw / acc_w, self.mask_head)


__all__ = ["WHOLE_SIDE", "HierarchicalSynthesis", "blend_window", "halo", "tile_corners"]
