"""From the network's [-1, 1] range back to scanner-like intensities, with a brain mask.

The generator writes every modality in [-1, 1] with the background at -1 (the store's convention).
BraTS files instead hold non-negative scanner intensities (int16 in the releases) with the
background exactly 0, and downstream tools rely on that: nnU-Net crops to the non-zero region, the
BraTS toolkits take ``image > 0`` as the brain. So a generated case is turned back like this:

1. **Brain mask** (:func:`brain_mask`): voxels whose channel mean of the four images is above
   ``-0.9`` (5 % of the range above the background), kept only inside the largest 26-connected
   component of the same test on the mean smoothed with a Gaussian of sigma 1 voxel (smoothing
   decides what is connected and drops specks, without widening the brain), then holes filled
   in 3D (a core dark in every modality stays brain). Everything outside is background; tumour
   labels outside it are set to 0.
2. **Intensities** (:func:`to_scanner`): inside the brain, ``x in [-1, 1]`` is mapped linearly to
   ``[lo, hi]`` of the modality (values outside [-1, 1] are clipped first); outside it, 0. ``lo``
   is at least 1, so every brain voxel stays non-zero after rounding to int16.

Default ranges (:data:`SCANNER_RANGES`), chosen near the brain's 0.5th / 99.5th percentiles of
BraTS 2021-2023 glioma cases stored as int16 (e.g. BraTS-GLI-00001-000: t1n 309 / 1455, t1c 1168 /
7851, t2w 109 / 2513, t2f 130 / 2621; TCGA-DU-7294 in BraTS space: t1 42 / 714, t2 226 / 2183).
Real BraTS intensities are not standardised across scanners; these are one plausible scanner, not
a calibration:

=========  =====  ======
modality   lo     hi
=========  =====  ======
t1n        100    1500
t1c        100    3000
t2w        50     2500
t2f        50     2000
=========  =====  ======

When the checkpoint's store meta records the training cohort's own per-modality reference range
(``meta["preprocessing"]["reference_range"] = {modality: [lo, hi]}``), that range is used instead,
so a cohort lands on the scale of the data it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

SCANNER_RANGES: dict[str, tuple[float, float]] = {
    "t1n": (100.0, 1500.0),
    "t1c": (100.0, 3000.0),
    "t2w": (50.0, 2500.0),
    "t2f": (50.0, 2000.0),
}
"""Default ``(lo, hi)`` scanner intensity of network values -1 and +1 inside the brain."""

BRAIN_THRESHOLD = -0.9
"""Brain where the smoothed channel mean exceeds this network value."""

BRAIN_SIGMA = 1.0
"""Gaussian smoothing (voxels) of the channel mean before thresholding."""


def scanner_ranges(
    modalities: Sequence[str], meta: Mapping[str, Any] | None = None
) -> list[tuple[float, float]]:
    """The ``(lo, hi)`` range of each modality, from the store meta if it has one, else the table.

    Args:
        modalities: channel names in order.
        meta: the store meta saved in the checkpoint (optional).

    Returns:
        One ``(lo, hi)`` per modality with ``1 <= lo < hi``.
    """
    recorded: Mapping[str, Any] = {}
    if meta:
        prep = meta.get("preprocessing") or {}
        if isinstance(prep, Mapping):
            recorded = prep.get("reference_range") or {}
    out = []
    for m in modalities:
        lo, hi = recorded.get(m) or SCANNER_RANGES.get(m, (100.0, 2000.0))
        lo, hi = max(1.0, float(lo)), float(hi)
        if not hi > lo:
            hi = lo + 1000.0
        out.append((lo, hi))
    return out


def brain_mask(
    images: np.ndarray, threshold: float = BRAIN_THRESHOLD, sigma: float = BRAIN_SIGMA
) -> np.ndarray:
    """The brain of one generated case.

    Args:
        images: ``[C, D, H, W]`` network output in [-1, 1] (or a slice ``[C, H, W]``).
        threshold: brain where the smoothed channel mean is above this.
        sigma: Gaussian smoothing in voxels.

    Returns:
        ``[D, H, W]`` (``[H, W]``) bool (all False if nothing is above the threshold); components
        are 26-connected (8-connected in 2D).
    """
    mean = np.asarray(images, dtype=np.float32).mean(axis=0)  # [D, H, W]
    raw = mean > threshold
    smooth = (
        ndimage.gaussian_filter(mean, sigma=sigma, mode="nearest") > threshold if sigma > 0 else raw
    )
    labels, n = ndimage.label(smooth, structure=np.ones((3,) * smooth.ndim, dtype=bool))
    if n == 0:
        return smooth
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    component = labels == int(np.argmax(sizes))
    return ndimage.binary_fill_holes(component & raw)


def mask_labels(logits: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Tumour labels ``[D, H, W]`` uint8 in {0, 1, 2, 3}: argmax of ``logits [4, D, H, W]``, 0 outside the brain."""
    seg = np.asarray(logits).argmax(axis=0).astype(np.uint8)
    seg[~brain] = 0
    return seg


def scale_to_range(images: np.ndarray, ranges: Sequence[tuple[float, float]]) -> np.ndarray:
    """``images [C, ...]`` in [-1, 1] (clipped) -> float32 ``lo + (x + 1) / 2 (hi - lo)`` per channel, no mask.

    This map is affine per channel, so it commutes with linear resampling: scaling on the
    generator's grid and resampling afterwards (with ``lo`` as the fill) gives the same values as
    resampling first, at a fraction of the cost on a 240x240x155 grid.
    """
    x = np.asarray(images, dtype=np.float32)
    if len(ranges) != x.shape[0]:
        raise ValueError(f"{len(ranges)} intensity ranges for {x.shape[0]} channels")
    out = np.empty(x.shape, dtype=np.float32)
    for c, (lo, hi) in enumerate(ranges):
        np.clip(x[c], -1.0, 1.0, out=out[c])
        out[c] += 1.0
        out[c] *= 0.5 * (float(hi) - float(lo))
        out[c] += float(lo)
    return out


def apply_brain(scaled: np.ndarray, brain: np.ndarray, fmt: str = "float32") -> np.ndarray:
    """Zero ``scaled [C, ...]`` outside ``brain [...]`` and cast to ``fmt`` (``int16``: rounded), in place when possible."""
    if fmt not in ("float32", "int16"):
        raise ValueError(f"fmt must be float32 or int16, got {fmt!r}")
    out = np.asarray(scaled, dtype=np.float32)
    keep = np.asarray(brain, dtype=bool)
    for c in range(out.shape[0]):
        np.multiply(out[c], keep, out=out[c])
    if fmt == "int16":
        np.rint(out, out=out)
        return out.astype(np.int16)
    return out


def to_scanner(
    images: np.ndarray,
    brain: np.ndarray,
    ranges: Sequence[tuple[float, float]],
    fmt: str = "float32",
) -> np.ndarray:
    """Map ``images [C, D, H, W]`` in [-1, 1] to scanner intensities, 0 outside ``brain [D, H, W]``.

    Args:
        images: network values (clipped to [-1, 1]).
        brain: brain mask.
        ranges: ``(lo, hi)`` per channel.
        fmt: ``float32`` or ``int16`` (rounded to the nearest integer).

    Returns:
        ``[C, D, H, W]`` array of ``fmt``: in ``[lo, hi]`` inside the brain, exactly 0 outside.
    """
    if fmt not in ("float32", "int16"):
        raise ValueError(f"fmt must be float32 or int16, got {fmt!r}")
    return apply_brain(scale_to_range(images, ranges), brain, fmt)
