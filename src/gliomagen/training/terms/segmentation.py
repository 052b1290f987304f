"""Label consistency (``loss.seg_weight``): G's images must show the tumour its own mask draws.

A small segmenter ``S`` (MONAI's residual U-Net, region outputs WT / TC / ET, the BraTS recipe)
lives in D as ``D.seg`` (so it is checkpointed, resumed and reduced with D). Two terms share it:

- :class:`SegmenterFitTerm` (phase D): ``S`` learns the **real** cases' masks from their images
  (BCE + soft Dice of the three regions); it never sees a generated case, so it reads tumours the
  way real images show them (an enhancing region is bright in T1Gd, oedema in FLAIR);
- :class:`LabelConsistencyTerm` (phase G): ``S``, frozen in G's phase, segments G's images and
  the same loss compares that with G's own (argmax) mask, whose gradient reaches G through the
  images only. A generated enhancing region that does not enhance, or a tumour border blurred into
  the brain, is a region ``S`` misses, so G is pulled to render it as real cases do.

Why: D judges image and mask together but lets small, mask-defined structure slide. Measured on
the hard SSA phantoms (docs/experiments/2026-12-07-label-consistency.md): the default recipe's
enhancing regions were 0.1 brain-sd brighter than normal tissue in T1Gd where real ones are 1.2,
and segmenters trained on those cases learned that enhancing tumour need not enhance.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from gliomagen.evaluation.segmentation import REGIONS
from gliomagen.training.terms.base import Term, TermInputs

_DICE = DiceLoss(sigmoid=True, reduction="none", smooth_nr=1.0, smooth_dr=1.0)  # per case and region


def region_targets(mask: torch.Tensor) -> torch.Tensor:
    """Region targets ``[n, 3, *S]`` (:data:`~gliomagen.evaluation.segmentation.REGIONS`: WT, TC,
    ET) of a one-hot or soft mask ``[n, 4, *S]`` (background, NCR, ED, ET), from its argmax."""
    lab = mask.argmax(1)
    ids = [torch.tensor(r, device=lab.device) for r in REGIONS.values()]
    return torch.stack([torch.isin(lab, i) for i in ids], 1).to(mask.dtype)


def region_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-case BCE + MONAI's soft Dice (smoothed by 1), each averaged over the three regions
    ``[n]`` (a region absent in both the target and the prediction costs no Dice)."""
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(2).mean(2)
    dice = _DICE(logits, target).flatten(1)  # [n, 3]
    return (bce + dice).mean(1)


def _segmenter(net: Any) -> nn.Module:
    seg = getattr(net, "seg", None)
    if seg is None:  # build_discriminator adds D.seg whenever loss.seg_weight > 0
        raise RuntimeError("loss.seg_weight > 0 but D has no segmenter (D.seg)")
    return seg


class SegmenterFitTerm(Term):
    """Phase D: ``S`` learns the real micro-batch's regions from its images."""

    name: ClassVar[str] = "seg_fit"
    phase: ClassVar[str] = "D"
    weight_key: ClassVar[str] = "loss.seg_weight"

    @classmethod
    def weight_of(cls, cfg: Any) -> float:
        """1 whenever label consistency is on (``S`` has its own loss; the weight is G's)."""
        return 1.0 if float(getattr(cfg.loss, "seg_weight", 0.0)) > 0 else 0.0

    def loss(self, inputs: TermInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mb = inputs.mb
        with inputs.net.autocast():
            logits = _segmenter(inputs.net)(mb.real_img.detach())
        value = region_loss(logits, region_targets(mb.real_mask.detach()))
        return value.mean(), {"D/seg_fit": value.detach().sum()}


class LabelConsistencyTerm(Term):
    """Phase G: ``S`` (trained on real cases only) must find G's own mask in G's images."""

    name: ClassVar[str] = "label_consistency"
    weight_key: ClassVar[str] = "loss.seg_weight"

    def loss(self, inputs: TermInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        target = region_targets(inputs.probs.detach())
        with inputs.net.autocast():
            logits = _segmenter(inputs.net)(inputs.img)
        value = region_loss(logits, target)
        return value.mean(), {"G/label_consistency": value.detach().sum()}


__all__ = [
    "LabelConsistencyTerm",
    "SegmenterFitTerm",
    "region_loss",
    "region_targets",
]
