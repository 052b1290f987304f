"""Evaluation of a synthetic cohort: realism, diversity, conditional fidelity and privacy.

The Python API is :func:`evaluate` (``gliomagen evaluate`` runs it, then renders the HTML page
with :func:`gliomagen.report.html.evaluate_report`). Its metrics come from the metric suite
(:mod:`~gliomagen.evaluation.suite`: a cached reference of the real cases, a measure step for a
set of samples) that validation during training uses too (:mod:`~gliomagen.evaluation.heldout`).
The pieces are usable on their own: :mod:`~gliomagen.evaluation.distances` (FD, KID, PRDC,
bootstrap),
:mod:`~gliomagen.evaluation.similarity` (3D SSIM, MS-SSIM, PSNR, MSE inside the brain),
:mod:`~gliomagen.evaluation.features` (``probe``, ``medicalnet``, ``slices`` extractors),
:mod:`~gliomagen.evaluation.audits` (diversity, memorisation, conditional fidelity),
:mod:`~gliomagen.evaluation.tissue` (mask realism, intensity histograms) and
:mod:`~gliomagen.evaluation.reconstruction` (projection into a generator's latent space).

Example:
    >>> from gliomagen.evaluation import evaluate
    >>> metrics = evaluate("store:test", "synthetic_cohort/", "report/")  # doctest: +SKIP
    >>> metrics["distances"]["all"]["synthetic"]["fd"]["value"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any


def evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Evaluate a synthetic cohort (see :func:`gliomagen.evaluation.pipeline.evaluate`)."""
    # imported on call: ``import gliomagen.evaluation.tissue`` (training) stays free of the pipeline
    from gliomagen.evaluation.pipeline import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


__all__ = ["evaluate"]
