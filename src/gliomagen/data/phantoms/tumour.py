"""Tumours: grade-dependent, irregular shapes with mass effect, mostly in white matter.

A tumour is an ellipsoid whose boundary is perturbed by smooth noise. High-grade gliomas (HGG)
have a necrotic centre (label 1) inside an enhancing rim of irregular thickness (label 3) and a
wide edema (label 2) that spreads along white matter; low-grade gliomas (LGG) have a
non-enhancing core (label 1), little edema and no label 3.

The tumour pushes tissue away (mass effect): an output point at distance ``d`` from the centre
samples the anatomy at distance ``d (1 - a exp(-d^2 / L^2))``, a monotone (fold-free) radial map
for ``a < 1`` that squeezes the surrounding tissue and vanishes far away.

Region membership is soft (a ramp of ``boundary_mm`` across each boundary) so the images have
partial-volume edges; the label map is the arg-max of the soft memberships.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from gliomagen.data.phantoms.anatomy import SubjectGeometry, Template, template_to_output
from gliomagen.data.phantoms.fields import smooth_field
from gliomagen.data.phantoms.params import AnatomyParams, TumourParams

World = tuple[np.ndarray, np.ndarray, np.ndarray]
"""World coordinates (mm) of box voxels: three float32 arrays broadcastable to the box."""


@dataclass(frozen=True)
class TumourSpec:
    """One drawn tumour (everything in output world mm).

    Attributes:
        grade: ``HGG`` or ``LGG``.
        centre: [3] centre.
        radius_mm: radius of the core's equivalent sphere.
        shape: [3, 3] offset -> unit-ball coordinates of the core ellipsoid (rotation + axes).
        necrosis_fraction: necrotic radius over core radius (0 for LGG).
        edema_ratio: edema radius over core radius.
        mass_effect: pull-back factor ``a`` at the centre.
        reach_mm: length scale ``L`` of the mass effect.
    """

    grade: str
    centre: np.ndarray
    radius_mm: float
    shape: np.ndarray
    necrosis_fraction: float
    edema_ratio: float
    mass_effect: float
    reach_mm: float


@dataclass(frozen=True)
class TumourMaps:
    """Soft tumour memberships in a sub-box of the working box (zero outside it).

    Each map is float32 [*sub] and ``ncr + ed + et <= brain``.

    Attributes:
        where: slices of the sub-box inside the working box.
        ncr: necrosis (HGG) or non-enhancing core (LGG), label 1.
        ed: edema, label 2.
        et: enhancing tumour, label 3 (zeros for LGG).
    """

    where: tuple[slice, slice, slice]
    ncr: np.ndarray
    ed: np.ndarray
    et: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """Tumour fraction of each sub-box voxel, float32 [*sub]."""
        return self.ncr + self.ed + self.et


def sample_tumour(
    rng: np.random.Generator,
    grade: str,
    template: Template,
    geo: SubjectGeometry,
    anatomy: AnatomyParams,
    params: TumourParams,
) -> TumourSpec:
    """Draw a tumour of ``grade``: size, shape, sub-regions, a white-matter centre, mass effect."""
    lo, hi = params.core_radius_range_mm
    radius = float(
        np.clip(
            params.core_radius_median_mm * np.exp(params.core_radius_sigma * rng.standard_normal()),
            lo,
            hi,
        )
    )
    ratios = rng.uniform(*params.axis_ratio, size=3)
    ratios /= np.prod(ratios) ** (1.0 / 3.0)  # same volume as the sphere of ``radius``
    rot = Rotation.from_quat(rng.standard_normal(4)).as_matrix()
    shape = np.diag(1.0 / ratios) @ rot.T
    nec = float(rng.uniform(*params.necrosis_fraction))
    if grade == "HGG":
        nec = min(nec, 1.0 - params.min_rim_mm / radius)
    edema_ratio = float(rng.uniform(*params.edema_ratio))
    a = float(rng.uniform(*params.mass_effect))
    # Centre: a deep white-matter seed of the template, deep enough for most of the core.
    need = min(0.8 * radius + 4.0, float(template.seeds_depth_mm.max()))
    candidates = np.flatnonzero(template.seeds_depth_mm >= need)
    seed = template.seeds_world[candidates[rng.integers(len(candidates))]] + rng.uniform(
        -1.0, 1.0, size=3
    )
    centre = template_to_output(seed[None], template, geo, anatomy)[0]
    reach = params.mass_effect_reach * radius * edema_ratio
    return TumourSpec(grade, centre, radius, shape, nec, edema_ratio, a, reach)


def mass_effect(spec: TumourSpec, world: World) -> World:
    """Output world positions -> the positions their tissue came from (radial pull-back)."""
    dx, dy, dz = (w - np.float32(c) for w, c in zip(world, spec.centre, strict=True))
    d2 = dx * dx + dy * dy + dz * dz  # [*box]
    factor = 1.0 - np.float32(spec.mass_effect) * np.exp(-d2 / np.float32(spec.reach_mm**2))
    return (
        spec.centre[0] + dx * factor,
        spec.centre[1] + dy * factor,
        spec.centre[2] + dz * factor,
    )


def _ramp(signed_mm: np.ndarray, width_mm: float) -> np.ndarray:
    """0 outside, 1 inside, linear across a boundary of ``width_mm`` (signed distance, + inside)."""
    return np.clip(0.5 + signed_mm / np.float32(width_mm), 0.0, 1.0)


def tumour_maps(
    spec: TumourSpec,
    params: TumourParams,
    world: World,
    resolution: int,
    gm: np.ndarray,
    wm: np.ndarray,
    brain: np.ndarray,
    rng: np.random.Generator,
) -> TumourMaps:
    """Soft memberships of the tumour's sub-regions in the box.

    Only a sub-box around the tumour is computed; the rest stays zero.

    Args:
        spec: the tumour.
        params: its grade's parameters.
        world: box world coordinates (mm).
        resolution: voxel size (mm).
        gm: warped grey matter [*box]; wm: white matter [*box]; brain: brain [*box].
        rng: random generator for the boundary noise.
    """
    sub = _sub_box(spec, params, world)
    sx, sy, sz = world[0][sub[0]], world[1][:, sub[1]], world[2][:, :, sub[2]]
    shape = (sub[0].stop - sub[0].start, sub[1].stop - sub[1].start, sub[2].stop - sub[2].start)
    d = (
        sx - np.float32(spec.centre[0]),
        sy - np.float32(spec.centre[1]),
        sz - np.float32(spec.centre[2]),
    )
    m = spec.shape.astype(np.float32)
    e2 = np.zeros(shape, dtype=np.float32)  # squared ellipsoid radius, [*sub]
    for k in range(3):
        ek = m[k, 0] * d[0] + m[k, 1] * d[1] + m[k, 2] * d[2]
        e2 += ek * ek
    rho = np.sqrt(e2) / np.float32(spec.radius_mm)  # 1 on the unperturbed core boundary
    n_core, n_nec, n_ed = smooth_field(shape, params.irregularity_corr_mm / resolution, rng, n=3)
    # Additive boundary noise (in radii): the boundary moves, far voxels never join the tumour.
    r_core = rho + np.float32(params.irregularity) * n_core
    r_ed = rho / np.float32(spec.edema_ratio) + np.float32(params.edema_irregularity) * n_ed
    rc = spec.radius_mm
    in_core = _ramp((1.0 - r_core) * rc, params.boundary_mm)
    in_ed = _ramp((1.0 - r_ed) * rc * spec.edema_ratio, params.boundary_mm)
    # Edema follows white matter (and some grey matter); right around the core it is everywhere.
    wm_smooth = ndi.gaussian_filter(
        wm[sub], params.edema_wm_smoothing_mm / resolution, mode="nearest"
    )
    spread = np.clip((wm_smooth + params.edema_in_gm * gm[sub]) / 0.45, 0.0, 1.0)
    near = _ramp((1.3 - r_core) * rc, params.boundary_mm)
    b = brain[sub]
    ed = (1.0 - in_core) * in_ed * np.maximum(spread, near) * b
    if spec.grade == "HGG":
        r_nec = rho + np.float32(0.8 * params.irregularity * spec.necrosis_fraction) * n_nec
        in_nec = _ramp((spec.necrosis_fraction - r_nec) * rc, params.boundary_mm)
        ncr = in_core * in_nec * b
        et = in_core * (1.0 - in_nec) * b
    else:
        ncr = in_core * b
        et = np.zeros(shape, dtype=np.float32)
    return TumourMaps(sub, ncr, ed, et)


def _sub_box(spec: TumourSpec, params: TumourParams, world: World) -> tuple[slice, slice, slice]:
    """The sub-box of the working box the tumour (core, edema and boundary ramps) can reach."""
    # Reach of the tumour: its longest semi-axis times the largest radius the boundary noise
    # (3 standard deviations) can push either the core or the edema to.
    semi_axis = 1.0 / float(np.linalg.svd(spec.shape, compute_uv=False).min())
    reach = max(
        spec.edema_ratio * (1.0 + 3.0 * params.edema_irregularity), 1.0 + 3.0 * params.irregularity
    )
    outer = spec.radius_mm * semi_axis * reach + 3 * params.boundary_mm
    where = []
    for ax in range(3):
        coords = world[ax].ravel()  # [box[ax]]
        inside = np.flatnonzero(np.abs(coords - spec.centre[ax]) <= outer)
        if inside.size == 0:  # cannot happen for a centre inside the box; keep one voxel
            inside = np.array([int(np.argmin(np.abs(coords - spec.centre[ax])))])
        where.append(slice(int(inside[0]), int(inside[-1]) + 1))
    return (where[0], where[1], where[2])


def label_map(maps: TumourMaps, brain: np.ndarray) -> np.ndarray:
    """BraTS labels from soft memberships: arg-max of (normal, ncr, ed, et) inside the brain.

    Args:
        maps: the tumour memberships.
        brain: warped brain [*box].

    Returns:
        uint8 [*box] with values {0, 1, 2, 3}.
    """
    labels = np.zeros(brain.shape, dtype=np.uint8)
    b = brain[maps.where]
    stack = np.stack([b - maps.total, maps.ncr, maps.ed, maps.et])  # [4, *sub]
    sub = np.argmax(stack, axis=0).astype(np.uint8)
    sub[b < 0.5] = 0
    labels[maps.where] = sub
    return labels
