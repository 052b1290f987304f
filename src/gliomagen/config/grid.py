"""Which output grids the networks can be built for (plain arithmetic: no torch).

It sits with the configuration so that ``prepare`` (data), the configuration's validation and the
networks (models) apply one rule.
"""

from __future__ import annotations

from collections.abc import Sequence

MIN_SIDE, MAX_SIDE = 16, 256


def plan_grid(size: Sequence[int]) -> tuple[tuple[int, ...], int]:
    """Plan the resolutions of a network for an output grid.

    Args:
        size: output grid, 2 or 3 sides, each in [16, 256].

    Returns:
        ``(start_shape, n_doublings)``: the largest ``k`` with every side divisible by ``2**k`` and
        every side of ``size / 2**k`` at least 4.

    Raises:
        ValueError: not 2 or 3 sides, a side outside [16, 256], or a grid that does not reduce to
            a start of sides 4..8 by halving (e.g. 100 = 4 x 25).
    """
    size = tuple(int(s) for s in size)
    if len(size) not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {len(size)}")
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


__all__ = ["MAX_SIDE", "MIN_SIDE", "plan_grid"]
