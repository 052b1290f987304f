"""One case from its NIfTI files to the store's grid, and stored-grid volumes back to 1 mm.

Forward (:func:`prepare_case`):

1. read and check the four images (and the mask): same shape, same affine, 3D, finite;
2. reorient to canonical RAS (the same physical image in LPS or RAS order gives the same array);
3. brain = voxels differing from the image background (the most common border value) in any
   modality, plus the tumour; crop to its bounding box, pad symmetrically to the target's aspect
   ratio (isotropic output voxels), resample to the target size: linear for images, nearest for
   masks, separable along each axis (fast, exact at the recorded coordinates); where the output
   voxel is larger than the input voxel along an axis, images are first low-passed along it
   (Gaussian anti-aliasing in :func:`~gliomagen.data.geometry.resample_linear`;
   ``PrepOptions.antialias``, on by default). Masks stay nearest: it keeps label volumes
   unbiased, where a vote of smoothed labels (soft-argmax) shrank the tumour by ~6% and the
   edema by ~15% on phantoms at 32^3;
4. intensities, per modality on the native-resolution brain box: optional N4 bias-field
   correction and non-local means denoising (:mod:`gliomagen.data.restoration`, off by default),
   then standardisation to [-1, 1] (:mod:`gliomagen.data.standardise`; by default the 0.5 / 99.5
   percentiles inside the brain map to [-1, 1]); background is exactly -1; see
   :class:`PrepOptions`;
5. labels: BraTS 2021 {0,1,2,4} and 2023 {0,1,2,3} become {0 bg, 1 NCR, 2 ED, 3 ET}.

The output grid is axis-aligned with the canonical voxel grid: stored voxel ``i`` along axis ``a``
sits at canonical voxel coordinate ``start[a] + step[a] * i``. ``geometry`` records that map and the
file's shape, affine and orientation, so :func:`to_original_space` can map any stored-grid volume
(e.g. a segmentation predicted on the store) back onto the case's original grid, and
:func:`to_template_space` maps a volume of a *new* case with a store's median geometry (both
implemented in :mod:`gliomagen.data.geometry`, with the resampling, and re-exported here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gliomagen import MODALITIES
from gliomagen.data.geometry import (
    grid_affine,
    resample_linear,
    resample_nearest,
    template_geometry,
    to_original_space,
    to_template_space,
)
from gliomagen.data.labels import derive_covariates
from gliomagen.data.layouts import CaseRecord
from gliomagen.data.nifti import (
    Volume,
    check_same_space,
    read_volume,
    sha256,
    to_canonical,
    voxel_sizes,
)
from gliomagen.data.restoration import DenoiseOptions, N4Options, restore
from gliomagen.data.standardise import PERCENTILES, check_normalization, standardise
from gliomagen.errors import GliomagenError

__all__ = ["LABEL_SETS", "PERCENTILES", "PrepOptions", "PreparedCase", "grid_affine", "prepare_case",
           "remap_labels", "resample_linear", "resample_nearest", "template_geometry",
           "to_original_space", "to_template_space"]  # fmt: skip

LABEL_SETS: dict[str, tuple[int, ...]] = {"2023": (0, 1, 2, 3), "2021": (0, 1, 2, 4)}
"""Allowed mask values per label convention; ``auto`` accepts either (not 3 and 4 together)."""


@dataclass(frozen=True)
class PrepOptions:
    """How intensities are prepared (``prepare --normalize / --bias-correction / --denoise``).

    Attributes:
        normalize: ``percentile`` (default), ``zscore`` or ``nyul`` (see
            :mod:`gliomagen.data.standardise`).
        bias_correction: N4 options, or ``None`` (off).
        denoise: non-local means options, or ``None`` (off).
        antialias: low-pass images before downsampling them (default); ``False``: plain linear.
    """

    normalize: str = "percentile"
    bias_correction: N4Options | None = None
    denoise: DenoiseOptions | None = None
    antialias: bool = True

    def __post_init__(self) -> None:
        check_normalization(self.normalize)

    @property
    def is_default(self) -> bool:
        """True for the percentile scaling without restoration, anti-aliased (the defaults)."""
        plain = not (self.bias_correction or self.denoise)
        return self.normalize == "percentile" and plain and self.antialias

    def resampling(self) -> dict[str, str]:
        """How images and masks reach the grid: ``meta.json``'s ``preprocessing.resampling``
        (every store build records and fingerprints it, so stores made before it rebuild)."""
        images = "linear, after a Gaussian prefilter along downsampled axes, sigma max(0, (step - 1) / 2) input voxels"  # fmt: skip
        return {"images": images if self.antialias else "linear", "masks": "nearest"}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for ``meta.json`` and the store fingerprint."""
        return {
            "normalization": self.normalize,
            "bias_correction": self.bias_correction.to_dict() if self.bias_correction else None,
            "denoise": self.denoise.to_dict() if self.denoise else None,
            "antialias": self.antialias,
            "resampling": self.resampling(),
        }


@dataclass
class PreparedCase:
    """A case on the store's grid.

    Attributes:
        case_id: its id.
        image: ``[C, D, H, W]`` float16 in [-1, 1], background exactly -1.
        mask: ``[D, H, W]`` uint8 labels {0..3}, or ``None`` for a case without a mask.
        geometry: JSON-ready map between the stored grid and the original file grid.
        covariates: ``wt_volume_ml``, ``enhancing_fraction``, ``hemisphere`` (``None`` without a mask).
        intensity: per modality ``{"background", "p_lo", "p_hi"}`` in the file's units (after
            restoration), plus what the options measured (``mean``/``sd`` for zscore, ``nyul``
            landmarks, ``log_bias_sd``, ``noise_sigma``, ``h``).
        checksums: SHA-256 of each input file, by modality / ``seg``.
    """

    case_id: str
    image: np.ndarray
    mask: np.ndarray | None
    geometry: dict[str, Any]
    covariates: dict[str, Any] = field(default_factory=dict)
    intensity: dict[str, dict[str, Any]] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)


def prepare_case(
    record: CaseRecord, size: Sequence[int], options: PrepOptions | None = None
) -> PreparedCase:
    """Read, check and preprocess one case onto a ``size`` grid.

    Args:
        record: the case's files (from :func:`gliomagen.data.layouts.find_cases`).
        size: target grid ``(D, H, W)``.
        options: intensity options (default: percentile scaling, no restoration). With
            ``nyul`` the image is percentile-scaled and ``intensity[m]["nyul"]`` holds the case's
            landmarks; the store builder applies the learnt map afterwards.

    Returns:
        The :class:`PreparedCase`.

    Raises:
        GliomagenError: a message naming the case, the file and the problem.
    """
    cid = record.case_id
    opts = options or PrepOptions()
    if record.problem:
        raise GliomagenError(f"{cid}: {record.problem}")
    size_arr = np.asarray(size, dtype=np.int64)
    vols, raw_mask, checksums = _read_case(record)
    backgrounds = [_background_value(v.data) for v in vols]
    images_c, brain, mask_c, affine_c, ornt = _canonical(vols, backgrounds, raw_mask)
    if not brain.any():
        raise GliomagenError(
            f"{cid}: {record.images['t1n'].parent}: empty brain (every voxel is background)"
        )
    box = _fit_box(brain, affine_c, size_arr)
    brain_crop = np.ascontiguousarray(brain[box.crop])  # [x, y, z], C order from here on
    brain_out = (
        resample_linear(brain_crop[None], box.rel, box.step, size_arr, fill=0.0)[0] >= 0.5
    )  # [D, H, W]
    image, intensity = _intensities(
        record, images_c, backgrounds, box, brain_crop, brain_out, size_arr, opts
    )
    mask: np.ndarray | None = None
    if mask_c is not None:
        mask = resample_nearest(mask_c[box.crop][None], box.rel, box.step, size_arr, fill=0)[0]
        mask = mask.astype(np.uint8)
    centre_world = (affine_c @ np.append(box.centre, 1.0))[:3]
    file_grid = {
        "shape": list(map(int, vols[0].shape)),
        "affine": vols[0].affine.tolist(),
        "ornt": ornt.tolist(),
        "canonical_shape": list(map(int, brain.shape)),
        "canonical_affine": affine_c.tolist(),
        "size": size_arr.tolist(),
    }
    return PreparedCase(
        case_id=cid,
        image=image,
        mask=mask,
        geometry={**file_grid, **box.record(), "centre_world": centre_world.tolist()},
        covariates=_covariates(mask_c, box, affine_c, centre_world),
        intensity=intensity,
        checksums=checksums,
    )


@dataclass(frozen=True)
class _Box:
    """The stored grid in canonical voxels (``start + step * i``) and the brain box it covers.

    Attributes:
        lo, hi: the brain's inclusive bounding box ``[3]``.
        spacing: canonical voxel sizes (mm) ``[3]``.
        scale_mm: the output voxel size (mm), the same along every axis.
        step, centre, start: the grid map, in canonical voxels ``[3]``.
        a0: the crop's first voxel ``[3]``; crop: the brain box plus a one-voxel margin.
    """

    lo: np.ndarray
    hi: np.ndarray
    spacing: np.ndarray
    scale_mm: float
    step: np.ndarray
    centre: np.ndarray
    start: np.ndarray
    a0: np.ndarray
    crop: tuple[slice, ...]

    @property
    def rel(self) -> np.ndarray:
        """``start`` relative to the crop."""
        return self.start - self.a0

    def record(self) -> dict[str, Any]:
        """The grid's entries of a case's ``geometry``."""
        return {
            "start": self.start.tolist(),
            "step": self.step.tolist(),
            "spacing_mm": self.scale_mm,
            "brain_box": [self.lo.tolist(), self.hi.tolist()],
        }


def _fit_box(brain: np.ndarray, affine_c: np.ndarray, size_arr: np.ndarray) -> _Box:
    """The brain's bounding box, padded symmetrically to the grid's aspect ratio (isotropic voxels)."""
    lo, hi = _bbox(brain)
    sp = voxel_sizes(affine_c)
    scale_mm = float(((hi - lo + 1) * sp / size_arr).max())
    step = scale_mm / sp
    centre = (lo + hi) / 2.0
    start = centre - (size_arr - 1) / 2.0 * step
    # Work on the brain box plus a one-voxel margin: outside it every channel equals its fill
    # value (-1 images, 0 brain and mask), so the result is the same as on the whole volume.
    a0 = np.maximum(lo - 1, 0)
    a1 = np.minimum(hi + 2, np.array(brain.shape))
    crop = tuple(slice(int(p), int(q)) for p, q in zip(a0, a1, strict=True))
    return _Box(lo, hi, sp, scale_mm, step, centre, start, a0, crop)


def _read_case(record: CaseRecord) -> tuple[list[Volume], np.ndarray | None, dict[str, str]]:
    """The four images (checked to share one space), the remapped mask and every file's SHA-256."""
    cid = record.case_id
    checksums = {m: sha256(record.images[m]) for m in MODALITIES}
    vols = [read_volume(record.images[m], what=cid) for m in MODALITIES]
    for vol in vols[1:]:
        check_same_space(vols[0], vol, what=cid)
    raw_mask = None
    if record.seg is not None:
        checksums["seg"] = sha256(record.seg)
        seg = read_volume(record.seg, what=cid)
        check_same_space(vols[0], seg, what=cid)
        raw_mask = remap_labels(seg.data, record.label_convention, where=f"{cid}: {record.seg}")
    return vols, raw_mask, checksums


def _canonical(
    vols: list[Volume], backgrounds: list[float], raw_mask: np.ndarray | None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """The images, brain and mask in canonical RAS order: ``(images, brain, mask, affine, ornt)``.

    The brain is the voxels differing from the background in any modality, plus the tumour.
    Whole-volume work happens in file voxel order (NIfTI arrays are Fortran-ordered, and mixing
    memory layouts is slow); the canonical arrays are views.
    """
    brain_file = vols[0].data != backgrounds[0]  # [X, Y, Z] bool, file order
    for vol, bg in zip(vols[1:], backgrounds[1:], strict=True):
        brain_file |= vol.data != bg
    if raw_mask is not None:
        brain_file |= raw_mask > 0
    canon = [to_canonical(v.data, v.affine) for v in vols]
    affine_c, ornt = canon[0][1], canon[0][2]
    images_c = [c[0] for c in canon]  # 4 x [X, Y, Z] canonical views, file dtype
    brain = to_canonical(brain_file, vols[0].affine)[0]
    mask_c = to_canonical(raw_mask, vols[0].affine)[0] if raw_mask is not None else None
    return images_c, brain, mask_c, affine_c, ornt


def _intensities(
    record: CaseRecord,
    images_c: list[np.ndarray],
    backgrounds: list[float],
    box: _Box,
    brain_crop: np.ndarray,
    brain_out: np.ndarray,
    size_arr: np.ndarray,
    opts: PrepOptions,
) -> tuple[np.ndarray, dict[str, dict[str, Any]]]:
    """Restore, standardise and resample each modality: ``(image [C, D, H, W] float16, intensity)``.

    A case ``gliomagen generate`` wrote (``record.scale``) is put back on the generator's scale by
    inverting the writer's linear map, whatever ``--normalize`` says (its ``intensity`` says
    ``"scale": "recorded"``).
    """
    cid = record.case_id
    image = np.empty((len(MODALITIES), *size_arr.tolist()), dtype=np.float16)  # [C, D, H, W]
    intensity: dict[str, dict[str, Any]] = {}
    for c, (m, x, bg) in enumerate(zip(MODALITIES, images_c, backgrounds, strict=True)):
        xc = np.ascontiguousarray(
            x[box.crop], dtype=np.float32
        )  # [x, y, z]; one channel at a time keeps memory small
        extra: dict[str, Any] = {}
        if record.scale is not None:
            # written by gliomagen generate: invert its own linear map (no restoration, no
            # percentiles: the generator already drew the store's scale, and a smooth synthetic
            # image's percentiles sit elsewhere than a noisy scan's, which would shift it)
            p_lo, p_hi = record.scale[m]
            standardise(xc, brain_crop, "percentile", p_lo, p_hi)
            extra["scale"] = "recorded"
        else:
            if opts.bias_correction or opts.denoise:
                try:
                    xc, extra = restore(xc, brain_crop, box.spacing, opts.bias_correction, opts.denoise)
                except GliomagenError as exc:
                    raise GliomagenError(f"{cid}: {record.images[m]}: {exc}") from None
            p_lo, p_hi = (float(v) for v in np.percentile(xc[brain_crop], PERCENTILES))
            if not p_hi > p_lo:
                raise GliomagenError(
                    f"{cid}: {record.images[m]}: image is constant ({p_lo:g}) inside the brain; is it empty?"
                )
            extra.update(standardise(xc, brain_crop, opts.normalize, p_lo, p_hi))  # in [-1, 1]
        # antialias: scipy's Gaussian along downsampled axes; outside the crop is background -1
        out = resample_linear(
            xc[None], box.rel, box.step, size_arr, fill=-1.0, antialias=opts.antialias
        )[0]  # [D, H, W]
        out[~brain_out] = -1.0
        np.clip(out, -1.0, 1.0, out=out)
        image[c] = out
        intensity[m] = {"background": float(bg), "p_lo": p_lo, "p_hi": p_hi, **extra}
    return image, intensity


def _covariates(
    mask_c: np.ndarray | None, box: _Box, affine_c: np.ndarray, centre_world: np.ndarray
) -> dict[str, Any]:
    """The mask's covariates, measured on the crop (the tumour is inside it)."""
    if mask_c is None:
        return {"wt_volume_ml": None, "enhancing_fraction": None, "hemisphere": None}
    shift = np.eye(4)
    shift[:3, 3] = box.a0  # the crop's voxel (0, 0, 0) is canonical voxel a0
    return derive_covariates(mask_c[box.crop], affine_c @ shift, midline_x=float(centre_world[0]))


def remap_labels(data: np.ndarray, convention: str = "auto", *, where: str = "mask") -> np.ndarray:
    """Map BraTS mask values to {0 bg, 1 NCR, 2 ED, 3 ET}.

    Args:
        data: mask voxels, any integer (or integral float) dtype.
        convention: ``2021`` ({0,1,2,4}), ``2023`` ({0,1,2,3}) or ``auto`` (either).
        where: the file, for error messages.

    Returns:
        uint8 labels, same shape.

    Raises:
        GliomagenError: values outside the convention, naming ``where`` and the values.

    Example:
        >>> remap_labels(np.array([0, 1, 2, 4]), "2021").tolist()
        [0, 1, 2, 3]
    """
    if data.dtype.kind == "f":
        frac = data != np.round(data)
        if frac.any():
            vals = np.unique(data[frac])[:5].tolist()
            raise GliomagenError(f"{where}: non-integer label values {vals}")
    allowed = set(LABEL_SETS.get(convention, (0, 1, 2, 3, 4)))
    lo, hi = (int(v) for v in (data.min(), data.max())) if data.size else (0, 0)
    if lo < 0 or hi > 16:  # not a BraTS mask; a full sort is fine on this error path
        present = sorted(int(v) for v in np.unique(data))
    else:
        present = [v for v in range(lo, hi + 1) if v in (lo, hi) or (data == v).any()]
    bad = sorted(set(present) - allowed)
    if convention == "auto" and {3, 4} <= set(present):
        bad = [3, 4]
    if bad:
        expect = {"2021": "BraTS 2021 labels {0,1,2,4}", "2023": "BraTS 2023 labels {0,1,2,3}"}.get(
            convention, "{0,1,2,3} or {0,1,2,4}"
        )
        raise GliomagenError(f"{where}: unknown label values {bad} (expected {expect})")
    labels = data.astype(np.uint8)
    if 4 in present:
        labels[labels == 4] = 3
    return labels


def _background_value(x: np.ndarray) -> float:
    """The most common value on the volume's six faces (0 for skull-stripped BraTS)."""
    faces = np.concatenate([x[[0, -1]].ravel(), x[:, [0, -1]].ravel(), x[:, :, [0, -1]].ravel()])
    values, counts = np.unique(faces, return_counts=True)
    return float(values[np.argmax(counts)])


def _bbox(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive bounding box ``(lo [3], hi [3])`` of a non-empty boolean volume."""
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        lo.append(hit[0])
        hi.append(hit[-1])
    return np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)
