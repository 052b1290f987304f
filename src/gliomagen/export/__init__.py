"""Export: hand gliomagen's cohorts and models to the tools users already run.

- :func:`export_nnunet`: cohorts (``gliomagen generate`` output, BraTS folders) -> an nnU-Net v2
  raw dataset for region-based BraTS training (:mod:`gliomagen.export.nnunet`).
- :func:`model_card` / :func:`write_model_card`: a Markdown model card of a run or checkpoint
  (:mod:`gliomagen.export.card`).

This package sits beside ``report``: it reads data, models, generation and training outputs, and
only the CLI imports it. See docs/export.md.
"""

from __future__ import annotations

from gliomagen.export.card import model_card, write_model_card
from gliomagen.export.nnunet import NnunetExport, export_nnunet

__all__ = ["NnunetExport", "export_nnunet", "model_card", "write_model_card"]
