"""Read NIfTI volumes with their geometry: checks, canonical (RAS) orientation, checksums.

An image never travels without its affine. :func:`read_volume` returns the voxel array *and*
the affine, already checked (3D, finite, readable); :func:`to_canonical` reorients both to the
closest RAS orientation (the same transform ``nibabel.as_closest_canonical`` applies, on arrays),
so the same physical image stored in RAS or LPS voxel order gives the same array.

Example:
    >>> import numpy as np, nibabel as nib, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.nii.gz"
    >>> nib.save(nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([-1, -1, 1, 1])), path)
    >>> vol = read_volume(path)
    >>> data, affine, ornt = to_canonical(vol.data, vol.affine)
    >>> nib.aff2axcodes(affine), int(data[0, 0, 0]), ornt.tolist()
    (('R', 'A', 'S'), 20, [[0.0, -1.0], [1.0, -1.0], [2.0, 1.0]])
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from gliomagen.errors import GliomagenError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
"""File name endings read as NIfTI."""

ROTATION_TOL = 1e-3
"""Largest allowed difference between two images' affine direction/zoom entries."""

TRANSLATION_TOL_MM = 1e-2
"""Largest allowed difference between two images' affine origins, in mm."""


@dataclass
class Volume:
    """A 3D voxel array with its voxel-to-world affine.

    Attributes:
        path: the file it was read from.
        data: voxel values ``[X, Y, Z]`` in file order (integer or float dtype, as stored).
        affine: ``[4, 4]`` voxel -> world (mm) matrix.
    """

    path: Path
    data: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]


def is_nifti_path(path: Path | str) -> bool:
    """Whether a file name ends in ``.nii`` or ``.nii.gz`` (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def open_nifti(path: Path, where: str) -> nib.Nifti1Image | nib.Nifti2Image:
    """Open a NIfTI file's header (the data stays on disk), or say in one line why not.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        where: how messages name the file (e.g. ``CASE: path``).

    Raises:
        GliomagenError: the file is missing, not named or not readable as NIfTI.
    """
    if not path.is_file():
        raise GliomagenError(f"{where}: file not found")
    if not is_nifti_path(path):
        raise GliomagenError(f"{where}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for a non-NIfTI file
        raise GliomagenError(f"{where}: not a readable NIfTI file ({_short(exc, path)})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise GliomagenError(f"{where}: not a NIfTI file ({type(img).__name__})")
    return img


def read_volume(path: Path, *, what: str = "") -> Volume:
    """Read one 3D NIfTI image and check it.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        what: a prefix for error messages, e.g. the case id.

    Returns:
        The :class:`Volume`; a trailing singleton 4th dimension is dropped.

    Raises:
        GliomagenError: the file is missing, not NIfTI, corrupt, not 3D, or holds NaN/inf.
    """
    where = f"{what}: {path}" if what else str(path)
    img = open_nifti(path, where)
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        kind = f"{len(shape)}D" if len(shape) != 4 else f"4D ({shape[3]} volumes)"
        raise GliomagenError(
            f"{where}: {kind} image of shape {list(shape)}, expected one 3D volume"
        )
    try:
        data = np.asanyarray(img.dataobj).reshape(shape)
    except Exception as exc:  # truncated gzip, short file, ...
        raise GliomagenError(
            f"{where}: corrupt NIfTI file, cannot read its voxels ({_short(exc, path)})"
        ) from None
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if bad.any():
            n_nan = int(np.isnan(data).sum())
            raise GliomagenError(
                f"{where}: image holds {n_nan} NaN and {int(bad.sum()) - n_nan} infinite voxel values"
            )
    elif data.dtype.kind not in "iub":
        raise GliomagenError(f"{where}: unsupported voxel type {data.dtype}")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise GliomagenError(f"{where}: invalid (singular or non-finite) affine in the header")
    return Volume(path=path, data=data, affine=affine)


def check_same_space(ref: Volume, other: Volume, *, what: str = "") -> None:
    """Raise unless ``other`` has the shape and (within tolerance) the affine of ``ref``."""
    prefix = f"{what}: " if what else ""
    if ref.shape != other.shape:
        raise GliomagenError(
            f"{prefix}{other.path.name}: shape {list(other.shape)} differs from {ref.path.name} shape {list(ref.shape)}"
        )
    rot = float(np.abs(ref.affine[:3, :3] - other.affine[:3, :3]).max())
    shift = float(np.abs(ref.affine[:3, 3] - other.affine[:3, 3]).max())
    if rot > ROTATION_TOL or shift > TRANSLATION_TOL_MM:
        raise GliomagenError(
            f"{prefix}{other.path.name}: affine differs from {ref.path.name} "
            f"(by {max(rot, shift):.3g}); the images are not in one space"
        )


def canonical_transform(affine: np.ndarray) -> np.ndarray:
    """The nibabel orientation transform ``[3, 2]`` taking this affine's voxel order to RAS."""
    return nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt("RAS"))


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorient a volume to the closest canonical (RAS+) voxel order.

    Args:
        data: ``[X, Y, Z]`` or ``[X, Y, Z, ...]`` voxel array in file order.
        affine: its ``[4, 4]`` affine.

    Returns:
        ``(data_ras, affine_ras, ornt)``: the reoriented array (a view when possible), its affine
        and the orientation transform used (undo it with :func:`from_canonical`).
    """
    ornt = canonical_transform(affine)
    out = nio.apply_orientation(data, ornt)
    new_affine = affine @ nio.inv_ornt_aff(ornt, data.shape[:3])
    return out, new_affine, ornt


def from_canonical(data: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Undo :func:`to_canonical`'s transform ``ornt`` on a canonical-order array ``[X', Y', Z']``."""
    ornt = np.asarray(ornt, dtype=np.float64)
    inverse = np.empty_like(ornt)
    for axis, (target, flip) in enumerate(ornt):
        inverse[int(target)] = (axis, flip)  # canonical axis `target` goes back to `axis`
    return nio.apply_orientation(data, inverse)


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm ``[3]`` from an affine."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def _short(exc: BaseException, path: Path) -> str:
    text = " ".join(str(exc).replace(str(path), path.name).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
