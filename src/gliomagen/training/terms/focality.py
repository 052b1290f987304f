"""Focality (``loss.focality_weight``): no tumour outside each sample's largest lesion, beyond what
the real cases with its condition have."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F

from gliomagen.training.terms.base import Term, TermInputs
from gliomagen.training.terms.tables import bound_by_code


class FocalityTerm(Term):
    """Tumour outside each sample's largest lesion, beyond the real cases' largest satellite share.

    Reads the table ``focal_floor``: per condition code, the smallest share of a real tumour held
    by its largest lesion.
    """

    name: ClassVar[str] = "focality"
    needs: ClassVar[tuple[str, ...]] = ("focal_floor",)
    weight_key: ClassVar[str] = "loss.focality_weight"

    def value(self, probs: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """The mean over the samples of ``max(0, s - (1 - f))``.

        Per sample, the argmax tumour (labels 1-3) is split into 26-connected lesions (no
        gradient; :func:`scipy.ndimage.label`). ``s`` is the tumour probability ``1 - p(bg)``
        summed over the voxels of the lesions other than the largest, divided by that probability
        summed over all the argmax tumour; ``f`` is the smallest share of a real tumour in its
        largest lesion among the training cases sharing a categorical code with the sample (the
        largest such bound over the conditions). With unifocal training cases (``f = 1``) every
        satellite voxel is pulled to background; multifocal cases loosen the bound. One lesion or
        none gives 0. The labelling runs on the CPU (a small copy of the argmax per step).

        Args:
            probs: ``[n, 4, *S]`` G's (soft) mask probabilities.
            cat: ``[n, n_cat]`` the samples' categorical codes.
        """
        allow = 1.0 - bound_by_code(self.tables["focal_floor"], cat).amax(1).to(probs.device)
        tumour = 1.0 - probs.float()[:, 0]  # [n, *S]
        hard = (probs.detach().argmax(1) > 0).cpu().numpy()  # [n, *S] the argmax tumour
        connectivity = np.ones((3,) * (probs.ndim - 2), bool)  # 26 (3D) or 8 (2D) neighbours
        terms = []
        for i in range(len(probs)):
            lab, n = scipy.ndimage.label(hard[i], structure=connectivity)
            if n <= 1:
                terms.append(tumour[i].sum() * 0.0)
                continue
            main = int(np.bincount(lab.ravel())[1:].argmax()) + 1
            sat = torch.from_numpy(hard[i] & (lab != main)).to(probs.device)
            inside = torch.from_numpy(hard[i]).to(probs.device)
            share = (tumour[i] * sat).sum() / (tumour[i] * inside).sum().clamp_min(1e-6)
            terms.append(F.relu(share - allow[i]))
        return torch.stack(terms).mean() if terms else tumour.sum() * 0.0

    def loss(self, inputs: TermInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The term on G's soft masks under their conditions."""
        value = self.value(inputs.probs, inputs.mb.gen_cat)
        return value, {"G/focality": value.detach() * len(inputs.probs)}
