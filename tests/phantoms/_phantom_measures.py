"""Measurements on phantom files, independent of the generator's internals (what a user sees)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from gliomagen import MODALITIES

REGIONS: tuple[int, ...] = (0, 1, 2, 3)
"""Label 0 restricted to the brain = normal-appearing brain."""


def load_case(folder: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Read a BraTS 2023 case folder: modality -> float32 image, and the uint8 label map."""
    cid = folder.name
    images = {m: np.asarray(nib.load(str(folder / f"{cid}-{m}.nii.gz")).dataobj).astype(np.float32) for m in MODALITIES}
    seg = np.asarray(nib.load(str(folder / f"{cid}-seg.nii.gz")).dataobj)
    return images, seg


def normal_brain(images: dict[str, np.ndarray], seg: np.ndarray) -> np.ndarray:
    """Voxels inside the brain (any modality > 0) that carry no tumour label."""
    brain = np.any([v > 0 for v in images.values()], axis=0)
    return brain & (seg == 0)


def snr_region(brain: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Interior of normal brain: eroded by 2 voxels, 2 voxels away from the tumour."""
    return ndi.binary_erosion(brain, iterations=2) & ~ndi.binary_dilation(seg > 0, iterations=2)


def estimate_snr(image: np.ndarray, seg: np.ndarray, interior: np.ndarray | None = None) -> float:
    """SNR = median signal of normal brain / noise sigma.

    The noise sigma is estimated from in-plane first differences along the first array axis
    (slice blur acts along the last axis): for i.i.d. Gaussian noise, a difference of neighbours
    has standard deviation sqrt(2) sigma; the MAD makes it robust to tissue edges. Only the
    interior of normal brain (:func:`snr_region`) is used.
    """
    if interior is None:
        interior = snr_region(image > 0, seg)
    pairs = interior[1:] & interior[:-1]
    diff = (image[1:] - image[:-1])[pairs]
    sigma = 1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0)
    return float(np.median(image[interior]) / max(sigma, 1e-6))


def case_features(images: dict[str, np.ndarray], seg: np.ndarray) -> np.ndarray:
    """Per-region intensity statistics of one case (intensities relative to normal brain).

    For each modality: the SNR and, for each region (normal brain, labels 1, 2, 3), the mean and
    standard deviation over the normal-brain median (0 for an empty region); plus each region's
    volume as a fraction of the brain.
    """
    normal = normal_brain(images, seg)
    brain_voxels = max(int((normal | (seg > 0)).sum()), 1)
    interior = snr_region(normal | (seg > 0), seg)
    feats: list[float] = []
    for m in MODALITIES:
        img = images[m]
        ref = float(np.median(img[normal]))
        feats.append(estimate_snr(img, seg, interior))
        for r in REGIONS:
            region = normal if r == 0 else seg == r
            vals = img[region] / ref
            feats += [float(vals.mean()), float(vals.std())] if vals.size else [0.0, 0.0]
    for r in REGIONS[1:]:
        feats.append(float((seg == r).sum()) / brain_voxels)
    return np.asarray(feats, dtype=np.float64)
