"""The built-in BraTS-like phantom cohort: labelled multi-parametric glioma MRI, no download.

Anatomy comes from the MNI ICBM152 2009 template that nilearn ships in its package (smoothly
deformed and scaled per subject), tumours are drawn per grade (HGG: necrosis, enhancing rim, wide
edema; LGG: non-enhancing core, little edema), contrast per modality and tissue, and a cohort shift
(SSA: 1.5 T-like, lower SNR, thick slices, stronger bias field, another contrast balance). All
parameters are in :mod:`gliomagen.data.phantoms.params`.

Example:
    >>> from gliomagen.data.phantoms import generate_cohort, make_case
    >>> generate_cohort("phantoms", {"GLI": 20, "SSA": 4}, workers=2)  # doctest: +SKIP
    >>> case = make_case("GLI", 0, seed=0)  # in memory: case.images["t1c"], case.seg, case.affine
"""

from __future__ import annotations

from gliomagen.data.phantoms.case import PhantomCase, case_id, make_case, write_case
from gliomagen.data.phantoms.cohort import CLINICAL_COLUMNS, generate_cohort, parse_cohorts
from gliomagen.data.phantoms.params import DEFAULT_COHORTS, PhantomParams

__all__ = [
    "CLINICAL_COLUMNS",
    "DEFAULT_COHORTS",
    "PhantomCase",
    "PhantomParams",
    "case_id",
    "generate_cohort",
    "make_case",
    "parse_cohorts",
    "write_case",
]
