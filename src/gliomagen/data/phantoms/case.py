"""One phantom case: clinical draws -> anatomy -> tumour -> images; and writing it as BraTS files.

A case is fully determined by ``(seed, cohort, index)``: its random generator is seeded from
those three numbers, so a cohort is the same whichever worker draws which case.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from gliomagen import MODALITIES
from gliomagen.data.phantoms.anatomy import load_template, sample_geometry, warp_tissues
from gliomagen.data.phantoms.contrast import sample_contrast, synthesise
from gliomagen.data.phantoms.params import CohortParams, PhantomParams
from gliomagen.data.phantoms.tumour import label_map, mass_effect, sample_tumour, tumour_maps
from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import atomic_dir


def case_id(cohort: str, index: int) -> str:
    """BraTS 2023 case id, e.g. ``BraTS-GLI-00007-000``."""
    return f"BraTS-{cohort}-{index:05d}-000"


STAGES: tuple[str, ...] = ("clinical", "anatomy", "tumour", "contrast", "acquisition")
"""Stages of a case, each with its own random stream (changing one stage leaves the others)."""


def case_rngs(seed: int, cohort: str, index: int) -> dict[str, np.random.Generator]:
    """The random generators of one case, independent of the order cases are drawn in."""
    root = np.random.SeedSequence([seed, zlib.crc32(cohort.encode()), index])
    return {
        name: np.random.default_rng(s)
        for name, s in zip(STAGES, root.spawn(len(STAGES)), strict=True)
    }


@dataclass(frozen=True)
class PhantomCase:
    """A generated case in the BraTS grid.

    Attributes:
        case_id: ``BraTS-<cohort>-<index>-000``.
        cohort: cohort name.
        grade: ``HGG`` or ``LGG``.
        age: age in years.
        sex: ``M`` or ``F``.
        images: modality -> int16 [X, Y, Z] image (LPS array order, like BraTS files).
        seg: uint8 [X, Y, Z] labels {0, 1 NCR/NET, 2 ED, 3 ET}.
        affine: voxel -> RAS+ world (mm), BraTS-like.
    """

    case_id: str
    cohort: str
    grade: str
    age: int
    sex: str
    images: dict[str, np.ndarray]
    seg: np.ndarray
    affine: np.ndarray

    def clinical(self) -> dict[str, object]:
        """The case's row of ``clinical.csv``."""
        return {
            "case_id": self.case_id,
            "cohort": self.cohort,
            "grade": self.grade,
            "age": self.age,
            "sex": self.sex,
        }


def make_case(
    cohort: str,
    index: int,
    *,
    seed: int = 0,
    resolution: int = 2,
    params: PhantomParams | None = None,
) -> PhantomCase:
    """Generate one phantom case in memory.

    Args:
        cohort: cohort name (a key of ``params.cohorts``: ``GLI`` or ``SSA``).
        index: case number within the cohort (0..99999).
        seed: cohort seed (>= 0).
        resolution: voxel size in mm: 1 (240x240x155) or 2 (120x120x78).
        params: phantom parameters (default :class:`PhantomParams`).

    Returns:
        The case.

    Example:
        >>> case = make_case("SSA", 3, seed=0, resolution=2)
        >>> case.images["t1c"].shape, case.seg.dtype
        ((120, 120, 78), dtype('uint8'))
    """
    params = params or PhantomParams()
    _check_case(cohort, index, seed, params)
    cp = params.cohorts[cohort]
    rng = case_rngs(seed, cohort, index)
    grade, age, sex = _clinical(rng["clinical"], cp)

    template = load_template(resolution, params.anatomy)
    grid = template.grid
    geo = sample_geometry(rng["anatomy"], template, params.anatomy)
    tparams = params.tumours[grade]
    spec = sample_tumour(rng["tumour"], grade, template, geo, params.anatomy, tparams)
    world = grid.box_world()  # x [X,1,1], y [1,Y,1], z [1,1,Z]
    gm, wm, csf, brain = warp_tissues(template, geo, params.anatomy, mass_effect(spec, world))
    maps = tumour_maps(spec, tparams, world, resolution, gm, wm, brain, rng["tumour"])
    labels = label_map(maps, brain)  # [*box]
    subject = sample_contrast(rng["contrast"], params.contrast, cp.acquisition)
    idx, values = synthesise(
        subject,
        params.contrast,
        cp.acquisition,
        resolution,
        (gm, wm, csf, brain),
        maps,
        grade,
        rng["acquisition"],
    )
    # >= 1 inside the brain: every modality's non-zero mask is the brain mask, as in BraTS files.
    images = {
        m: grid.scatter(idx, np.clip(np.rint(values[m]), 1, 32767), np.int16) for m in MODALITIES
    }
    seg = grid.pad(labels, np.uint8)
    return PhantomCase(
        case_id(cohort, index), cohort, grade, age, sex, images, seg, grid.affine.copy()
    )


def _check_case(cohort: str, index: int, seed: int, params: PhantomParams) -> None:
    """Refuse an unknown cohort, an index outside 0..99999 or a negative seed."""
    if cohort not in params.cohorts:
        raise GliomagenError(
            f"phantoms: unknown cohort {cohort!r}; known cohorts: {', '.join(params.cohorts)}"
        )
    if not 0 <= index <= 99999:
        raise GliomagenError(f"phantoms: case index {index} is outside 0..99999")
    if seed < 0:
        raise GliomagenError(f"phantoms: --seed {seed} must be >= 0")


def _clinical(rng: np.random.Generator, cp: CohortParams) -> tuple[str, int, str]:
    """Draw ``(grade, age, sex)`` from the case's clinical stream, in that order."""
    grade = "HGG" if rng.random() < cp.p_hgg else "LGG"
    age = int(
        round(float(np.clip(rng.normal(cp.age_mean[grade], cp.age_sd[grade]), *cp.age_range)))
    )
    sex = "M" if rng.random() < cp.p_male else "F"
    return grade, age, sex


def _nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def write_case(case: PhantomCase, out: Path) -> Path:
    """Write a case as a BraTS 2023 folder under ``out``, atomically.

    The five files are written into a hidden temporary folder beside the final one, which is then
    renamed into place; a previous folder of the same case is replaced only after that.

    Returns:
        The case folder ``out/<case_id>``.
    """
    final = out / case.case_id
    with atomic_dir(final, replace=True) as tmp:
        for m in MODALITIES:
            _nifti(case.images[m], case.affine).to_filename(str(tmp / f"{case.case_id}-{m}.nii.gz"))
        _nifti(case.seg, case.affine).to_filename(str(tmp / f"{case.case_id}-seg.nii.gz"))
    return final
