"""Per-voxel Gaussian noise defined on the whole grid, computed for any box of it alone.

The hierarchical generator (:mod:`gliomagen.models.hierarchical`) renders a volume one box at a
time (a training sub-volume, an inference tile). Its noise inputs must not depend on which box is
being rendered, or neighbouring tiles would disagree where they overlap; drawing the noise of the
whole grid and cropping it would cost in proportion to the whole grid at every step. So the noise of
a voxel is a hash of ``(seed, layer, position)`` (a counter-based generator): any box of it is
computed in time proportional to the box, and equals the same box of the whole-grid field.

The hash is Wellons' ``lowbias32`` integer hash, chained over the key and the three coordinates,
in int64 arithmetic kept below 2^63; two 32-bit uniforms per voxel become one standard normal by
the Box-Muller transform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(h: torch.Tensor, c: int) -> torch.Tensor:
    """``(h * c) mod 2^32`` for int64 ``h`` in ``[0, 2^32)`` without overflowing int64."""
    lo, hi = c & 0xFFFF, c >> 16
    return (h * lo + (((h * hi) & 0xFFFF) << 16)) & _MASK32


def hash32(h: torch.Tensor) -> torch.Tensor:
    """Wellons' ``lowbias32`` hash of int64 values in ``[0, 2^32)`` (elementwise, same range)."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x7FEB352D)
    h = h ^ (h >> 15)
    h = _mul32(h, 0x846CA68B)
    return h ^ (h >> 16)


def field_noise(
    seeds: torch.Tensor,
    layer: int,
    origin: Sequence[int],
    shape: Sequence[int],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard-normal noise ``[N, 1, *shape]`` of the box ``origin .. origin + shape`` of a grid.

    Voxel ``p`` of sample ``n`` gets a value that depends only on ``(seeds[n], layer, p)``, so two
    boxes agree wherever they overlap, and a box equals the same region of the whole grid's field.

    Args:
        seeds: ``[N]`` int64 seeds (any values in ``[0, 2^63)``).
        layer: which noise input (a different field per layer).
        origin: the box's first voxel on the grid (per axis).
        shape: the box's sides.
        device: where the noise is made.
        dtype: its dtype.

    Example:
        >>> s = torch.tensor([7])
        >>> whole = field_noise(s, 0, (0, 0, 0), (8, 8, 8))
        >>> bool((field_noise(s, 0, (2, 3, 4), (4, 4, 4)) == whole[:, :, 2:6, 3:7, 4:8]).all())
        True
    """
    seeds = torch.as_tensor(seeds, dtype=torch.int64).to(device).reshape(-1)
    n, sd = seeds.shape[0], len(shape)
    key = hash32(torch.full_like(seeds, (int(layer) * 2654435761 + 12345) & _MASK32))
    h = hash32(key ^ (seeds & _MASK32))
    h = hash32(h ^ ((seeds >> 32) & _MASK32))  # [N]
    for a in range(sd):  # chain the coordinates: [N] -> [N, s0] -> [N, s0, s1] -> ...
        coord = torch.arange(int(origin[a]), int(origin[a]) + int(shape[a]), device=device)
        h = hash32(h.unsqueeze(-1) ^ (coord & _MASK32).reshape((1,) * (a + 1) + (-1,)))
    u1 = (hash32(h).to(torch.float64) + 0.5) / 2.0**32  # (0, 1)
    u2 = (hash32(h ^ _GOLDEN).to(torch.float64) + 0.5) / 2.0**32
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.to(dtype).reshape(n, 1, *(int(s) for s in shape))


__all__ = ["field_noise", "hash32"]
