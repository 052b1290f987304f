"""The registry of training terms and the one function that builds a run's terms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from gliomagen.training.batches import TrainingData
from gliomagen.training.terms.base import Term
from gliomagen.training.terms.covariates import CovariateTerm
from gliomagen.training.terms.focality import FocalityTerm
from gliomagen.training.terms.presence import PresenceTerm
from gliomagen.training.terms.reconstruction import ReconstructionTerm
from gliomagen.training.terms.segmentation import LabelConsistencyTerm, SegmenterFitTerm
from gliomagen.training.terms.tables import MaskTables

TERMS: dict[str, type[Term]] = {
    t.name: t
    for t in (
        PresenceTerm,
        FocalityTerm,
        CovariateTerm,
        ReconstructionTerm,
        SegmenterFitTerm,
        LabelConsistencyTerm,
    )
}
"""The terms by name, in the order a phase adds their losses."""


def build_terms(
    cfg: Any,
    data: TrainingData | None = None,
    tables: Mapping[str, torch.Tensor | None] | None = None,
) -> list[Term]:
    """The terms of ``cfg`` whose weight is positive, in :data:`TERMS` order.

    Args:
        cfg: the run configuration.
        data: the training data: the tables the terms need are computed from one read of its
            masks (:class:`~gliomagen.training.terms.tables.MaskTables`), only if a term needs one.
        tables: the tables by name, instead of ``data`` (tests, benchmarks).

    Raises:
        GliomagenError: a term that is on needs a table that neither gives.
    """
    source: Any = MaskTables(data) if data is not None else (tables or {})
    return [
        cls(cfg, {need: source.get(need) for need in (*cls.needs, *cls.optional)})
        for cls in TERMS.values()
        if cls.weight_of(cfg) > 0
    ]


__all__ = ["TERMS", "build_terms"]
