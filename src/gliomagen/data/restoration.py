"""Optional image restoration before standardisation: N4 bias-field correction and NLM denoising.

Both are off by default (``prepare --bias-correction``, ``prepare --denoise``) and both run on each
modality's **native-resolution** brain box (the cropped file grid, brain mask inside it), before
intensity standardisation and before resampling to the store grid, in this order: N4, then
non-local means. Why there:

* N4 models the scanner's smooth multiplicative field on the image as acquired, and the
  standardisation percentiles / landmarks should be measured on the corrected intensities;
* the noise is independent from voxel to voxel only on the acquisition grid: resampling (linear
  interpolation) correlates and partly averages it, which biases the noise estimate and the
  patch similarities non-local means relies on.

Cost, measured on a busy 2-core machine with a phantom case: N4 is fitted on a copy shrunk by
``shrink`` along each axis (4 by default: 64x fewer voxels) and its smooth field evaluated at full
resolution: ~4 s per modality at 2 mm (64x80x66 brain box), ~18 s at 1 mm (129x161x132);
``shrink`` 2 is ~5x slower. Non-local means (scikit-image, ``fast_mode``) costs about
``(2 * patch_distance + 1)^3`` operations per voxel: ~4 s per modality at 2 mm and ~22 s at 1 mm
with the defaults. Both on, a 1 mm case takes ~2.5 minutes more than without;
``--workers`` spreads cases over processes.

Noise level: ``h = strength * sigma``, with ``sigma`` estimated per image by
:func:`estimate_noise_sigma`, the estimator of :func:`skimage.restoration.estimate_sigma` (median
absolute finest-scale diagonal wavelet coefficient / 0.6745, Donoho & Johnstone 1994), here with
the Haar wavelet computed in numpy and **only over 2x2x2 blocks inside the brain**: skimage's
version needs PyWavelets (not a dependency) and would count the background of a non
skull-stripped image as signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gliomagen.errors import GliomagenError

_MAD_TO_SD = 0.6744897501960817
"""Median absolute value of a standard normal variable (``scipy.stats.norm.ppf(0.75)``)."""


@dataclass(frozen=True)
class N4Options:
    """N4 bias-field correction (SimpleITK ``N4BiasFieldCorrectionImageFilter``).

    Attributes:
        shrink: the field is fitted on the image shrunk by this factor per axis (1..16), then
            evaluated at full resolution; reduced automatically so the shrunk box keeps >= 8 voxels
            per axis.
        iterations: maximum iterations per fitting level (its length is the number of levels).
        control_points: B-spline control points per axis at the first level (>= 4).
    """

    shrink: int = 4
    iterations: tuple[int, ...] = (50, 50, 50, 50)
    control_points: int = 4

    def __post_init__(self) -> None:
        if not 1 <= int(self.shrink) <= 16:
            raise GliomagenError(f"--n4-shrink {self.shrink}: must be 1..16")
        if not self.iterations or any(int(i) < 1 for i in self.iterations):
            raise GliomagenError(f"N4 iterations {list(self.iterations)}: need >= 1 per level")
        if int(self.control_points) < 4:
            raise GliomagenError(f"N4 control points {self.control_points}: must be >= 4")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``meta["preprocessing"]["bias_correction"]``)."""
        return {"method": "N4 (SimpleITK)", **asdict(self), "iterations": list(self.iterations)}


@dataclass(frozen=True)
class DenoiseOptions:
    """Non-local means (``skimage.restoration.denoise_nl_means``, ``fast_mode``).

    Attributes:
        patch_size: side of the compared patches (voxels, odd, 3..9).
        patch_distance: search radius (voxels, 1..10); cost grows as ``(2 d + 1)^3``.
        strength: ``h = strength * sigma`` (skimage suggests 0.8 with ``sigma`` given), 0 < s <= 5.
    """

    patch_size: int = 3
    patch_distance: int = 3
    strength: float = 0.8
    sigma_estimator: str = field(default="haar-mad-in-brain", init=False)

    def __post_init__(self) -> None:
        if not (3 <= int(self.patch_size) <= 9 and int(self.patch_size) % 2 == 1):
            raise GliomagenError(f"--denoise-patch {self.patch_size}: must be odd, 3..9")
        if not 1 <= int(self.patch_distance) <= 10:
            raise GliomagenError(f"--denoise-distance {self.patch_distance}: must be 1..10")
        if not 0.0 < float(self.strength) <= 5.0:
            raise GliomagenError(f"--denoise-strength {self.strength}: must be > 0 and <= 5")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``meta["preprocessing"]["denoise"]``)."""
        return {"method": "non-local means (scikit-image, fast_mode)", **asdict(self)}


def restore(
    x: np.ndarray,
    brain: np.ndarray,
    spacing: Sequence[float] | np.ndarray,
    n4: N4Options | None = None,
    denoise: DenoiseOptions | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """N4 then non-local means (each only if given) on one modality's native-resolution box.

    Args:
        x: ``[X, Y, Z]`` float32 image (file units).
        brain: ``[X, Y, Z]`` bool brain mask.
        spacing: voxel size (mm) per axis.
        n4: bias-correction options, or ``None`` to skip.
        denoise: denoising options, or ``None`` to skip.

    Returns:
        ``(image, info)``: the restored float32 image (outside the brain unchanged) and what was
        measured (``log_bias_sd``, ``noise_sigma``, ``h``).
    """
    info: dict[str, float] = {}
    if n4 is not None:
        x, log_bias = n4_correct(x, brain, spacing, n4)
        info["log_bias_sd"] = float(log_bias[brain].std())
    if denoise is not None:
        x, sigma, h = denoise_nlm(x, brain, denoise)
        info.update(noise_sigma=sigma, h=h)
    return x, info


def n4_correct(
    x: np.ndarray,
    brain: np.ndarray,
    spacing: Sequence[float] | np.ndarray,
    opts: N4Options | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Remove a smooth multiplicative bias field from the brain with N4 (Tustison et al., 2010).

    Args:
        x: ``[X, Y, Z]`` image (file units, >= 0 in the brain).
        brain: ``[X, Y, Z]`` bool brain mask; voxels <= 0 are left out of the fit.
        spacing: voxel size (mm) per axis.
        opts: :class:`N4Options` (defaults if ``None``).

    Returns:
        ``(corrected, log_bias)``: float32 ``[X, Y, Z]`` ``x / exp(log_bias)`` inside the brain
        (unchanged outside) and the fitted log field (float32, 0 outside the brain).
    """
    import SimpleITK as sitk  # imported here: only --bias-correction needs it

    opts = opts or N4Options()
    x = np.asarray(x, dtype=np.float32)
    fit = brain & (x > 0)
    if fit.sum() < 64:
        raise GliomagenError(
            f"N4: only {int(fit.sum())} positive brain voxels; too few to fit a field"
        )
    shrink = max(1, min(int(opts.shrink), min(x.shape) // 8))
    # SimpleITK reads a numpy array's axes in reverse order: reverse the spacing to match.
    image = sitk.GetImageFromArray(x)
    image.SetSpacing([float(s) for s in reversed(list(spacing))])
    mask = sitk.GetImageFromArray(fit.astype(np.uint8))
    mask.CopyInformation(image)
    small, small_mask = (sitk.Shrink(im, [shrink] * 3) for im in (image, mask))
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in opts.iterations])
    n4.SetNumberOfControlPoints([int(opts.control_points)] * 3)
    try:
        n4.Execute(small, small_mask)
    except RuntimeError as exc:  # e.g. the shrunk mask lost every voxel
        raise GliomagenError(f"N4: bias-field fit failed ({str(exc).splitlines()[-1]})") from None
    log_bias = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(image))  # [X, Y, Z]
    log_bias = np.where(brain, log_bias, 0.0).astype(np.float32)
    out = x.copy()
    out[brain] = x[brain] * np.exp(-log_bias[brain])
    return out, log_bias


def estimate_noise_sigma(x: np.ndarray, brain: np.ndarray) -> float:
    """Noise standard deviation inside the brain (robust wavelet estimator, see module docstring).

    The finest-scale Haar ``ddd`` coefficient of each 2x2x2 block is ``sum(+-x) / sqrt(8)``:
    pure noise of sd ``sigma`` gives coefficients of sd ``sigma``, while any signal that is
    linear (or constant) along one of the axes within the block gives 0.

    Args:
        x: ``[X, Y, Z]`` image.
        brain: ``[X, Y, Z]`` bool mask; only blocks entirely inside it count.

    Returns:
        ``median(|ddd|) / 0.6745``.

    Raises:
        GliomagenError: no 2x2x2 block lies inside the brain.
    """
    x = np.asarray(x, dtype=np.float64)
    n = [s - s % 2 for s in x.shape]
    v = x[: n[0], : n[1], : n[2]]
    b = brain[: n[0], : n[1], : n[2]]
    ddd = np.zeros([s // 2 for s in n])  # [X/2, Y/2, Z/2]
    inside = np.ones([s // 2 for s in n], dtype=bool)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                sign = -1.0 if (i + j + k) % 2 else 1.0
                ddd += sign * v[i::2, j::2, k::2]
                inside &= b[i::2, j::2, k::2]
    coeffs = ddd[inside] / np.sqrt(8.0)
    if coeffs.size == 0:
        raise GliomagenError("denoise: no 2x2x2 block inside the brain to estimate the noise from")
    return float(np.median(np.abs(coeffs)) / _MAD_TO_SD)


def denoise_nlm(
    x: np.ndarray, brain: np.ndarray, opts: DenoiseOptions | None = None
) -> tuple[np.ndarray, float, float]:
    """Non-local means inside the brain, with ``h`` from the estimated noise level.

    Args:
        x: ``[X, Y, Z]`` image.
        brain: ``[X, Y, Z]`` bool brain mask (the result is kept only there).
        opts: :class:`DenoiseOptions` (defaults if ``None``).

    Returns:
        ``(denoised float32 [X, Y, Z], sigma, h)``; outside the brain unchanged.
    """
    from skimage.restoration import denoise_nl_means  # here: only --denoise needs scikit-image

    opts = opts or DenoiseOptions()
    x = np.asarray(x, dtype=np.float32)
    sigma = estimate_noise_sigma(x, brain)
    h = float(opts.strength) * sigma
    if sigma <= 0:  # noise-free (e.g. constant) brain: nothing to do
        return x.copy(), sigma, h
    smooth = denoise_nl_means(
        x,
        patch_size=int(opts.patch_size),
        patch_distance=int(opts.patch_distance),
        h=h,
        sigma=sigma,
        fast_mode=True,
        preserve_range=True,
        channel_axis=None,
    )
    out = x.copy()
    out[brain] = smooth[brain]
    return out, sigma, h
