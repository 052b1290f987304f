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
    images = {
        m: np.asarray(nib.load(str(folder / f"{cid}-{m}.nii.gz")).dataobj).astype(np.float32)
        for m in MODALITIES
    }
    seg = np.asarray(nib.load(str(folder / f"{cid}-seg.nii.gz")).dataobj)
    return images, seg


def normal_brain(images: dict[str, np.ndarray], seg: np.ndarray) -> np.ndarray:
    """Voxels inside the brain (any modality > 0) that carry no tumour label."""
    brain = np.any([v > 0 for v in images.values()], axis=0)
    return brain & (seg == 0)


def deep_white_matter(images: dict[str, np.ndarray], seg: np.ndarray) -> np.ndarray:
    """Homogeneous deep white matter: the brightest quarter of smoothed T1, eroded, tumour-free.

    White matter is the brightest tissue on T1 in every cohort; one erosion keeps only voxels whose
    neighbours are white matter too, so differences there are noise, not anatomy.
    """
    brain = images["t1n"] > 0
    interior = ndi.binary_erosion(brain, iterations=2) & ~ndi.binary_dilation(seg > 0, iterations=3)
    smooth = ndi.gaussian_filter(images["t1n"], 1.0)
    bright = interior & (smooth > np.percentile(smooth[interior], 75))
    return ndi.binary_erosion(bright)


def estimate_snr(image: np.ndarray, region: np.ndarray) -> float:
    """SNR = median signal in ``region`` (deep white matter) / noise sigma.

    The noise sigma is estimated from in-plane first differences along the first array axis
    (slice blur acts along the last axis) between voxel pairs inside ``region``: for i.i.d.
    Gaussian noise a difference of neighbours has standard deviation sqrt(2) sigma; the MAD keeps
    the estimate robust to the odd remaining edge.
    """
    pairs = region[1:] & region[:-1]
    diff = (image[1:] - image[:-1])[pairs]
    sigma = 1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0)
    return float(np.median(image[region]) / max(sigma, 1e-6))


def case_features(images: dict[str, np.ndarray], seg: np.ndarray) -> np.ndarray:
    """Per-region intensity statistics of one case (intensities relative to normal brain).

    For each modality: the SNR and, for each region (normal brain, labels 1, 2, 3), the mean and
    standard deviation over the normal-brain median (0 for an empty region); plus each region's
    volume as a fraction of the brain.
    """
    normal = normal_brain(images, seg)
    brain_voxels = max(int((normal | (seg > 0)).sum()), 1)
    wm = deep_white_matter(images, seg)
    feats: list[float] = []
    for m in MODALITIES:
        img = images[m]
        ref = float(np.median(img[normal]))
        feats.append(estimate_snr(img, wm))
        for r in REGIONS:
            region = normal if r == 0 else seg == r
            vals = img[region] / ref
            feats += [float(vals.mean()), float(vals.std())] if vals.size else [0.0, 0.0]
    for r in REGIONS[1:]:
        feats.append(float((seg == r).sum()) / brain_voxels)
    return np.asarray(feats, dtype=np.float64)
