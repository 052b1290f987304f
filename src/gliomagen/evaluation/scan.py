"""One pass over a set of cases: everything the metric suite needs of each case, batch by batch.

A :class:`Scan` holds, per case, the extractor's features and the coarse copy that the
memorisation audit compares (:func:`gliomagen.evaluation.audits.coarse_vectors`) and, when asked,
the mask statistics and tissue histograms of mask and intensity realism
(:mod:`gliomagen.evaluation.tissue`) and the tumour-structure statistics with the tissue contrasts
(validation's ``mask`` metric). :meth:`Scan.arrays` and :meth:`Scan.from_arrays` turn it into
named arrays for the on-disk cache and back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gliomagen.errors import GliomagenError
from gliomagen.evaluation import audits, tissue
from gliomagen.evaluation.cases import CaseSet


@dataclass
class Scan:
    """Per-case numbers of one set (row ``i`` = case ``i``).

    Attributes:
        features: extractor features ``[N, F]`` float64 (may hold NaN: see :func:`scan`).
        coarse: coarse copies ``[N, n]`` float32.
        mask: mask statistics ``{name: [N]}`` (``wt_volume_ml``, ``enhancing_fraction``) or ``{}``.
        hist: tissue histograms ``[N, C, tissues, bins]`` or ``None``.
        structure: tumour-structure statistics and tissue contrasts ``{name: [N]}`` or ``{}``.
    """

    features: np.ndarray
    coarse: np.ndarray
    mask: dict[str, np.ndarray] = field(default_factory=dict)
    hist: np.ndarray | None = None
    structure: dict[str, np.ndarray] = field(default_factory=dict)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The scan as named arrays, every name starting with ``prefix``."""
        out = {f"{prefix}features": self.features, f"{prefix}coarse": self.coarse}
        if self.hist is not None:
            out[f"{prefix}hist"] = self.hist
        out.update({f"{prefix}mask_{k}": v for k, v in self.mask.items()})
        out.update({f"{prefix}structure_{k}": v for k, v in self.structure.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> Scan:
        """The scan that :meth:`arrays` wrote with ``prefix`` (``KeyError`` when missing)."""

        def family(name: str) -> dict[str, np.ndarray]:
            start = f"{prefix}{name}_"
            return {k[len(start) :]: v for k, v in arrays.items() if k.startswith(start)}

        return cls(
            features=arrays[f"{prefix}features"], coarse=arrays[f"{prefix}coarse"],
            mask=family("mask"), hist=arrays.get(f"{prefix}hist"), structure=family("structure"),
        )  # fmt: skip


def _extend(into: dict[str, list[np.ndarray]], values: Mapping[str, np.ndarray]) -> None:
    for key, value in values.items():
        into.setdefault(key, []).append(value)


def scan(
    cases: CaseSet,
    extractor: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    *,
    realism: bool = False,
    structure: Sequence[str] | None = None,
) -> Scan:
    """Walk ``cases`` once in batches of ``batch_size``.

    Args:
        cases: the set.
        extractor: images ``[B, C, *S]`` -> features ``[B, F]``.
        batch_size: cases per batch.
        realism: also the mask statistics and tissue histograms.
        structure: the modality names: also the tumour-structure statistics and tissue
            contrasts; ``None``: not.

    Returns:
        The :class:`Scan`; non-finite features are kept (the caller decides).
    """
    feats, coarse, hists = [], [], []
    stats: dict[str, list[np.ndarray]] = {}
    struct: dict[str, list[np.ndarray]] = {}
    voxel_ml = float(np.prod(cases.spacing_mm)) / 1000.0
    for _, imgs, masks in cases.batches(batch_size):
        with torch.no_grad():
            feats.append(extractor(imgs).double().numpy())
        coarse.append(audits.coarse_vectors(imgs))
        if realism:
            hists.append(tissue.tissue_histograms(imgs, masks))
            _extend(stats, tissue.mask_statistics(masks, voxel_ml))
        if structure is not None:
            _extend(struct, tissue.structure_statistics(masks))
            _extend(struct, tissue.tissue_contrast(imgs, masks, structure))
    return Scan(
        features=np.concatenate(feats), coarse=np.concatenate(coarse),
        mask={k: np.concatenate(v) for k, v in stats.items()},
        hist=np.concatenate(hists) if hists else None,
        structure={k: np.concatenate(v) for k, v in struct.items()},
    )  # fmt: skip


def check_finite(result: Scan, cases: CaseSet, extractor: Any) -> None:
    """Raise a GliomagenError naming the set when its features hold NaN or inf."""
    if not np.isfinite(result.features).all():
        raise GliomagenError(f"{cases.name}: the {extractor.name} extractor gave NaN/inf features")
