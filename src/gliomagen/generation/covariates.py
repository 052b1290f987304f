"""The covariates ``prepare`` measures on a real case's mask, measured on each generated case.

``gliomagen prepare`` derives ``wt_volume_ml``, ``enhancing_fraction`` and ``hemisphere`` from
every real mask (:func:`gliomagen.data.conditions.derive_covariates`, the brain's mid-sagittal
plane through the centre of its bounding box). A synthetic cohort's ``clinical.csv`` gets the same
columns, computed by the same function on the mask as written (its grid and affine), with the
midline through the centre of the written brain's bounding box, as ``prepare`` would find it in
the files. A covariate the model is conditioned on keeps its column for the *requested* value;
the measured one then goes to ``<name>_measured``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gliomagen.data.conditions import COVARIATES, derive_covariates


def covariate_columns(condition_names: Sequence[str]) -> dict[str, str]:
    """``{covariate: clinical.csv column}``: its own name, or ``<name>_measured`` for a condition."""
    taken = set(condition_names)
    return {c: f"{c}_measured" if c in taken else c for c in COVARIATES}


def brain_midline_x(brain: np.ndarray, affine: np.ndarray) -> float:
    """World x (mm) of the centre of the bounding box of ``brain [X, Y, Z]`` (``prepare``'s midline)."""
    ijk = np.nonzero(brain)
    if not ijk[0].size:
        return float(affine[0, 3])
    centre = np.array([(int(a.min()) + int(a.max())) / 2.0 for a in ijk] + [1.0])
    return float((np.asarray(affine, dtype=np.float64) @ centre)[0])


def mask_covariates(
    seg: np.ndarray, brain: np.ndarray, affine: np.ndarray, columns: dict[str, str]
) -> dict[str, Any]:
    """The covariates of one generated case as ``clinical.csv`` cells.

    Args:
        seg: ``[X, Y, Z]`` labels {0..3} as written.
        brain: ``[X, Y, Z]`` bool, the voxels written as brain (non-zero in the images).
        affine: the files' ``[4, 4]`` voxel -> world (RAS mm) matrix.
        columns: :func:`covariate_columns`.

    Returns:
        ``{column: value}``; numbers as :func:`derive_covariates` rounds them, ``None`` = empty.
    """
    values = derive_covariates(seg, np.asarray(affine, dtype=np.float64), brain_midline_x(brain | (seg > 0), affine))
    return {columns[k]: (None if v is None else str(v)) for k, v in values.items()}
