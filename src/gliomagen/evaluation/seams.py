"""Seams: is the intensity step across tile (or sub-volume) borders larger than across other planes?

A generator that renders a volume in tiles (:mod:`gliomagen.models.hierarchical`) shows a seam
where neighbouring tiles disagree: the voxel-to-voxel step across the plane where one tile's
influence ends is larger than elsewhere. :func:`seam_steps` measures, per axis, the mean absolute
step ``|v[p] - v[p - 1]|`` across each plane ``p`` between two voxel layers, and compares the
planes that are tile borders with all the other interior planes of the same volume (issue 23's
criterion: the border mean no larger than the other planes' mean).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def tile_border_planes(starts: Sequence[int], tile: int, size: int) -> list[int]:
    """The interior planes where a tile begins or ends along one axis (plane ``p`` lies between
    voxels ``p - 1`` and ``p``); the volume's own faces are not borders."""
    planes = {int(s) for s in starts} | {int(s) + int(tile) for s in starts}
    return sorted(p for p in planes if 0 < p < size)


def plane_steps(volume: np.ndarray, axis: int, mask: np.ndarray | None = None) -> np.ndarray:
    """``[S - 1]`` mean absolute step across each interior plane along spatial ``axis``.

    Args:
        volume: ``[C, *S]`` or ``[*S]`` (3 spatial axes) intensities.
        axis: spatial axis (0, 1 or 2).
        mask: ``[*S]`` bool; only voxel pairs with both voxels inside count (``None``: all).

    Returns:
        Entry ``p - 1`` is the step across plane ``p``; ``nan`` where no pair is inside the mask.
    """
    v = np.asarray(volume, dtype=np.float64)
    if v.ndim == 3:
        v = v[None]
    if v.ndim != 4:
        raise ValueError(f"volume must be [C, D, H, W] or [D, H, W], got shape {v.shape}")
    ax = axis + 1
    diff = np.abs(np.diff(v, axis=ax)).mean(axis=0)  # [*S with S_axis - 1]
    other = tuple(i for i in range(3) if i != axis)
    if mask is None:
        return diff.mean(axis=other)
    m = np.asarray(mask, dtype=bool)
    pair = np.logical_and(
        np.take(m, range(1, m.shape[axis]), axis), np.take(m, range(m.shape[axis] - 1), axis)
    )
    count = pair.sum(axis=other)
    total = (diff * pair).sum(axis=other)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def seam_steps(
    volume: np.ndarray,
    borders: Sequence[Sequence[int]],
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """Mean absolute intensity step across tile-border planes and across all other planes.

    Args:
        volume: ``[C, D, H, W]`` or ``[D, H, W]``.
        borders: per spatial axis, the border planes (e.g. :func:`tile_border_planes`).
        mask: optional ``[D, H, W]`` region (e.g. the brain) the steps are taken in.

    Returns:
        ``{"border": mean step across border planes, "other": across the other planes,
        "ratio": border / other, "n_border": planes, "n_other": planes}`` (``nan`` where a side
        has no plane).

    Example:
        >>> v = np.zeros((8, 8, 8)); v[:, 4:] += 1.0  # a seam at plane 4 of axis 1
        >>> seam_steps(v, [[], [4], []])["ratio"] > 10
        True
    """
    if len(borders) != 3:
        raise ValueError(f"need border planes for 3 axes, got {len(borders)}")
    on: list[float] = []
    off: list[float] = []
    for axis, planes in enumerate(borders):
        steps = plane_steps(volume, axis, mask)
        chosen = {int(p) for p in planes}
        for p in range(1, len(steps) + 1):
            s = steps[p - 1]
            if np.isfinite(s):
                (on if p in chosen else off).append(float(s))
    border = float(np.mean(on)) if on else float("nan")
    other = float(np.mean(off)) if off else float("nan")
    ratio = border / other if other > 0 else float("nan")
    return {
        "border": border,
        "other": other,
        "ratio": ratio,
        "n_border": len(on),
        "n_other": len(off),
    }


def near_planes(borders: Sequence[int], size: int, reach: int = 3) -> list[int]:
    """The interior planes within ``reach`` of a border plane, borders excluded: the local
    comparison (anatomy at the centre of a head differs from its edges; a border's neighbours
    cut through the same anatomy)."""
    chosen = {int(p) for p in borders}
    near = {p + d for p in chosen for d in range(-reach, reach + 1)}
    return sorted(p for p in near - chosen if 0 < p < size)


def case_seams(
    volume: np.ndarray,
    borders: Sequence[Sequence[int]],
    region: np.ndarray | None = None,
    reach: int = 3,
) -> tuple[float, float, float]:
    """One case's mean steps ``(across the borders, across the other planes, across the planes
    within ``reach`` of a border)`` (:func:`seam_steps`, :func:`near_planes`)."""
    size = np.asarray(volume).shape[-3:]
    near = [near_planes(b, n, reach) for b, n in zip(borders, size, strict=True)]
    found = seam_steps(volume, borders, region)
    return found["border"], found["other"], _mean_step(volume, near, region)


def cohort_seams(
    cases: Iterable[tuple[np.ndarray, np.ndarray | None]],
    borders: Sequence[Sequence[int]],
    reach: int = 3,
) -> dict[str, Any]:
    """Seams over a cohort: :func:`seam_summary` of each case's :func:`case_seams`.

    Args:
        cases: ``(volume [C, D, H, W], region [D, H, W] or None)`` per case, e.g. a tiled
            rendering and its brain; consumed one at a time (a generator keeps memory flat).
        borders: per spatial axis, the border planes.
        reach: planes within this many voxels of a border make the local comparison.
    """
    return seam_summary([case_seams(v, borders, r, reach) for v, r in cases])


def seam_summary(steps: Sequence[tuple[float, float, float]]) -> dict[str, Any]:
    """The means over cases of their :func:`case_seams`.

    Returns:
        ``{"n", "border", "other", "ratio", "near", "ratio_near", "fraction_border_le_other",
        "passes"}`` (``ratio`` = mean border / mean other); ``passes``: the mean step across
        borders is no larger than across the other planes (issue 23's criterion).

    Raises:
        ValueError: no case.
    """
    if not steps:
        raise ValueError("cohort_seams: no case")
    border, other, near_mean = (float(np.nanmean([p[k] for p in steps])) for k in range(3))
    return {
        "n": len(steps),
        "border": border,
        "other": other,
        "ratio": border / other if other > 0 else float("nan"),
        "near": near_mean,
        "ratio_near": border / near_mean if near_mean > 0 else float("nan"),
        "fraction_border_le_other": float(np.mean([p[0] <= p[1] for p in steps])),
        "passes": bool(border <= other),
    }


def _mean_step(
    volume: np.ndarray, planes: Sequence[Sequence[int]], mask: np.ndarray | None
) -> float:
    """Mean step across the given planes (per spatial axis), ``nan`` where none is inside."""
    vals: list[float] = []
    for axis, chosen in enumerate(planes):
        steps = plane_steps(volume, axis, mask)
        vals.extend(float(steps[p - 1]) for p in chosen if np.isfinite(steps[p - 1]))
    return float(np.mean(vals)) if vals else float("nan")


__all__ = [
    "case_seams",
    "cohort_seams",
    "near_planes",
    "seam_summary",
    "plane_steps",
    "seam_steps",
    "tile_border_planes",
]
