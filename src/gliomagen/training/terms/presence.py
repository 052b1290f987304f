"""Tumour presence (``loss.presence_weight``): each of G's samples should hold a tumour."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from gliomagen.training.terms.base import Term, TermInputs
from gliomagen.training.terms.tables import bound_by_code


class PresenceTerm(Term):
    """Each sample should hold at least a tumour of ``k`` voxels (a hinge on G's soft masks).

    ``k = ceil(loss.presence_floor x V x m)``, ``V`` voxels and ``m`` the smallest training tumour
    share among the cases that share a categorical code with the sample (the table
    ``tumour_floor``), the largest such bound over the conditions (each is a lower bound the real
    cases respect; the largest is the tightest).
    """

    name: ClassVar[str] = "presence"
    needs: ClassVar[tuple[str, ...]] = ("tumour_floor",)
    weight_key: ClassVar[str] = "loss.presence_weight"

    def __init__(self, cfg: Any, tables: Any = None) -> None:
        super().__init__(cfg, tables)
        self.floor_share = float(getattr(cfg.loss, "presence_floor", 0.5))

    def value(self, probs: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """The mean over the samples of ``1 - p(tumour)`` over each sample's ``k`` voxels most
        likely to be tumour.

        It is zero once the sample has ``k`` sure tumour voxels, so samples with a tumour of their
        condition's size feel nothing, and a sample whose tumour vanished or shrank is pulled where
        its tumour probability is already highest (it grows a tumour there, rather than specks
        everywhere, as a pull on every voxel would). Codes no training case has, or whose smallest
        case has no tumour, set no bound.

        Args:
            probs: ``[n, 4, *S]`` G's (soft) mask probabilities.
            cat: ``[n, n_cat]`` the samples' categorical codes.
        """
        tumour = 1.0 - probs.float()[:, 0].flatten(1)  # [n, V]
        n_vox = tumour.shape[1]
        share = bound_by_code(self.tables["tumour_floor"], cat).amax(1)  # [n]
        ks = (share * self.floor_share * n_vox).ceil().clamp(0, n_vox).long().tolist()
        terms = [1.0 - tumour[i].topk(k).values.mean() for i, k in enumerate(ks) if k >= 1]
        return torch.stack(terms).mean() if terms else tumour.sum() * 0.0

    def loss(self, inputs: TermInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The term on G's soft masks under their conditions."""
        value = self.value(inputs.probs, inputs.mb.gen_cat)
        return value, {"G/presence": value.detach() * len(inputs.probs)}
