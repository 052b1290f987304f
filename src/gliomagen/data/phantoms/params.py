"""Every parameter of the phantom cohort, documented in one place.

The phantom generator draws each case from distributions whose parameters live here and nowhere
else: anatomy (template placement and per-subject variation), tumours (per grade), tissue
contrast (per modality and tissue class) and acquisition (per cohort: SNR, bias field, blur,
contrast balance). Because the true distributions are known, a trained generator can be checked
against them.

Intensities are on the int16 scale of a BraTS case from TCGA (BraTS2021_07294: T1 median ~350,
T2 99th percentile ~1900, FLAIR median ~330); a per-subject, per-modality global scale then
spreads cases over ranges as wide as real BraTS sites do.

Ranges written ``(lo, hi)`` are drawn uniformly; ``median``/``sigma`` pairs are log-normal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TISSUES: tuple[str, ...] = ("gm", "wm", "csf", "ncr", "et", "ed", "net")
"""Tissue classes with an intensity per modality: grey matter, white matter, cerebrospinal fluid,
necrosis (HGG core, label 1), enhancing tumour (label 3), edema (label 2) and the non-enhancing
core of a low-grade glioma (LGG core, label 1)."""


@dataclass(frozen=True)
class AnatomyParams:
    """Placement of the MNI ICBM152 2009 template in the BraTS grid and per-subject variation.

    Attributes:
        template_to_brats_scale: per-axis (x, y, z) size ratio of an SRI24/BraTS brain to the
            ICBM152 2009 template brain (template brain extent 145x181x152 mm; two BraTS cases
            measure 129-140 x 162-190 x 131-137 mm).
        brain_centre_voxel: voxel (i, j, k) of the 1 mm BraTS grid (LPS array order) where the
            centre of the brain's bounding box lands (measured on two BraTS cases).
        scale_sigma: standard deviation of the global (isotropic) per-subject scale around 1.
        rotation_deg_sigma: standard deviation of each of the three head rotation angles.
        translation_mm_sigma: standard deviation of the head translation along each axis.
        deformation_mm: standard deviation of the smooth random displacement (each component).
        deformation_corr_mm: correlation length of that displacement.
        box_margin_mm: margin around the brain's reach inside which voxels are computed at all.
    """

    template_to_brats_scale: tuple[float, float, float] = (0.92, 0.95, 0.90)
    brain_centre_voxel: tuple[float, float, float] = (118.5, 124.0, 77.0)
    scale_sigma: float = 0.04
    rotation_deg_sigma: float = 3.0
    translation_mm_sigma: float = 2.0
    deformation_mm: float = 2.5
    deformation_corr_mm: float = 30.0
    box_margin_mm: float = 14.0


@dataclass(frozen=True)
class TumourParams:
    """Shape, size and mass effect of the tumour of one grade.

    Sizes are radii of equivalent spheres. The core is label 1 (+ label 3 for HGG); the edema
    (label 2) reaches ``edema_ratio`` core radii, mostly along white matter.

    Attributes:
        core_radius_median_mm: median radius of the tumour core (log-normal).
        core_radius_sigma: log-normal sigma of that radius.
        core_radius_range_mm: clip range of the core radius.
        necrosis_fraction: range of the necrotic radius as a fraction of the core radius (HGG:
            the rest of the core is the enhancing rim; 0 for LGG, whose whole core is label 1).
        edema_ratio: range of the edema radius over the core radius (1 = no edema).
        axis_ratio: range of each ellipsoid semi-axis relative to the radius (before renormalising
            to the drawn volume).
        irregularity: amplitude of the smooth noise that perturbs the core boundary (relative).
        irregularity_corr_mm: correlation length of that noise.
        edema_irregularity: amplitude of the noise that perturbs the edema boundary.
        edema_in_gm: how far edema spreads into grey matter relative to white matter (0..1).
        edema_wm_smoothing_mm: Gaussian sigma of the white-matter map that steers the edema (a
            smoother map gives contiguous, finger-like edema rather than speckles).
        mass_effect: range of the pull-back factor at the tumour centre (0 = no mass effect; the
            template point sampled at distance d from the centre is d * (1 - a exp(-d^2 / L^2))).
        mass_effect_reach: L as a multiple of the outer (edema) radius.
        boundary_mm: width of the partial-volume ramp at region boundaries.
        min_rim_mm: minimum thickness of the enhancing rim (HGG), so label 3 is always resolved.
    """

    core_radius_median_mm: float
    core_radius_sigma: float
    core_radius_range_mm: tuple[float, float]
    necrosis_fraction: tuple[float, float]
    edema_ratio: tuple[float, float]
    axis_ratio: tuple[float, float] = (0.75, 1.3)
    irregularity: float = 0.2
    irregularity_corr_mm: float = 9.0
    edema_irregularity: float = 0.3
    edema_in_gm: float = 0.25
    edema_wm_smoothing_mm: float = 2.5
    mass_effect: tuple[float, float] = (0.25, 0.5)
    mass_effect_reach: float = 1.1
    boundary_mm: float = 1.5
    min_rim_mm: float = 4.0


@dataclass(frozen=True)
class ContrastParams:
    """Reference tissue intensities (3 T-like, int16 scale) of each modality and their texture.

    ``t1c`` is not listed: it is ``t1n`` times ``1 + enhancement`` per tissue (gadolinium
    shortens T1 where the blood-brain barrier is broken, i.e. the enhancing rim).

    Attributes:
        t1n: T1 intensities per tissue (WM > GM > CSF; necrosis dark, edema hypointense).
        t2w: T2 intensities per tissue (CSF > GM > WM; necrosis, LGG core and edema bright).
        t2f: FLAIR intensities per tissue (CSF suppressed; edema and tumour bright).
        enhancement: relative T1 increase after gadolinium per tissue.
        class_jitter_sigma: log-normal sigma of each tissue intensity per subject and modality.
        global_scale_sigma: log-normal sigma of each modality's global scale per subject.
        edema_tissue_mix: share of the underlying tissue signal that remains in edema.
        texture: amplitude of the smooth multiplicative texture of normal tissue.
        texture_corr_mm: correlation length of that texture.
        tumour_texture: amplitude of the texture inside the tumour (heterogeneity).
        tumour_texture_corr_mm: correlation length of the tumour texture.
    """

    t1n: Mapping[str, float] = field(
        default_factory=lambda: {
            "gm": 310.0,
            "wm": 500.0,
            "csf": 110.0,
            "ncr": 170.0,
            "et": 340.0,
            "ed": 300.0,
            "net": 230.0,
        }
    )
    t2w: Mapping[str, float] = field(
        default_factory=lambda: {
            "gm": 580.0,
            "wm": 420.0,
            "csf": 2000.0,
            "ncr": 1400.0,
            "et": 850.0,
            "ed": 1250.0,
            "net": 1050.0,
        }
    )
    t2f: Mapping[str, float] = field(
        default_factory=lambda: {
            "gm": 370.0,
            "wm": 300.0,
            "csf": 70.0,
            "ncr": 430.0,
            "et": 560.0,
            "ed": 700.0,
            "net": 560.0,
        }
    )
    enhancement: Mapping[str, float] = field(
        default_factory=lambda: {
            "gm": 0.02,
            "wm": 0.0,
            "csf": 0.05,
            "ncr": 0.0,
            "et": 1.0,
            "ed": 0.0,
            "net": 0.03,
        }
    )
    class_jitter_sigma: float = 0.05
    global_scale_sigma: float = 0.25
    edema_tissue_mix: float = 0.25
    texture: float = 0.04
    texture_corr_mm: float = 6.0
    tumour_texture: float = 0.10
    tumour_texture_corr_mm: float = 4.0


@dataclass(frozen=True)
class AcquisitionParams:
    """How one cohort's scanners acquire the images (the cohort shift lives here).

    Attributes:
        field_strength_t: nominal field strength (documentation only).
        snr: range of the per-subject SNR: white-matter signal over the standard deviation of
            the Gaussian noise of each channel before the magnitude (Rician noise), per output
            voxel (the same at 1 and 2 mm). The in-phase channel is correlated like the signal's
            blur (thick slices resampled to the grid), then rescaled to that standard deviation.
        bias_sigma: log-amplitude (standard deviation) of the smooth multiplicative bias field.
        bias_corr_mm: correlation length of the bias field.
        slice_thickness_mm: per-modality slice thickness along the slice axis (0 = isotropic);
            simulated as a Gaussian blur of that FWHM along the slice axis.
        slice_axis: array axis of the slice direction (2 = axial in the BraTS grid).
        inplane_blur_mm: Gaussian sigma of the in-plane blur (coarser in-plane resolution).
        contrast_gain: per-modality gain of each tissue's contrast against white matter
            (1 = the reference contrast; ``t1c`` scales the enhancement).
    """

    field_strength_t: float
    snr: tuple[float, float]
    bias_sigma: float
    bias_corr_mm: float = 70.0
    slice_thickness_mm: Mapping[str, float] = field(
        default_factory=lambda: {"t1n": 3.0, "t1c": 0.0, "t2w": 3.0, "t2f": 4.0}
    )
    slice_axis: int = 2
    inplane_blur_mm: float = 0.0
    contrast_gain: Mapping[str, float] = field(
        default_factory=lambda: {"t1n": 1.0, "t1c": 1.0, "t2w": 1.0, "t2f": 1.0}
    )


@dataclass(frozen=True)
class CohortParams:
    """Who is in a cohort and how it is scanned.

    Attributes:
        name: cohort code used in case ids (``BraTS-<name>-00000-000``).
        p_hgg: probability that a case is a high-grade glioma.
        age_mean: mean age by grade.
        age_sd: age standard deviation by grade.
        age_range: clip range of the age in years.
        p_male: probability that a case is male.
        acquisition: the cohort's scanners.
    """

    name: str
    p_hgg: float
    age_mean: Mapping[str, float]
    age_sd: Mapping[str, float]
    p_male: float
    acquisition: AcquisitionParams
    age_range: tuple[float, float] = (18.0, 88.0)


def _gli() -> CohortParams:
    return CohortParams(
        name="GLI",
        p_hgg=0.7,
        age_mean={"HGG": 61.0, "LGG": 43.0},
        age_sd={"HGG": 12.0, "LGG": 13.0},
        p_male=0.58,
        acquisition=AcquisitionParams(field_strength_t=3.0, snr=(32.0, 48.0), bias_sigma=0.05),
    )


def _ssa() -> CohortParams:
    """Sub-Saharan Africa: 1.5 T, thick 2D slices, lower SNR, stronger bias, other contrast."""
    return CohortParams(
        name="SSA",
        p_hgg=0.6,
        age_mean={"HGG": 50.0, "LGG": 38.0},
        age_sd={"HGG": 14.0, "LGG": 12.0},
        p_male=0.55,
        acquisition=AcquisitionParams(
            field_strength_t=1.5,
            snr=(14.0, 20.0),
            bias_sigma=0.12,
            bias_corr_mm=60.0,
            slice_thickness_mm={"t1n": 5.0, "t1c": 4.0, "t2w": 5.0, "t2f": 5.0},
            inplane_blur_mm=0.8,
            contrast_gain={"t1n": 1.15, "t1c": 0.8, "t2w": 0.9, "t2f": 0.85},
        ),
    )


def _hgg() -> TumourParams:
    return TumourParams(
        core_radius_median_mm=16.0,
        core_radius_sigma=0.25,
        core_radius_range_mm=(8.0, 28.0),
        necrosis_fraction=(0.55, 0.85),
        edema_ratio=(1.4, 2.0),
        irregularity=0.22,
        mass_effect=(0.3, 0.55),
    )


def _lgg() -> TumourParams:
    return TumourParams(
        core_radius_median_mm=20.0,
        core_radius_sigma=0.3,
        core_radius_range_mm=(8.0, 30.0),
        necrosis_fraction=(0.0, 0.0),
        edema_ratio=(1.05, 1.2),
        irregularity=0.15,
        axis_ratio=(0.65, 1.45),
        edema_irregularity=0.1,
        mass_effect=(0.15, 0.35),
    )


@dataclass(frozen=True)
class PhantomParams:
    """All parameters of the phantom cohort.

    Attributes:
        anatomy: template placement and per-subject anatomical variation.
        contrast: reference tissue intensities and texture.
        tumours: tumour parameters by grade (``HGG``, ``LGG``).
        cohorts: cohorts by name (``GLI``, ``SSA``).
    """

    anatomy: AnatomyParams = field(default_factory=AnatomyParams)
    contrast: ContrastParams = field(default_factory=ContrastParams)
    tumours: Mapping[str, TumourParams] = field(
        default_factory=lambda: {"HGG": _hgg(), "LGG": _lgg()}
    )
    cohorts: Mapping[str, CohortParams] = field(
        default_factory=lambda: {"GLI": _gli(), "SSA": _ssa()}
    )


DEFAULT_COHORTS: tuple[tuple[str, int], ...] = (("GLI", 200), ("SSA", 24))
"""Default cohort sizes: a large source cohort and a scarce, shifted one (like BraTS-Africa)."""
