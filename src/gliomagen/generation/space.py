"""Where the written voxels live: the generator's own grid, or the 1 mm BraTS grid of the training data.

``native``: the generator's grid (the store's ``size``), in the store's canonical RAS voxel order,
with its true voxel size. With the store's ``template_geometry`` its affine
(:func:`gliomagen.data.preprocess.grid_affine`) places the grid where the preprocessing took a
typical training brain from, so ``native`` and ``brats`` files of one case overlay in world
coordinates; without it, a RAS grid of ``spacing_mm`` centred on the world origin.

``brats``: the reference file grid of the training data (240x240x155 at 1 mm for BraTS, with its
affine and voxel order), reached through the store's template geometry with
:func:`gliomagen.data.preprocess.to_template_space` (so ``generate`` and ``prepare`` agree on the
mapping): images linearly (the background, -1, fills whatever lies outside the generated field of
view), labels and masks by nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gliomagen.data.preprocess import grid_affine, to_template_space
from gliomagen.errors import GliomagenError

Resample = Callable[[np.ndarray, int, Any], np.ndarray]


@dataclass
class OutputGrid:
    """An output space: shape, affine and how to move generator-grid volumes into it.

    Attributes:
        name: ``native`` or ``brats``.
        shape: output voxel grid.
        affine: ``[4, 4]`` voxel -> world (mm).
        resample: ``(volume [(C,) D, H, W], order, fill) -> [(C,) *shape]``; ``None`` for the identity.
    """

    name: str
    shape: tuple[int, int, int]
    affine: np.ndarray
    resample: Resample | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel edge lengths in mm."""
        s = np.sqrt((np.asarray(self.affine)[:3, :3] ** 2).sum(axis=0))
        return (float(s[0]), float(s[1]), float(s[2]))

    def images(self, images: np.ndarray, fill: Any = -1.0) -> np.ndarray:
        """``[C, D, H, W]`` images -> ``[C, *shape]`` float32 (linear; ``fill``, a scalar or one
        value per channel, outside the field of view)."""
        if self.resample is None:
            return np.asarray(images, dtype=np.float32)
        return np.asarray(
            self.resample(np.asarray(images, dtype=np.float32), 1, fill), dtype=np.float32
        )

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """``[D, H, W]`` integer labels -> ``[*shape]`` uint8 (nearest; 0 outside the field of view)."""
        if self.resample is None:
            return np.asarray(labels, dtype=np.uint8).copy()
        return np.asarray(self.resample(np.asarray(labels, dtype=np.uint8), 0, 0), dtype=np.uint8)


def _store_size(meta: Mapping[str, Any]) -> tuple[int, int, int]:
    size = meta.get("size")
    if not size or len(size) != 3:
        raise GliomagenError(
            "checkpoint: its store meta has no 3D 'size'; cannot place the generated grid"
        )
    return (int(size[0]), int(size[1]), int(size[2]))


def native_affine(size: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """RAS affine of a grid with voxel size ``spacing``, centred on the world origin."""
    sp = np.asarray(spacing, dtype=np.float64)
    aff = np.diag([*sp, 1.0])
    aff[:3, 3] = -sp * (np.asarray(size, dtype=np.float64) - 1) / 2.0
    return aff


def native_grid(meta: Mapping[str, Any]) -> OutputGrid:
    """The generator's own grid with its true spacing (see module docstring)."""
    size = _store_size(meta)
    geometry = meta.get("template_geometry")
    if geometry:
        affine = np.asarray(grid_affine(geometry), dtype=np.float64)
    else:
        affine = native_affine(size, meta.get("spacing_mm") or [1.0, 1.0, 1.0])
    return OutputGrid("native", size, affine)


def brats_grid(meta: Mapping[str, Any]) -> OutputGrid:
    """The 1 mm reference grid of the training data (see module docstring)."""
    geometry = meta.get("template_geometry")
    if not geometry:
        raise GliomagenError(
            "--space brats: the checkpoint's store meta has no template_geometry; use --space native"
        )
    size = _store_size(meta)
    if [int(s) for s in geometry.get("size", size)] != list(size):
        raise GliomagenError(
            f"--space brats: the checkpoint's template geometry is for a {geometry['size']} grid, "
            f"the generator makes {list(size)}"
        )

    def resample(volume: np.ndarray, order: int, fill: Any) -> np.ndarray:
        return to_template_space(volume, geometry, order=order, fill=fill)[0]

    shape = tuple(int(s) for s in geometry["shape"])
    affine = np.asarray(geometry["affine"], dtype=np.float64)
    return OutputGrid("brats", shape, affine, resample)  # type: ignore[arg-type]


def output_grid(meta: Mapping[str, Any], space: str) -> OutputGrid:
    """``native`` or ``brats`` grid of a checkpoint's store meta."""
    if space == "native":
        return native_grid(meta)
    if space == "brats":
        return brats_grid(meta)
    raise GliomagenError(f"--space {space!r}: must be brats or native")
