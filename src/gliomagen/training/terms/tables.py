"""Per-condition tables of the training masks that the mask-statistics terms read.

:class:`MaskTables` reads every training case's mask once (on first use) and reduces two per-case
statistics over the cases sharing each categorical condition code: the whole tumour's share of the
grid (its per-code minimum, :meth:`MaskTables.tumour_floor`, for the presence term) and the share
of the tumour held by its largest lesion (its per-code minimum, :meth:`MaskTables.focal_floor`,
for the focality term). :func:`bound_by_code` looks a table up for a batch's codes. One table reads
no mask: ``recon_excluded``, the ``(column, code)`` pairs of ``loss.recon_exclude`` and
``loss.recon_scarce_ratio`` resolved by :class:`TrainingData`, which the reconstruction term reads
as an optional table; nor does ``covariates``, the mask covariates among the conditions and their
standardisation, for the covariate term.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from gliomagen.evaluation.tissue import structure_statistics
from gliomagen.training.batches import N_CLASSES, TrainingData

VOLUME, ENHANCING = 0, 1
"""Kinds of a row of the ``covariates`` table (:meth:`MaskTables.covariates`)."""


def main_lesion_share(mask: np.ndarray) -> float:
    """Share of the tumour (labels 1-3, or ``True``) in its largest 26-connected lesion (8 in 2D),
    as :func:`gliomagen.evaluation.tissue.structure_statistics` measures it; 1.0 without tumour
    (no satellite to allow for)."""
    if not bool(((mask >= 1) & (mask <= 3)).any()):
        return 1.0
    return float(structure_statistics(np.asarray(mask)[None])["main_component_share"][0])


class MaskTables:
    """The per-condition tables of one training set's masks, from one read of them.

    Args:
        data: the training data (its ``train_index`` cases and their categorical codes).
    """

    NAMES = ("tumour_floor", "focal_floor", "recon_excluded", "covariates")

    def __init__(self, data: TrainingData) -> None:
        self.data = data

    def get(self, name: str) -> torch.Tensor:
        """The table called ``name`` (one of :attr:`NAMES`)."""
        if name not in self.NAMES:
            raise KeyError(f"no mask table {name!r}; known: {', '.join(self.NAMES)}")
        table: torch.Tensor = getattr(self, name)()
        return table

    def recon_excluded(self) -> torch.Tensor:
        """``[k, 2]`` long: the ``(categorical column, code)`` pairs of ``loss.recon_exclude``
        (:attr:`TrainingData.recon_excluded`; no mask is read)."""
        pairs = getattr(self.data, "recon_excluded", [])
        return torch.tensor(pairs, dtype=torch.long).reshape(len(pairs), 2)

    def covariates(self) -> torch.Tensor:
        """``[k, 5]`` float64: per mask covariate among the conditions (``wt_volume_ml``,
        ``enhancing_fraction``; no mask is read) its continuous column, its kind
        (:data:`VOLUME` / :data:`ENHANCING`), its mean and std
        (the schema's standardisation) and the grid's volume in ml (0 without the store's spacing)."""
        meta = self.data.meta
        spacing = meta.get("spacing_mm") or []
        grid_ml = math.prod(meta["size"]) * math.prod(spacing) / 1000.0 if spacing else 0.0
        kinds = {"wt_volume_ml": VOLUME, "enhancing_fraction": ENHANCING}
        rows = [
            [j, kinds[f.name], f.mean, f.std, grid_ml]
            for j, f in enumerate(self.data.schema.continuous)
            if f.name in kinds
        ]
        return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), 5)

    @functools.cached_property
    def _case_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per training case, from one read of its mask (on first use): ``[n_train, 4]`` float64
        share of the grid per mask class and ``[n_train]`` float64 share of the tumour in its
        largest lesion (:func:`main_lesion_share`)."""
        fractions, main = [], []
        for i in self.data.train_index:
            mask = self.data.store[int(i)][1].clamp(0, N_CLASSES - 1)
            fractions.append(torch.bincount(mask.flatten(), minlength=N_CLASSES).double())
            main.append(main_lesion_share(mask.numpy()))
        fr = torch.stack(fractions)
        return fr / fr.sum(1, keepdim=True), torch.tensor(main, dtype=torch.float64)

    def _per_code_min(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` ``[n_train]`` reduced to its minimum over the training cases of each
        categorical code -> ``[n_cat, n_codes]`` float32, NaN where no case has the code."""
        cat = self.data.cat
        codes = cat[torch.as_tensor(self.data.train_index)]  # [n_train, n_cat]
        n_codes = int(cat.max()) + 1 if cat.numel() else 0
        out = torch.full((codes.shape[1], n_codes), float("nan"), dtype=torch.float64)
        for j in range(codes.shape[1]):
            for c in codes[:, j].unique().tolist():
                out[j, c] = value[codes[:, j] == c].min(0).values
        return out.float()

    def tumour_floor(self) -> torch.Tensor:
        """Smallest whole-tumour share of the grid among the training cases, by categorical condition.

        Returns:
            ``[n_cat, n_codes]`` float32: entry ``[j, c]`` is the smallest fraction of tumour voxels
            (labels 1-3) of a training case whose ``j``-th categorical condition has code ``c``
            (0 when such a case has no tumour; NaN where no training case has the code).
        """
        return self._per_code_min(self._case_masks[0][:, 1:].sum(1))

    def focal_floor(self) -> torch.Tensor:
        """Smallest share of a training case's tumour held by its largest lesion, by condition.

        The lesion is the largest 26-connected component of labels 1-3; a case without tumour
        counts as 1 (unifocal).

        Returns:
            ``[n_cat, n_codes]`` float32: entry ``[j, c]`` is the smallest such share among the
            training cases whose ``j``-th categorical condition has code ``c`` (1 when every one
            is a single lesion; NaN where no training case has the code).
        """
        return self._per_code_min(self._case_masks[1])


def bound_by_code(table: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
    """Look up a per-code bound ``table [n_cat, n_codes]`` (NaN: no bound) for each sample's codes
    ``cat [n, n_cat]`` -> ``[n, n_cat]`` with 0 where there is no bound: codes no training case
    has, the 'unknown' slot included, set none."""
    cat = cat.to(table.device)
    width = max(table.shape[1], int(cat.max()) + 1 if cat.numel() else 0)
    padded = F.pad(table.float(), (0, width - table.shape[1]), value=float("nan"))
    cols = torch.arange(table.shape[0], device=table.device)
    return torch.nan_to_num(padded, nan=0.0)[cols.unsqueeze(0), cat]


__all__ = ["ENHANCING", "VOLUME", "MaskTables", "bound_by_code", "main_lesion_share"]
