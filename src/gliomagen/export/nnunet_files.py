"""Place one case's NIfTI files in an nnU-Net raw dataset: hard link, copy or convert.

A file that nnU-Net can read as it is (``.nii.gz``, the case's geometry, a mask with the BraTS 2023
labels {0, 1, 2, 3}) is hard-linked into the dataset (copied when the dataset lies on another file
system, or the link is refused), never re-encoded. Otherwise the smallest change that makes it
readable is written:

- a ``.nii`` file is gzipped byte for byte (the NIfTI header and voxels are unchanged);
- an image with trailing singleton dimensions (``[X, Y, Z, 1]``) is rewritten as 3D;
- a mask with BraTS 2018-2021 labels {0, 1, 2, 4} is rewritten with 4 -> 3 (``uint8``), keeping
  its header's geometry.

The images' headers are read without their voxels; the mask is read whole (its labels are checked).
The four images and the mask must share one voxel grid (shape, and affine within the tolerances of
:func:`gliomagen.data.nifti.check_same_space`); nnU-Net refuses a case whose grids differ.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from gliomagen.data.layouts import CaseRecord
from gliomagen.data.nifti import Volume, check_same_space, open_nifti, read_volume
from gliomagen.data.preprocess import remap_labels
from gliomagen.errors import GliomagenError

Placement = Literal["link", "copy", "gzip", "squeeze", "relabel"]
"""How a file reached the dataset: hard link, copy, gzipped, rewritten as 3D, labels remapped."""

GZ = ".nii.gz"


def header_volume(path: Path, *, what: str = "") -> tuple[Volume, nib.Nifti1Image]:
    """The shape and affine of a NIfTI file from its header alone, and the lazily loaded image.

    The returned :class:`Volume`'s ``data`` is a zero-stride array of the file's shape (trailing
    singleton dimensions dropped) that holds no voxels; it serves the geometry checks only.

    Raises:
        GliomagenError: the file is missing, not NIfTI, or not a 2D/3D image.
    """
    where = f"{what}: {path}" if what else str(path)
    img = open_nifti(path, where)
    shape = _squeezed(img.shape)
    if len(shape) not in (2, 3):
        raise GliomagenError(f"{where}: image of shape {list(img.shape)}, expected one 2D or 3D image")
    data = np.broadcast_to(np.zeros((), dtype=np.uint8), shape)
    return Volume(path=path, data=data, affine=np.asarray(img.affine, dtype=np.float64)), img


def place_image(src: Path, dst: Path, ref: Volume, *, copy: bool = False, what: str = "") -> Placement:
    """Put image ``src`` at ``dst`` (a ``.nii.gz`` name) after checking it lies on ``ref``'s grid.

    Args:
        src: the source image.
        dst: the file to create.
        ref: the case's reference geometry (its first image, from :func:`header_volume`).
        copy: copy instead of hard-linking.
        what: the case id, for error messages.

    Returns:
        How the file was placed.
    """
    vol, img = header_volume(src, what=what)
    check_same_space(ref, vol, what=what)
    if len(_squeezed(img.shape)) != len(img.shape):
        nib.save(nib.squeeze_image(img), str(dst))
        return "squeeze"
    if not src.name.lower().endswith(GZ):
        gzip_file(src, dst)
        return "gzip"
    return link_or_copy(src, dst, copy=copy)


def place_labels(record: CaseRecord, dst: Path, ref: Volume, *, copy: bool = False) -> Placement:
    """Put the case's mask at ``dst`` with the BraTS 2023 labels {0, 1, 2, 3}.

    The mask is read and its labels checked against the case's convention
    (:meth:`CaseRecord.label_convention`, :func:`gliomagen.data.preprocess.remap_labels`); a mask
    that already holds them is linked (or gzipped), one with label 4 is rewritten.

    Raises:
        GliomagenError: the case has no mask, the mask has unknown labels or another grid.
    """
    cid = record.case_id
    if record.seg is None:
        raise GliomagenError(no_labels_message(record))
    _, img = header_volume(record.seg, what=cid)
    seg = read_volume(record.seg, what=cid)
    check_same_space(ref, seg, what=cid)
    labels = remap_labels(seg.data, record.label_convention, where=f"{cid}: {record.seg}")
    if np.array_equal(labels, seg.data) and len(img.shape) == seg.data.ndim:
        if record.seg.name.lower().endswith(GZ):
            return link_or_copy(record.seg, dst, copy=copy)
        gzip_file(record.seg, dst)
        return "gzip"
    write_labels(img, labels, dst)
    return "relabel"


def no_labels_message(record: CaseRecord) -> str:
    """The error for a case without a mask."""
    return (
        f"{record.case_id}: no segmentation file (-seg) in {record.folder}; nnU-Net training "
        "needs one for every case"
    )


def write_labels(src: nib.Nifti1Image, labels: np.ndarray, dst: Path) -> None:
    """Write ``labels`` (uint8) to ``dst`` with the header (geometry: qform, sform) of ``src``."""
    header = src.header.copy()
    header.set_data_shape(labels.shape)
    header.set_data_dtype(np.uint8)
    header.set_slope_inter(1.0, 0.0)
    out = type(src)(np.ascontiguousarray(labels, dtype=np.uint8), None, header=header)
    nib.save(out, str(dst))


def link_or_copy(src: Path, dst: Path, *, copy: bool = False) -> Placement:
    """Hard-link ``src`` to ``dst``; copy it where a link is impossible (or ``copy`` is set).

    A link fails across file systems, on file systems without hard links, and where the kernel
    protects links to files of other users; each of these falls back to a copy.
    """
    if not copy:
        try:
            os.link(src, dst)
            return "link"
        except OSError:
            pass
    shutil.copyfile(src, dst)
    return "copy"


def gzip_file(src: Path, dst: Path) -> None:
    """Gzip ``src`` byte for byte into ``dst`` (no file name or time in the gzip header)."""
    with (
        open(src, "rb") as fin,
        open(dst, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fout,
    ):
        shutil.copyfileobj(fin, fout, length=1 << 20)


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    out = tuple(int(s) for s in shape)
    while len(out) > 3 and out[-1] == 1:
        out = out[:-1]
    return out
