"""The output grid and smooth random fields on it.

The output grid is the BraTS grid: 240x240x155 voxels of 1 mm in LPS array order (the affine of
BraTS files: ``diag(-1, -1, 1)`` with the origin at ``(0, 239, 0)``), or the same field of view in
2 mm voxels (120x120x78). Work happens in a *box*, the part of the grid a brain can reach, and is
padded into the full grid only when written.

Smooth random fields (deformations, tumour boundaries, textures, bias fields) are white noise on
a coarse lattice, Gaussian-smoothed there and linearly upsampled: cheap, float32, and smooth at
the scale of their correlation length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from gliomagen.errors import GliomagenError

BRATS_SHAPE_1MM: tuple[int, int, int] = (240, 240, 155)
"""The BraTS grid (voxels of 1 mm)."""

BRATS_AFFINE_1MM = np.array(
    [[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
"""The affine of BraTS files (SRI24 space, LPS array order); voxel -> RAS+ world mm."""

RESOLUTIONS: tuple[int, ...] = (1, 2)
"""Supported output voxel sizes in mm."""


@dataclass(frozen=True)
class Grid:
    """The output grid at one resolution and the box inside it where the brain can be.

    Attributes:
        resolution: voxel size in mm (1 or 2).
        shape: full grid shape (240x240x155 at 1 mm, 120x120x78 at 2 mm).
        affine: voxel -> RAS+ world (mm) of the full grid.
        box_lo: first voxel of the working box.
        box_hi: one past the last voxel of the working box.
    """

    resolution: int
    shape: tuple[int, int, int]
    affine: np.ndarray
    box_lo: tuple[int, int, int]
    box_hi: tuple[int, int, int]

    @property
    def box_shape(self) -> tuple[int, int, int]:
        """Shape of the working box."""
        x, y, z = (h - lo for lo, h in zip(self.box_lo, self.box_hi, strict=True))
        return x, y, z

    @property
    def box_slices(self) -> tuple[slice, slice, slice]:
        """Slices of the working box in the full grid."""
        x, y, z = (slice(lo, h) for lo, h in zip(self.box_lo, self.box_hi, strict=True))
        return x, y, z

    def box_world(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RAS+ world coordinates (mm) of the box voxels as three broadcastable float32 arrays.

        Returns:
            ``(x [X,1,1], y [1,Y,1], z [1,1,Z])``; the affine is diagonal, so each coordinate
            depends on one array axis only.
        """
        out = []
        for ax in range(3):
            idx = np.arange(self.box_lo[ax], self.box_hi[ax], dtype=np.float32)
            w = (self.affine[ax, ax] * idx + self.affine[ax, 3]).astype(np.float32)
            shape = [1, 1, 1]
            shape[ax] = -1
            out.append(w.reshape(shape))
        return out[0], out[1], out[2]

    def pad(self, box: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
        """Place a box-shaped array into a zero full-grid array of ``dtype``."""
        full = np.zeros(self.shape, dtype=dtype)
        full[self.box_slices] = box
        return full

    def scatter(self, idx: np.ndarray, values: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
        """Full-grid array of ``dtype`` with ``values`` [K] at flat box indices ``idx`` [K]."""
        full = np.zeros(self.shape, dtype=dtype)
        sub = np.zeros(self.box_shape, dtype=dtype)
        sub.reshape(-1)[idx] = values
        full[self.box_slices] = sub
        return full


def make_grid(
    resolution: int, centre_voxel_1mm: tuple[float, float, float], half_extent_mm: np.ndarray
) -> Grid:
    """Build the output grid and the working box around the brain.

    Args:
        resolution: voxel size in mm (1 or 2).
        centre_voxel_1mm: brain centre as a voxel of the 1 mm grid.
        half_extent_mm: [3] half size of the box around the centre, in mm (already with margins).

    Returns:
        The grid.
    """
    if resolution not in RESOLUTIONS:
        raise GliomagenError(f"--resolution {resolution}: must be 1 or 2 (mm)")
    r = resolution
    shape = tuple(int(np.ceil(n / r)) for n in BRATS_SHAPE_1MM)
    # A coarse voxel covers r fine voxels; its centre is their mean position.
    affine = BRATS_AFFINE_1MM.copy()
    affine[:3, :3] *= r
    affine[:3, 3] = BRATS_AFFINE_1MM[:3, :3] @ np.full(3, (r - 1) / 2.0) + BRATS_AFFINE_1MM[:3, 3]
    lo, hi = [], []
    for ax in range(3):
        c = (centre_voxel_1mm[ax] - (r - 1) / 2.0) / r
        h = half_extent_mm[ax] / r
        lo.append(max(0, int(np.floor(c - h))))
        hi.append(min(shape[ax], int(np.ceil(c + h)) + 1))
    return Grid(r, shape, affine, tuple(lo), tuple(hi))  # type: ignore[arg-type]


def _upsample_linear(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Separable linear interpolation of ``a`` onto ``shape`` (corners on corners), float32."""
    for ax, n in enumerate(shape):
        c = a.shape[ax]
        pos = np.linspace(0.0, c - 1.0, n, dtype=np.float32)
        i0 = np.minimum(pos.astype(np.int64), c - 2)
        w = (pos - i0).astype(np.float32)
        wshape = [1] * a.ndim
        wshape[ax] = n
        w = w.reshape(wshape)
        a = np.take(a, i0, axis=ax) * (1.0 - w) + np.take(a, i0 + 1, axis=ax) * w
    return a


def smooth_field(
    shape: tuple[int, ...], corr_vox: float, rng: np.random.Generator, n: int = 1
) -> np.ndarray:
    """Smooth zero-mean random fields of unit standard deviation.

    Args:
        shape: output shape (3D).
        corr_vox: correlation length in voxels (about the distance over which the field changes
            sign).
        rng: random generator (consumed deterministically).
        n: number of independent fields.

    Returns:
        float32 array ``[n, *shape]`` (``[*shape]`` when ``n == 1``).
    """
    step = max(1.0, corr_vox / 3.0)  # coarse lattice spacing, in output voxels
    coarse = tuple(max(2, int(np.ceil((s - 1) / step)) + 1) for s in shape)
    out = np.empty((n, *shape), dtype=np.float32)
    for i in range(n):
        noise = rng.standard_normal(coarse, dtype=np.float32)
        noise = ndi.gaussian_filter(noise, sigma=1.0, mode="reflect")
        noise -= noise.mean()
        noise /= max(float(noise.std()), 1e-6)
        # linear is enough: the lattice is already smooth
        out[i] = noise if noise.shape == tuple(shape) else _upsample_linear(noise, shape)
    return out[0] if n == 1 else out
