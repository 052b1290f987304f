"""Generation: synthetic BraTS-layout cohorts, latent walks and style mixing from a checkpoint.

Modules: :mod:`~gliomagen.generation.sampling` (seeded latents, per-condition truncation, style
mixing), :mod:`~gliomagen.generation.plan` (which conditions each case gets),
:mod:`~gliomagen.generation.intensity` (network range -> scanner intensities, brain mask),
:mod:`~gliomagen.generation.space` (native or BraTS output grid),
:mod:`~gliomagen.generation.source` (the checkpoint's generator),
:mod:`~gliomagen.generation.synthesis` (the network per batch, seeded noise per case),
:mod:`~gliomagen.generation.writer` (atomic BraTS-layout files, ``clinical.csv``, ``manifest.json``),
:mod:`~gliomagen.generation.manifest` (what ``manifest.json`` records),
:mod:`~gliomagen.generation.cohort` (:func:`generate_cohort`),
:mod:`~gliomagen.generation.slices2d` (a 2D model's slices) and
:mod:`~gliomagen.generation.interpolate` (PNG strip and GIF of a walk).

Example:
    >>> from gliomagen.generation import generate_cohort  # doctest: +SKIP
    >>> generate_cohort("run/checkpoints/last.pt", "syn", n=100, conditions={"grade": "HGG"}, truncation=0.7)  # doctest: +SKIP
"""

from __future__ import annotations

from gliomagen.generation.cohort import generate_cohort
from gliomagen.generation.interpolate import interpolate

__all__ = ["generate_cohort", "interpolate"]
