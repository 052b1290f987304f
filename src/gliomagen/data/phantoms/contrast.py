"""Contrast: tissue and tumour maps -> four MR images, as one cohort's scanners would see them.

Each voxel's signal is the partial-volume mix of its tissue classes' intensities (grey and white
matter, CSF, necrosis or non-enhancing core, enhancing tumour, edema), with subject-level jitter
of every intensity and a global scale per modality (BraTS files are not intensity-normalised).
Then, per acquisition (cohort): a contrast balance (gain of each tissue's contrast against white
matter), a smooth multiplicative texture, a smooth bias field, blur along the slice axis (thick
slices) and in plane, and Rician noise. Outside the brain the image is exactly 0 (skull-stripped,
as in BraTS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from gliomagen import MODALITIES
from gliomagen.data.phantoms.fields import smooth_field
from gliomagen.data.phantoms.params import TISSUES, AcquisitionParams, ContrastParams
from gliomagen.data.phantoms.tumour import TumourMaps


@dataclass(frozen=True)
class SubjectContrast:
    """One subject's intensities and acquisition draws.

    Attributes:
        intensity: modality -> tissue -> mean signal (jittered, contrast-balanced, scaled).
        snr: modality -> SNR (white-matter signal over the noise sigma).
        bias_sigma: modality -> log-amplitude of the bias field.
    """

    intensity: dict[str, dict[str, float]]
    snr: dict[str, float]
    bias_sigma: dict[str, float]


def sample_contrast(
    rng: np.random.Generator, params: ContrastParams, acq: AcquisitionParams
) -> SubjectContrast:
    """Draw a subject's tissue intensities, SNR and bias amplitude for every modality."""
    jitter = {
        m: {t: float(np.exp(params.class_jitter_sigma * rng.standard_normal())) for t in TISSUES}
        for m in ("t1n", "t2w", "t2f")
    }
    scale = {
        m: float(np.exp(params.global_scale_sigma * rng.standard_normal())) for m in MODALITIES
    }
    reference = {"t1n": params.t1n, "t2w": params.t2w, "t2f": params.t2f}
    intensity: dict[str, dict[str, float]] = {}
    for m, ref in reference.items():
        raw = {t: ref[t] * jitter[m][t] for t in TISSUES}
        gain = acq.contrast_gain[m]
        intensity[m] = {t: raw["wm"] + gain * (raw[t] - raw["wm"]) for t in TISSUES}
    # T1Gd = T1 (before its own global scale) plus enhancement where gadolinium leaks.
    gain = acq.contrast_gain["t1c"]
    intensity["t1c"] = {
        t: intensity["t1n"][t] * (1.0 + gain * params.enhancement[t]) for t in TISSUES
    }
    for m in MODALITIES:
        intensity[m] = {t: max(v, 1.0) * scale[m] for t, v in intensity[m].items()}
    snr0 = float(rng.uniform(*acq.snr))
    snr = {m: snr0 * float(rng.uniform(0.85, 1.15)) for m in MODALITIES}
    bias = {m: acq.bias_sigma * float(rng.uniform(0.7, 1.3)) for m in MODALITIES}
    return SubjectContrast({m: intensity[m] for m in MODALITIES}, snr, bias)


def synthesise(
    subject: SubjectContrast,
    params: ContrastParams,
    acq: AcquisitionParams,
    resolution: int,
    tissues: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    tumour: TumourMaps,
    grade: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render the four modalities at the brain voxels of the working box.

    Args:
        subject: the subject's intensities and acquisition draws.
        params: contrast parameters (texture).
        acq: the cohort's acquisition parameters (blur).
        resolution: voxel size (mm).
        tissues: ``(gm, wm, csf, brain)`` float32 [*box].
        tumour: soft tumour memberships.
        grade: ``HGG`` or ``LGG`` (label 1 is necrosis or non-enhancing core).
        rng: random generator for texture, bias and noise.

    Returns:
        ``(idx, images)``: ``idx`` int64 [K], the flat box indices of the brain (``brain >= 0.5``;
        the image is 0 elsewhere), and modality -> float32 [K] signal (>= 0) there.
    """
    gm, wm, csf, brain = tissues
    box = brain.shape
    inside = brain >= 0.5
    idx = np.flatnonzero(inside)  # [K], flat box indices
    # Blur and correlated noise only need the brain's bounding box (the rest is 0).
    crop = _bbox(inside)
    local = np.flatnonzero(inside[crop])  # [K], flat indices in the crop, same order as idx
    crop_shape = inside[crop].shape

    texture, ttex, bias = _random_fields(params, acq, resolution, tumour, box, idx, rng)
    g, w, c, b = (_at(a, idx) for a in (gm, wm, csf, brain))
    ncr, et, ed = (_at_sub(a, 0.0, tumour, box, idx) for a in (tumour.ncr, tumour.et, tumour.ed))
    keep = (
        b - ncr - et - ed + np.float32(params.edema_tissue_mix) * ed
    ) / b  # share of normal tissue signal
    ed_lesion = ed * np.float32(1.0 - params.edema_tissue_mix)
    core = "ncr" if grade == "HGG" else "net"
    images = {}
    for m in MODALITIES:
        it = {k: np.float32(v) for k, v in subject.intensity[m].items()}
        tissue = (g * it["gm"] + w * it["wm"] + c * it["csf"]) * texture
        lesion = (ncr * it[core] + et * it["et"] + ed_lesion * it["ed"]) * ttex
        img = (tissue * keep + lesion) * np.exp(np.float32(subject.bias_sigma[m]) * bias)
        sigmas = _blur_sigmas(acq, m, resolution)
        img = _blur(img, local, crop_shape, sigmas)
        sigma = it["wm"] / np.float32(subject.snr[m])
        # Rician magnitude of a complex signal. At SNR >= 10 the magnitude is ~ S + sigma n1, so
        # only the in-phase channel carries the acquisition's correlation (half the filtering).
        n1 = _noise(rng, local, crop_shape, sigmas)
        n2 = rng.standard_normal(idx.size, dtype=np.float32)
        images[m] = np.sqrt((img + sigma * n1) ** 2 + (sigma * n2) ** 2)
    return idx, images


def _at(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The values of a box array at the brain's flat indices ``idx`` [K]."""
    return np.take(a.ravel(), idx)


def _at_sub(
    a: np.ndarray, fill: float, tumour: TumourMaps, box: tuple[int, ...], idx: np.ndarray
) -> np.ndarray:
    """The values of a tumour sub-box array at the brain's flat indices (``fill`` outside it)."""
    full = np.full(box, fill, dtype=np.float32)
    full[tumour.where] = a
    return _at(full, idx)


def _random_fields(
    params: ContrastParams,
    acq: AcquisitionParams,
    resolution: int,
    tumour: TumourMaps,
    box: tuple[int, ...],
    idx: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The smooth random fields at the brain voxels [K], drawn in this order: tissue texture,
    tumour texture (1 outside the tumour's sub-box) and the bias field's log-shape."""
    texture = 1.0 + np.float32(params.texture) * _at(
        smooth_field(box, params.texture_corr_mm / resolution, rng), idx
    )
    tumour_tex = 1.0 + np.float32(params.tumour_texture) * smooth_field(
        tumour.ncr.shape, params.tumour_texture_corr_mm / resolution, rng
    )
    bias = _at(smooth_field(box, acq.bias_corr_mm / resolution, rng), idx)
    return texture, _at_sub(tumour_tex, 1.0, tumour, box, idx), bias


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the bounding box of a non-empty boolean array."""
    out = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        out.append(slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(0, 0))
    return tuple(out)


def _blur_sigmas(acq: AcquisitionParams, modality: str, resolution: int) -> list[float]:
    """Per-axis Gaussian sigmas (voxels): slice thickness along the slice axis, in-plane blur."""
    sigmas = [acq.inplane_blur_mm / resolution] * 3
    sigmas[acq.slice_axis] = (
        acq.slice_thickness_mm[modality] / 2.355 / resolution
    )  # FWHM = thickness
    return [s if s > 0.25 else 0.0 for s in sigmas]  # below a quarter voxel a blur is invisible


def _blur_box(img: np.ndarray, sigmas: list[float], mode: str = "constant") -> np.ndarray:
    for ax, s in enumerate(sigmas):
        if s > 0:
            img = ndi.gaussian_filter1d(img, s, axis=ax, mode=mode, output=np.float32)
    return img


def _blur(
    values: np.ndarray, idx: np.ndarray, box: tuple[int, ...], sigmas: list[float]
) -> np.ndarray:
    """Blur the brain's signal [K] at flat indices ``idx`` of an array of shape ``box``.

    The zero background around the brain is blurred in, as in an acquisition before skull-stripping.
    """
    if not any(sigmas):
        return values
    img = np.zeros(box, dtype=np.float32)
    img.reshape(-1)[idx] = values
    return np.take(_blur_box(img, sigmas).ravel(), idx)


def _noise(
    rng: np.random.Generator, idx: np.ndarray, box: tuple[int, ...], sigmas: list[float]
) -> np.ndarray:
    """Unit-variance Gaussian noise at the brain voxels [K], correlated like the signal's blur.

    Thick slices resampled to the 1 mm grid (and coarse in-plane resolution) correlate the noise
    along the same axes as the signal; the variance is restored so the SNR keeps its meaning.
    """
    if not any(sigmas):
        return rng.standard_normal(idx.size, dtype=np.float32)
    noise = _blur_box(rng.standard_normal(box, dtype=np.float32), sigmas, mode="reflect")
    gain = 1.0
    for s in sigmas:
        if s > 0:
            x = np.arange(-int(4.0 * s + 0.5), int(4.0 * s + 0.5) + 1)
            w = np.exp(-0.5 * (x / s) ** 2)
            gain *= float(np.sum((w / w.sum()) ** 2))
    return np.take(noise.ravel(), idx) / np.float32(np.sqrt(gain))
