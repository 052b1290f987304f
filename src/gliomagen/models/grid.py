"""The resolutions of a network: the start grid and number of doublings, channels per level."""

from __future__ import annotations

from gliomagen.config.grid import MAX_SIDE, MIN_SIDE, plan_grid


def level_channels(level: int, n_levels: int, base: int, max_channels: int) -> int:
    """Channels at ``level`` (0 = coarsest): ``base`` at the finest, doubling per halving, capped."""
    return int(min(max_channels, base * 2 ** (n_levels - 1 - level)))


__all__ = ["MAX_SIDE", "MIN_SIDE", "level_channels", "plan_grid"]
