"""Training terms behind one interface (:class:`Term`), and their registry (:data:`TERMS`).

- :mod:`.base`: the interface (``name``, ``phase``, ``needs``, ``weight_of``, ``loss``);
- :mod:`.registry`: :data:`TERMS` and :func:`build_terms` (the terms a configuration turns on);
- :mod:`.tables`: the per-condition tables of the training masks the terms read;
- :mod:`.presence`, :mod:`.focality`, :mod:`.covariates`: penalties on G's masks;
- :mod:`.reconstruction`: the VAE-GAN reconstruction and KL;
- :mod:`.segmentation`: label consistency (D's segmenter learns the real masks; G's images must
  give G's own mask back through it).
"""

from __future__ import annotations

from gliomagen.training.terms.base import GeneratorPasses, Term, TermInputs
from gliomagen.training.terms.registry import TERMS, build_terms
from gliomagen.training.terms.tables import MaskTables

__all__ = ["TERMS", "GeneratorPasses", "MaskTables", "Term", "TermInputs", "build_terms"]
