"""Anatomy: the MNI ICBM152 2009 template, placed in the BraTS grid and varied per subject.

The template is the one nilearn ships inside its package (``nilearn/datasets/data/
mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``, 197x233x189 at 1 mm); it is found
through the installed package, never downloaded. Its T1 map is brain-extracted, so ``t1 > 0`` is
the brain; CSF is brain minus grey and white matter.

Per subject, an output voxel at world position ``p`` samples the template at
``T(p) = M (m(p) + u(p) - c_out - t) + c_template``: ``m`` is the tumour's mass effect (see
:mod:`.tumour`), ``u`` a smooth random displacement, ``M`` the inverse of a global scale and a
small rotation, ``t`` a translation. The template is loaded, smoothed and subsampled to the output
resolution once per process.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from gliomagen.data.phantoms.fields import BRATS_AFFINE_1MM, Grid, make_grid, smooth_field
from gliomagen.data.phantoms.params import AnatomyParams
from gliomagen.errors import GliomagenError

TEMPLATE_NAME = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
"""File name pattern of the ICBM152 2009 maps in nilearn's package data ({} = t1, gm, wm)."""


def template_files() -> dict[str, Path]:
    """Paths of the template T1, GM and WM maps inside the installed nilearn package.

    Raises:
        GliomagenError: nilearn or one of its template files is missing.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise GliomagenError(
            "phantoms: the nilearn package (which ships the MNI ICBM152 template) is not installed"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    files = {k: data / TEMPLATE_NAME.format(k) for k in ("t1", "gm", "wm")}
    for path in files.values():
        if not path.is_file():
            raise GliomagenError(
                f"phantoms: template file {path} is missing; reinstall nilearn>=0.10"
            )
    return files


@dataclass(frozen=True)
class Template:
    """Tissue maps of the template at one resolution, ready for fast trilinear sampling.

    Attributes:
        maps: float32 [X+2, Y+2, Z+2, 3] grey matter, white matter and brain, in template RAS
            voxel order, with a one-voxel ring of zeros (so samples outside the template are 0).
        reach: bool [X+2, Y+2, Z+2], the brain dilated by one voxel (where a sample can be > 0).
        affine: template voxel (unpadded) -> MNI world (mm).
        centre_world: centre of the brain's bounding box, MNI world (mm) [3].
        half_extent_mm: half size of the brain's bounding box (mm) [3].
        seeds_world: [K, 3] candidate tumour centres (deep white matter above the tentorium).
        seeds_depth_mm: [K] distance of each candidate to the brain surface (mm).
        grid: the output grid at this resolution, its box sized to this template.
    """

    maps: np.ndarray
    reach: np.ndarray
    affine: np.ndarray
    centre_world: np.ndarray
    half_extent_mm: np.ndarray
    seeds_world: np.ndarray
    seeds_depth_mm: np.ndarray
    grid: Grid


def _load_uint8(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 probability map as float32 in [0, 1], and its affine."""
    img = nib.Nifti1Image.from_filename(str(path))
    return np.asarray(img.dataobj, dtype=np.float32) / 255.0, np.asarray(img.affine, np.float64)


def _block_mean(a: np.ndarray, r: int) -> np.ndarray:
    """Average r x r x r blocks (zero-padding the far edges to a multiple of r)."""
    pad = [(0, (-n) % r) for n in a.shape]
    a = np.pad(a, pad)
    x, y, z = (n // r for n in a.shape)
    return a.reshape(x, r, y, r, z, r).mean(axis=(1, 3, 5), dtype=np.float32)


@functools.lru_cache(maxsize=2)
def load_template(resolution: int, params: AnatomyParams | None = None) -> Template:
    """Load the template at ``resolution`` mm (cached per process; about a second the first time).

    At 2 mm the maps are averaged over 2x2x2 blocks once, so each case samples a small,
    anti-aliased array.
    """
    params = params or AnatomyParams()
    files = template_files()
    t1, affine = _load_uint8(files["t1"])
    gm, _ = _load_uint8(files["gm"])
    wm, _ = _load_uint8(files["wm"])
    mask = t1 > 0  # the converted T1 is brain-extracted
    brain = mask.astype(np.float32)
    gm = np.minimum(gm, brain)
    wm = np.minimum(wm, brain - gm)

    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0)
    centre_world = affine[:3, :3] @ ((lo + hi) / 2.0) + affine[:3, 3]
    half_extent = (hi - lo + 1) / 2.0 * np.abs(np.diag(affine)[:3])

    # Tumour seeds: deep white matter, supratentorial (MNI z > -10 mm), >= 6 mm from the surface
    # (on a 2 mm lattice: the distance transform at 1 mm takes seconds).
    depth = ndi.distance_transform_edt(mask[::2, ::2, ::2], sampling=2.0).astype(np.float32)
    world = np.argwhere(np.ones(depth.shape, bool)) * 2.0 @ affine[:3, :3].T + affine[:3, 3]
    ok = ((wm[::2, ::2, ::2] > 0.9) & (depth >= 6.0)).ravel() & (world[:, 2] > -10.0)
    seeds_world, seeds_depth = world[ok], depth.ravel()[ok]

    if resolution != 1:
        r = resolution
        gm, wm, brain = (_block_mean(a, r) for a in (gm, wm, brain))
        affine = affine @ np.array(
            [[r, 0, 0, (r - 1) / 2], [0, r, 0, (r - 1) / 2], [0, 0, r, (r - 1) / 2], [0, 0, 0, 1.0]]
        )
    maps = np.pad(np.stack([gm, wm, brain], axis=-1), [(1, 1)] * 3 + [(0, 0)])  # [X+2, Y+2, Z+2, 3]
    # Trilinear corners lie within one voxel (any direction) of the nearest voxel: a 3x3x3
    # dilation marks exactly the nearest voxels whose samples can be non-zero.
    reach = ndi.binary_dilation(maps[..., 2] > 0, structure=np.ones((3, 3, 3), bool))

    scale = np.asarray(params.template_to_brats_scale)
    extent = half_extent * scale * (1.0 + 3.0 * params.scale_sigma) + params.box_margin_mm
    grid = make_grid(resolution, params.brain_centre_voxel, extent)
    return Template(maps, reach, affine, centre_world, half_extent, seeds_world, seeds_depth, grid)


@dataclass(frozen=True)
class SubjectGeometry:
    """One subject's placement of the template.

    Attributes:
        matrix: [3, 3] output world offset (mm) -> template world offset (mm).
        translation_mm: [3] head translation in output world.
        displacement: [3, *box] smooth random displacement (mm) or None.
    """

    matrix: np.ndarray
    translation_mm: np.ndarray
    displacement: np.ndarray | None


def sample_geometry(
    rng: np.random.Generator, template: Template, params: AnatomyParams
) -> SubjectGeometry:
    """Draw a subject's global scale, rotation, translation and smooth displacement."""
    scale = np.asarray(params.template_to_brats_scale) * (
        1.0 + params.scale_sigma * rng.standard_normal()
    )
    angles = rng.normal(0.0, params.rotation_deg_sigma, size=3)
    rot = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    matrix = np.diag(1.0 / scale) @ rot.T  # output -> template: undo rotation, then undo scale
    translation = rng.normal(0.0, params.translation_mm_sigma, size=3)
    grid = template.grid
    disp = None
    if params.deformation_mm > 0:
        corr = params.deformation_corr_mm / grid.resolution
        disp = smooth_field(grid.box_shape, corr, rng, n=3) * np.float32(params.deformation_mm)
    return SubjectGeometry(matrix, translation, disp)


def output_centre_world(params: AnatomyParams) -> np.ndarray:
    """World position (mm) of the brain centre in the output grid."""
    v = np.asarray(params.brain_centre_voxel, dtype=np.float64)
    return BRATS_AFFINE_1MM[:3, :3] @ v + BRATS_AFFINE_1MM[:3, 3]


def template_to_output(
    points_world: np.ndarray, template: Template, geo: SubjectGeometry, params: AnatomyParams
) -> np.ndarray:
    """Map template world points [K, 3] to output world (inverse of the affine part of ``T``)."""
    c_out = output_centre_world(params)
    offsets = (points_world - template.centre_world) @ np.linalg.inv(geo.matrix).T
    return offsets + c_out + geo.translation_mm


def _trilinear(template: Template, coords: np.ndarray) -> np.ndarray:
    """Sample the padded template maps at template voxel ``coords`` [3, K]; returns [K, 3]."""
    padded = template.maps.shape[:3]
    flat = template.maps.reshape(-1, 3)
    base = np.zeros(coords.shape[1], dtype=np.int64)
    frac = []
    strides = (padded[1] * padded[2], padded[2], 1)
    for k in range(3):
        u = np.clip(coords[k] + np.float32(1.0), 0.0, np.float32(padded[k] - 1.001))  # padded space
        f = np.floor(u)
        base += f.astype(np.int64) * strides[k]
        frac.append(u - f)
    out = np.zeros((coords.shape[1], 3), dtype=np.float32)
    for cx in (0, 1):
        wx = frac[0] if cx else 1.0 - frac[0]
        for cy in (0, 1):
            wxy = wx * (frac[1] if cy else 1.0 - frac[1])
            for cz in (0, 1):
                w = wxy * (frac[2] if cz else 1.0 - frac[2])
                out += (
                    np.take(flat, base + (cx * strides[0] + cy * strides[1] + cz), axis=0)
                    * w[:, None]
                )
    return out


def warp_tissues(
    template: Template,
    geo: SubjectGeometry,
    params: AnatomyParams,
    pulled: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample the template's tissue maps at the subject's positions.

    Args:
        template: the template at the output resolution.
        geo: the subject's geometry.
        params: anatomy parameters.
        pulled: output world positions after the mass effect, three float32 arrays broadcastable
            to the box shape.

    Returns:
        ``(gm, wm, csf, brain)``, float32 [*box] in [0, 1]; ``gm + wm + csf == brain``.
    """
    box = template.grid.box_shape
    c_out = output_centre_world(params) + geo.translation_mm
    p = [
        np.broadcast_to(q - np.float32(c), box).ravel() for q, c in zip(pulled, c_out, strict=True)
    ]
    if geo.displacement is not None:
        p = [p[k] + geo.displacement[k].ravel() for k in range(3)]
    # template voxel = A^-1 (c_t + M (p - c_out)): fold A^-1 and M into one 3x3 matrix + offset.
    a_inv = np.linalg.inv(template.affine)
    m = (a_inv[:3, :3] @ geo.matrix).astype(np.float32)
    off = (a_inv[:3, :3] @ template.centre_world + a_inv[:3, 3]).astype(np.float32)
    coords = np.stack(
        [m[k, 0] * p[0] + m[k, 1] * p[1] + m[k, 2] * p[2] + off[k] for k in range(3)]
    )  # [3, N]
    # Only voxels whose nearest template voxel is near the brain are interpolated.
    padded = template.reach.shape
    near = np.zeros(coords.shape[1], dtype=np.int64)
    for k, stride in enumerate((padded[1] * padded[2], padded[2], 1)):
        near += np.clip(np.rint(coords[k]).astype(np.int64) + 1, 0, padded[k] - 1) * stride
    sel = np.flatnonzero(np.take(template.reach.ravel(), near))
    values = _trilinear(template, coords[:, sel])  # [K, 3]
    gm, wm, brain = (np.zeros(box, dtype=np.float32) for _ in range(3))
    for arr, col in ((gm, 0), (wm, 1), (brain, 2)):
        arr.reshape(-1)[sel] = values[:, col]
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    return gm, wm, csf, brain
