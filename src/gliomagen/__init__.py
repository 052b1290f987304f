"""gliomagen: conditional 3D StyleGAN synthesis of multi-parametric glioma MRI.

Pipeline: ``phantoms`` or a BraTS folder -> ``prepare`` (store) -> ``train`` (run folder)
-> ``generate`` (BraTS-layout cohort) -> ``evaluate`` / ``report``.
"""

from __future__ import annotations

__version__ = "0.1.0"

MODALITIES: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")
"""Canonical modality order of every store, network and output (BraTS 2023 names)."""

MASK_CLASSES: tuple[str, ...] = ("background", "ncr", "ed", "et")
"""Canonical mask labels 0..3: background, necrotic/non-enhancing core, edema, enhancing."""

__all__ = ["MASK_CLASSES", "MODALITIES", "__version__"]
