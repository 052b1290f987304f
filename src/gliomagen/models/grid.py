"""The resolutions of a network: the start grid and number of doublings, channels per level."""

from __future__ import annotations

from collections.abc import Sequence

from gliomagen.models.layers import check_spatial_dims

MIN_SIDE, MAX_SIDE = 16, 256


def plan_grid(size: Sequence[int]) -> tuple[tuple[int, ...], int]:
    """Plan the resolutions of a network for an output grid.

    Args:
        size: output grid, 2 or 3 sides, each in [16, 256].

    Returns:
        ``(start_shape, n_doublings)``: the largest ``k`` with every side divisible by ``2**k`` and
        every side of ``size / 2**k`` at least 4.

    Raises:
        ValueError: a side outside [16, 256], or a grid that does not reduce to a start of sides
            4..8 by halving (e.g. 100 = 4 x 25).
    """
    size = tuple(int(s) for s in size)
    check_spatial_dims(len(size))
    if any(s < MIN_SIDE or s > MAX_SIDE for s in size):
        raise ValueError(
            f"every side must be in [{MIN_SIDE}, {MAX_SIDE}], got {'x'.join(map(str, size))}"
        )
    k = 0
    while all(s % 2 ** (k + 1) == 0 and s // 2 ** (k + 1) >= 4 for s in size):
        k += 1
    start = tuple(s // 2**k for s in size)
    if k < 2 or max(start) > 8:
        raise ValueError(
            f"grid {'x'.join(map(str, size))} does not halve to a start grid of sides 4..8 "
            f"(got {'x'.join(map(str, start))}); use sides such as 32, 64, 128 or 96x112x96"
        )
    return start, k


def level_channels(level: int, n_levels: int, base: int, max_channels: int) -> int:
    """Channels at ``level`` (0 = coarsest): ``base`` at the finest, doubling per halving, capped."""
    return int(min(max_channels, base * 2 ** (n_levels - 1 - level)))


__all__ = ["MAX_SIDE", "MIN_SIDE", "level_channels", "plan_grid"]
