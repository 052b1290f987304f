"""Tiny synthetic BraTS cases on disk: every layout, non-identity affines, RAS and LPS versions.

Imported by the tests of this folder (``from synth_brats import ...``) and by its conftest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (24, 28, 20)
SPACING = (1.0, 1.1, 1.3)
ORIGIN = (-12.0, -15.0, -9.0)
SUFFIXES = {
    "brats2023": {"t1n": "-t1n", "t1c": "-t1c", "t2w": "-t2w", "t2f": "-t2f", "seg": "-seg"},
    "brats2021": {"t1n": "_t1", "t1c": "_t1ce", "t2w": "_t2", "t2f": "_flair", "seg": "_seg"},
}
BASE = {"t1n": 300.0, "t1c": 350.0, "t2w": 500.0, "t2f": 420.0}


def ras_affine() -> np.ndarray:
    """Voxel -> world of the RAS version: anisotropic voxels, shifted origin."""
    aff = np.diag([*SPACING, 1.0])
    aff[:3, 3] = ORIGIN
    return aff


def to_lps(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same physical image stored in LPS voxel order (x and y reversed)."""
    flip = np.eye(4)
    flip[0, 0], flip[1, 1] = -1, -1
    flip[0, 3], flip[1, 3] = data.shape[0] - 1, data.shape[1] - 1
    return data[::-1, ::-1].copy(), affine @ flip


def phantom(
    seed: int = 0, tumour_centre: Sequence[float] = (16, 16, 10)
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Images (int16, background 0) and a BraTS-2023 mask {0,1,2,3} on :data:`SHAPE`.

    The brain is an ellipsoid with an intensity gradient along x (so orientation matters); the
    tumour is a sphere: NCR core (1), enhancing ring (3), edema shell (2).
    """
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in SHAPE], indexing="ij")
    brain = ((x - 12) / 8.5) ** 2 + ((y - 14) / 10.5) ** 2 + ((z - 10) / 7.5) ** 2 <= 1.0
    r = np.sqrt(sum((c - t) ** 2 for c, t in zip((x, y, z), tumour_centre, strict=True)))
    seg = np.zeros(SHAPE, np.uint8)
    seg[(r < 4.5) & brain] = 2
    seg[(r < 3.0) & brain] = 3
    seg[(r < 1.8) & brain] = 1
    images = {}
    for k, (m, base) in enumerate(BASE.items()):
        vol = (
            base + 8.0 * x + 3.0 * y + rng.normal(0, 10, SHAPE) + 150.0 * (seg == 3) * (m == "t1c")
        )
        vol += 120.0 * (seg == 2) * (m in ("t2w", "t2f")) - 60.0 * (seg == 1) + 5.0 * k
        images[m] = np.where(brain, np.maximum(vol, 1), 0).astype(np.int16)
    return images, seg


def save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


class Synth:
    """Writers of synthetic cases in each layout (see the module docstring)."""

    shape = SHAPE

    @staticmethod
    def volumes(seed: int = 0, **kw: object) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return phantom(seed, **kw)  # type: ignore[arg-type]

    @staticmethod
    def case(
        folder: Path,
        case_id: str,
        layout: str = "brats2023",
        *,
        seed: int = 0,
        seg: str | None = "2023",
        orientation: str = "RAS",
        ext: str = ".nii.gz",
        skip: Sequence[str] = (),
    ) -> Path:
        """Write ``folder/case_id/case_id<suffix><ext>`` files; ``seg``: ``2023``, ``2021`` or None."""
        images, mask = phantom(seed)
        suffixes = SUFFIXES[layout]
        case_dir = folder / case_id
        vols: dict[str, np.ndarray] = dict(images)
        if seg is not None:
            vols["seg"] = np.where(mask == 3, 4, mask).astype(np.uint8) if seg == "2021" else mask
        for key, data in vols.items():
            if key in skip:
                continue
            affine = ras_affine()
            if orientation == "LPS":
                data, affine = to_lps(data, affine)
            save(case_dir / f"{case_id}{suffixes[key]}{ext}", data, affine)
        return case_dir

    @staticmethod
    def manifest(folder: Path, rows: Sequence[dict[str, str]], name: str = "manifest.csv") -> Path:
        """Write a manifest CSV with the union of the rows' columns."""
        cols: list[str] = []
        for r in rows:
            cols += [c for c in r if c not in cols]
        lines = [",".join(cols)] + [",".join(r.get(c, "") for c in cols) for r in rows]
        path = folder / name
        path.write_text("\n".join(lines) + "\n")
        return path
