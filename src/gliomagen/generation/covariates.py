"""The covariates ``prepare`` measures on a real case's mask, measured on each generated case.

``gliomagen prepare`` derives ``wt_volume_ml``, ``enhancing_fraction`` and ``hemisphere`` from
every real mask (:func:`gliomagen.data.labels.derive_covariates`, with the brain's
mid-sagittal plane through the centre of its bounding box). A synthetic cohort's ``clinical.csv``
gets the same columns, computed by the same function on the mask as written (its grid and
affine), with the midline through the centre of the bounding box of the written brain (the
non-zero voxels), as ``prepare`` would find it in the files. Where the model is conditioned on a
covariate and the request set it (or it was drawn from a training case given the request, see
:mod:`gliomagen.generation.fill`), the cell keeps that value (what the case was asked to be); a
cell that stayed empty (unknown) is filled with the measured value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gliomagen.data.labels import COVARIATES, derive_covariates


def covariate_columns(condition_names: Sequence[str]) -> list[str]:
    """The covariate columns ``clinical.csv`` adds after the conditions (those not conditions)."""
    return [c for c in COVARIATES if c not in set(condition_names)]


def brain_midline_x(brain: np.ndarray, affine: np.ndarray) -> float:
    """World x (mm) of the centre of the bounding box of ``brain [X, Y, Z]`` (``prepare``'s midline)."""
    ijk = np.nonzero(brain)
    if not ijk[0].size:
        return float(affine[0, 3])
    centre = np.array([(int(a.min()) + int(a.max())) / 2.0 for a in ijk] + [1.0])
    return float((np.asarray(affine, dtype=np.float64) @ centre)[0])


def mask_covariates(seg: np.ndarray, brain: np.ndarray, affine: np.ndarray) -> dict[str, Any]:
    """The covariates of one generated case as ``clinical.csv`` cells.

    Args:
        seg: ``[X, Y, Z]`` labels {0..3} as written.
        brain: ``[X, Y, Z]`` bool, the voxels written as brain (non-zero in the images).
        affine: the files' ``[4, 4]`` voxel -> world (RAS mm) matrix.

    Returns:
        ``{covariate: value}``; numbers as :func:`derive_covariates` rounds them (as text),
        ``None`` where it gives none (no tumour).
    """
    aff = np.asarray(affine, dtype=np.float64)
    values = derive_covariates(seg, aff, brain_midline_x(brain | (seg > 0), aff))
    return {k: None if v is None else str(v) for k, v in values.items()}


def fill_covariates(conditions: Mapping[str, Any], measured: Mapping[str, Any]) -> dict[str, Any]:
    """``conditions`` with each covariate it leaves unset (absent or ``None``) set to ``measured``."""
    row = dict(conditions)
    for name, value in measured.items():
        if row.get(name) is None:
            row[name] = value
    return row
