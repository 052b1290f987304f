"""The stored grid and the case's file grid: separable resampling and the maps between them.

Downsampling an image can be anti-aliased: ``resample_linear(..., antialias=True)`` low-passes
each axis sampled every ``step > 1`` voxels with a Gaussian (:func:`antialias_sigma`) just before
sampling it; upsampled axes are not filtered.

A stored volume is axis-aligned with the case's canonical (RAS) voxel grid: stored voxel ``i``
along axis ``a`` sits at canonical voxel coordinate ``start[a] + step[a] * i``. A case's
``geometry`` (``index.csv``, made by :func:`gliomagen.data.preprocess.prepare_case`) records that
map and the file's shape, affine and orientation, so :func:`to_original_space` maps any
stored-grid volume back onto the original file grid, :func:`grid_affine` gives the stored grid's
own affine, and :func:`template_geometry` / :func:`to_template_space` do the same for a new case
with a store's median geometry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from gliomagen.data.nifti import from_canonical, voxel_sizes
from gliomagen.errors import GliomagenError

Vector = Sequence[float] | np.ndarray
"""Per-axis numbers: a sequence or a ``[3]`` array."""


# -- separable resampling --------------------------------------------------------------------
def resample_linear(
    x: np.ndarray,
    start: Vector,
    step: Vector,
    size: Vector,
    *,
    fill: Any = 0.0,
    antialias: bool = False,
) -> np.ndarray:
    """Sample ``x [C, X, Y, Z]`` at ``start + step * i`` along each spatial axis, trilinearly.

    Positions outside the array take ``fill`` (a scalar or one value per channel ``[C]``), blended
    linearly across the edge. Separable: three 1D passes, much faster than a 3D grid sample.

    With ``antialias``, each axis with ``step > 1`` is first low-passed by a Gaussian of
    :func:`antialias_sigma` (beyond the array the volume equals ``fill``), just before its pass:
    the same as ``scipy.ndimage.gaussian_filter`` of the whole volume first (filtering one axis
    and sampling another commute), but later axes are filtered on the already reduced array.

    Returns:
        ``[C, *size]`` float32.
    """
    out = np.asarray(x, dtype=np.float32)
    fill_c = np.broadcast_to(np.asarray(fill, dtype=np.float32), (out.shape[0],)).reshape(
        -1, 1, 1, 1
    )
    sigma = antialias_sigma(step) if antialias else np.zeros(3)
    for axis in range(3):
        if sigma[axis] > 0:
            out = _low_pass(out, float(sigma[axis]), axis + 1, fill_c.ravel())
        n = out.shape[axis + 1]
        pos = float(start[axis]) + float(step[axis]) * np.arange(int(size[axis]))
        i0 = np.floor(pos).astype(np.int64)
        w = (pos - i0).astype(np.float32)
        shape = [1, 1, 1, 1]
        shape[axis + 1] = -1
        parts = []
        for idx in (i0, i0 + 1):
            part = np.take(out, np.clip(idx, 0, n - 1), axis=axis + 1)
            outside = np.flatnonzero((idx < 0) | (idx >= n))
            if outside.size:
                cut: list[Any] = [slice(None)] * 4
                cut[axis + 1] = outside
                part[tuple(cut)] = fill_c
            parts.append(part)
        a, b = parts
        b -= a
        b *= w.reshape(shape)
        a += b
        out = a
    return out


def resample_nearest(
    x: np.ndarray,
    start: Vector,
    step: Vector,
    size: Vector,
    *,
    fill: Any = 0,
) -> np.ndarray:
    """Nearest-neighbour counterpart of :func:`resample_linear` (keeps the dtype)."""
    out = np.asarray(x)
    for axis in range(3):
        n = out.shape[axis + 1]
        idx = np.floor(
            float(start[axis]) + float(step[axis]) * np.arange(int(size[axis])) + 0.5
        ).astype(np.int64)
        out = np.take(out, np.clip(idx, 0, n - 1), axis=axis + 1)
        outside = np.flatnonzero((idx < 0) | (idx >= n))
        if outside.size:
            sl: list[Any] = [slice(None)] * 4
            sl[axis + 1] = outside
            out[tuple(sl)] = fill
    return out


# -- anti-aliasing ---------------------------------------------------------------------------
def antialias_sigma(step: Vector) -> np.ndarray:
    """Gaussian prefilter sigma per axis, in input voxels, for sampling every ``step`` voxels.

    ``max(0, (step - 1) / 2)``, the rule of scikit-image's ``resize(anti_aliasing=True)``: zero
    when upsampling (``step <= 1``), half the extra spacing when downsampling.

    Example:
        >>> antialias_sigma([4.0, 1.0, 0.5]).tolist()
        [1.5, 0.0, 0.0]
    """
    return np.maximum(0.0, (np.asarray(step, dtype=np.float64) - 1.0) / 2.0)


def _low_pass(x: np.ndarray, sigma: float, axis: int, fill: np.ndarray) -> np.ndarray:
    """``x [C, ...]`` smoothed along ``axis`` by scipy's 1D Gaussian, ``fill[c]`` beyond the edges."""
    out = np.empty_like(x)
    for c in range(x.shape[0]):
        ndimage.gaussian_filter1d(
            x[c], sigma, axis=axis - 1, output=out[c], mode="constant", cval=float(fill[c])
        )
    return out


# -- inverse ---------------------------------------------------------------------------------
def to_original_space(
    volume: Any, geometry: Mapping[str, Any], order: int = 1, fill: float | None = None
) -> np.ndarray:
    """Map a stored-grid volume back onto a case's original file grid (1 mm for BraTS).

    Args:
        volume: ``[D, H, W]`` or ``[C, D, H, W]`` on the store's grid (numpy or torch).
        geometry: the case's geometry (``index.csv``) or a store's ``meta["template_geometry"]``.
        order: 1 linear (images), 0 nearest (masks).
        fill: value outside the stored box; default -1 for order 1 (image background), 0 for order 0.

    Returns:
        The volume in the original file's voxel order, ``geometry["shape"]`` (with the channel
        axis first if given): float32 for order 1, the input dtype for order 0. Save it with
        ``geometry["affine"]``.
    """
    arr = np.asarray(volume.detach().cpu().numpy() if hasattr(volume, "detach") else volume)
    size = [int(s) for s in geometry["size"]]
    squeeze = arr.ndim == 3
    arr = arr[None] if squeeze else arr
    if list(arr.shape[1:]) != size:
        raise GliomagenError(
            f"to_original_space: volume shape {list(arr.shape[1:])} is not the store grid {size}"
        )
    if order not in (0, 1):
        raise GliomagenError(f"to_original_space: order must be 0 or 1, got {order}")
    start = np.asarray(geometry["start"], dtype=np.float64)
    step = np.asarray(geometry["step"], dtype=np.float64)
    inv_start, inv_step = -start / step, 1.0 / step  # canonical voxel v -> stored index
    shape_c = geometry["canonical_shape"]
    if order == 1:
        out = resample_linear(
            arr, inv_start, inv_step, shape_c, fill=-1.0 if fill is None else fill
        )
    else:
        out = resample_nearest(arr, inv_start, inv_step, shape_c, fill=0 if fill is None else fill)
    ornt = np.asarray(geometry["ornt"], dtype=np.float64)
    result = np.stack([from_canonical(c, ornt) for c in out])
    return result[0] if squeeze else result


def grid_affine(geometry: Mapping[str, Any]) -> np.ndarray:
    """The ``[4, 4]`` affine of the stored grid itself (to save a stored-grid volume as NIfTI)."""
    affine = np.asarray(geometry["canonical_affine"], dtype=np.float64)
    scale = np.eye(4)
    scale[:3, :3] = np.diag(geometry["step"])
    scale[:3, 3] = geometry["start"]
    return affine @ scale


def template_geometry(geometries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A store-wide geometry for new (synthetic) cases: the most common file grid, with the
    median brain-box centre (world mm) and median output voxel size."""
    if not geometries:
        raise GliomagenError("template_geometry: no case geometry given")
    keys = [
        (tuple(g["shape"]), tuple(np.round(np.asarray(g["affine"]), 3).ravel())) for g in geometries
    ]
    ref = geometries[max(range(len(keys)), key=lambda i: (keys.count(keys[i]), -i))]
    affine_c = np.asarray(ref["canonical_affine"], dtype=np.float64)
    centre_world = np.median(np.asarray([g["centre_world"] for g in geometries]), axis=0)
    scale_mm = float(np.median([g["spacing_mm"] for g in geometries]))
    size = np.asarray(ref["size"], dtype=np.float64)
    centre = (np.linalg.inv(affine_c) @ np.append(centre_world, 1.0))[:3]
    step = scale_mm / voxel_sizes(affine_c)
    out = {
        k: ref[k]
        for k in ("shape", "affine", "ornt", "canonical_shape", "canonical_affine", "size")
    }
    out.update(
        start=(centre - (size - 1) / 2.0 * step).tolist(),
        step=step.tolist(),
        spacing_mm=scale_mm,
        centre_world=centre_world.tolist(),
        n_cases=len(geometries),
    )
    return out


def to_template_space(
    volume: Any, meta: Mapping[str, Any], order: int = 1, fill: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Map a stored-grid volume of a new case to the store's template 1 mm grid.

    Args:
        volume: ``[D, H, W]`` or ``[C, D, H, W]`` on the store grid.
        meta: a store's ``meta`` (uses ``meta["template_geometry"]``) or a template geometry.
        order: 1 linear (images), 0 nearest (masks).
        fill: see :func:`to_original_space`.

    Returns:
        ``(array, affine)``: e.g. ``[240, 240, 155]`` and the affine to save it with.
    """
    geometry = meta.get("template_geometry", meta)
    return to_original_space(volume, geometry, order, fill), np.asarray(
        geometry["affine"], dtype=np.float64
    )
