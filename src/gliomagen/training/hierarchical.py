"""The hierarchical objective (``model.hierarchical``): the low-resolution whole volume and the
step's high-resolution sub-volumes, each judged by its own discriminator; the losses sum.

G renders the whole volume at ``model.low_res`` and ``model.sub_volumes`` boxes of
``model.sub_volume`` voxels at the full grid (:class:`~gliomagen.models.hierarchical.HierarchicalSynthesis`),
at corners the step plan drew (shared by the micro-batch's samples, so a box is one batched
call). The real views are made from the store's full-grid cases: the low-resolution volume is the
block average of the full one (the images' area downsampling; the mask's one-hot block average is
the class share of each low-resolution voxel, kept soft when D sees G's soft masks
(``model.d_mask=soft``) and made the one-hot of its largest class when D sees G's argmax masks
(``straight_through``); the sub-volume is the crop at the fake's corner.

Per phase: ``adv(low) + mean over boxes of adv(box)``; the auxiliary (AC-GAN) loss and the ADA
heuristic use the low-resolution D; R1 is applied to both Ds at their real inputs. The training
terms (the VAE-GAN's reconstruction and KL, tumour presence and focality, label consistency) act
on the low-resolution whole volume: they get G's low view, the reals' low view (the one-hot of
each block's largest mask class) and a synthesis pass that renders the low resolution only
(:class:`LowPasses`), as the full-volume model gets its grid; the encoder is built at the low
resolution. The high-resolution branch learns from the sub-volume D alone, as in HA-GAN.
wgan-gp is refused by the configuration's validation for now.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gliomagen.models.discriminator import DOutput
from gliomagen.models.grid import low_view
from gliomagen.training.batches import MicroBatch
from gliomagen.training.losses import (
    REAL_SIGN_OFFSET,
    StyleGANLoss,
    aux_loss,
    d_adv_loss,
    g_adv_loss,
    r1_penalty,
)
from gliomagen.training.terms import TermInputs

View = tuple[torch.Tensor, torch.Tensor]  # (images [n, C, *S], mask probabilities [n, 4, *S])


def crop(x: torch.Tensor, corner: torch.Tensor | list[int], side: int) -> torch.Tensor:
    """``x[:, :, c0:c0+side, c1:c1+side, c2:c2+side]``."""
    c = [int(v) for v in corner]
    return x[:, :, c[0] : c[0] + side, c[1] : c[1] + side, c[2] : c[2] + side]


@dataclass
class LowPasses:
    """The networks' passes the training terms run (:class:`~gliomagen.training.terms.base.GeneratorPasses`),
    with a ``synthesis`` that renders the low-resolution whole volume only
    (:meth:`HierarchicalLoss.low_synthesis`)."""

    num_ws: int
    mapping: Any
    synthesis: Any
    encoder: Any
    seg: Any
    autocast: Any  # () -> a context manager


class HierarchicalLoss(StyleGANLoss):
    """:class:`~gliomagen.training.losses.StyleGANLoss` for a hierarchical G and D (same
    arguments; ``compile`` is refused by the configuration)."""

    def __init__(self, G: Any, D: Any, cfg: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(G, D, cfg, *args, **kwargs)
        self.net = G.synthesis
        self.factor = int(self.net.factor)
        self.side = int(self.net.sub_volume)
        self.low_passes = LowPasses(
            self.num_ws, self.mapping, self.low_synthesis, self.encoder, self.seg, self.autocast
        )

    def low_synthesis(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        noise_seeds: Sequence[int] | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, mask logits)`` of the low-resolution whole volume."""
        return self.net.low_output(self.net.low_features(ws, noise_mode, noise_seeds))

    def low_terms(
        self,
        phase: str,
        mb: MicroBatch,
        view: View,
        loss: torch.Tensor,
        stats: dict[str, torch.Tensor],
        real_low: View | None = None,
    ) -> torch.Tensor:
        """``loss`` plus the phase's training terms on the low-resolution view (G's ``view``;
        the reals' low view, hard, in place of the micro-batch's full-grid reals: ``real_low``
        when the caller has it already, else made here)."""
        if not any(t.phase == phase for t in self.terms):
            return loss
        if real_low is None:
            real_low = low_view(mb.real_img, mb.real_mask, self.factor, hard=True)
        real_img, real_mask = real_low
        low_mb = dataclasses.replace(mb, real_img=real_img, real_mask=real_mask)
        return self._add_terms(
            phase, TermInputs(low_mb, view[0], view[1], self.low_passes), loss, stats
        )

    # -- views -------------------------------------------------------------------------------
    def views(self, mb: MicroBatch) -> tuple[View, list[View], torch.Tensor]:
        """G's ``(low view, [box views], w)`` for a micro-batch (soft mask probabilities)."""
        if mb.corners is None:
            raise ValueError("a hierarchical micro-batch needs the step's sub-volume corners")
        with self.autocast():
            ws, w = self.styles(mb)
            seeds = torch.tensor(mb.noise_seeds, dtype=torch.int64)
            feats = self.net.low_features(ws, "random", seeds)
            low = self.net.low_output(feats)
            branch = self.net.branch_seeds(ws.shape[0], "random", seeds)
            boxes = [self.net.sub_volume_output(ws, feats, c.tolist(), branch) for c in mb.corners]
        soft = [(i.float(), torch.softmax(lg.float(), dim=1)) for i, lg in (low, *boxes)]
        return soft[0], soft[1:], w.float()

    def _generate(self, mb: MicroBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The low-resolution view (what :meth:`run_G` returns in hierarchical mode)."""
        (img, soft), _boxes, w = self.views(mb)
        return img, soft, w

    def real_views(self, mb: MicroBatch) -> tuple[View, list[View]]:
        """The real cases' ``(low view, [box views at the micro-batch's corners])``."""
        assert mb.corners is not None
        low = low_view(mb.real_img, mb.real_mask, self.factor, self.straight_through)
        boxes = [
            (crop(mb.real_img, c, self.side), crop(mb.real_mask, c, self.side)) for c in mb.corners
        ]
        return low, boxes

    def _box_judge(self, corner: torch.Tensor) -> Callable[..., DOutput]:
        def judge(
            img: torch.Tensor, mask: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor
        ) -> DOutput:
            return self.D_reg.judge_sub(img, mask, corner.tolist(), cat, cont)

        return judge

    # -- phases ------------------------------------------------------------------------------
    def _g_loss(self, mb: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G's loss: adversarial on the low view and the boxes, auxiliary on the low view."""
        stats: dict[str, torch.Tensor] = {}
        (img, soft), boxes, w = self.views(mb)
        out = self.run_D(img, self._for_D(soft), mb.gen_cat, mb.gen_cont, mb.aug_fake)
        adv = g_adv_loss(self.kind, out.score)
        loss = adv.mean()
        stats["G/adv"] = adv.detach().sum()
        if self.use_aux:
            aux = aux_loss(out, mb.gen_cat, mb.gen_cont, self.cat_sizes)
            loss = loss + self.cfg.aux_weight * aux
            stats["G/aux"] = aux.detach() * len(adv)
        assert mb.corners is not None
        sub_sum = adv.new_zeros(())
        for corner, (b_img, b_soft) in zip(mb.corners, boxes, strict=True):
            judge = self._box_judge(corner)
            out_b = self.run_D(
                b_img, self._for_D(b_soft), mb.gen_cat, mb.gen_cont, mb.aug_sub_fake, D=judge
            )
            adv_b = g_adv_loss(self.kind, out_b.score)
            loss = loss + adv_b.mean() / len(boxes)
            sub_sum = sub_sum + adv_b.detach().sum() / len(boxes)
        stats["G/adv_sub"] = sub_sum
        loss = self.low_terms("G", mb, (img, soft), loss, stats)
        stats["w_sum"] = w.detach().sum(0)
        return loss, stats

    def _d_loss(self, mb: MicroBatch, do_r1: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's loss: real/fake on the low view and the boxes, auxiliary on the low view, R1 on both."""
        c = self.cfg
        with torch.no_grad():
            (f_img, f_soft), f_boxes, _ = self.views(mb)
        real_low, real_boxes = self.real_views(mb)
        stats: dict[str, torch.Tensor] = {}
        loss, out_r = self._judge_pair(
            (f_img, self._for_D(f_soft)),
            real_low,
            self.D,
            mb,
            (mb.aug_fake, mb.aug_real),
            do_r1,
            "",
            stats,
        )
        stats["ada_sign"] = torch.sign(out_r.score.detach() - REAL_SIGN_OFFSET[self.kind]).sum()
        if self.use_aux:
            aux = aux_loss(out_r, mb.real_cat, mb.real_cont, self.cat_sizes)
            loss = loss + c.aux_weight * aux
            stats["D/aux"] = aux.detach() * len(out_r.score)
        assert mb.corners is not None
        k = len(f_boxes)
        for corner, (b_img, b_soft), real_b in zip(mb.corners, f_boxes, real_boxes, strict=True):
            part: dict[str, torch.Tensor] = {}
            judge = self._box_judge(corner)
            augs = (mb.aug_sub_fake, mb.aug_sub_real)
            l_b, _ = self._judge_pair(
                (b_img, self._for_D(b_soft)), real_b, judge, mb, augs, do_r1, "_sub", part
            )
            loss = loss + l_b / k
            for key, v in part.items():
                stats[key] = stats.get(key, 0) + v / k
        hard_low = real_low if self.straight_through else None  # D's view is the terms' one
        loss = self.low_terms("D", mb, (f_img, f_soft), loss, stats, hard_low)
        return loss, stats

    def _judge_pair(
        self,
        fake: View,
        real: View,
        judge: Any,
        mb: MicroBatch,
        augs: tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor] | None],
        do_r1: bool,
        suffix: str,
        stats: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, DOutput]:
        """One discriminator's real/fake loss (and lazy R1); ``(loss, its output on the reals)``."""
        c = self.cfg
        out_f = self.run_D(fake[0], fake[1], mb.gen_cat, mb.gen_cont, augs[0], D=judge)
        r_img, r_mask = real[0].detach(), real[1].detach()
        if do_r1:
            r_img, r_mask = r_img.requires_grad_(True), r_mask.requires_grad_(True)
        out_r = self.run_D(
            r_img, r_mask, mb.real_cat, mb.real_cont, augs[1], D=judge, autocast=not do_r1
        )
        l_real, l_fake = d_adv_loss(self.kind, out_r.score, out_f.score, c.wgan_drift)
        loss = (l_real + l_fake).mean()
        stats[f"D/real{suffix}"], stats[f"D/fake{suffix}"] = (
            l_real.detach().sum(),
            l_fake.detach().sum(),
        )
        stats[f"D/score_real{suffix}"] = out_r.score.detach().sum()
        stats[f"D/score_fake{suffix}"] = out_f.score.detach().sum()
        if do_r1:
            r1 = r1_penalty(out_r.score, [r_img, r_mask])
            loss = loss + (r1 * (c.r1_gamma / 2) * c.r1_interval).mean()
            stats[f"D/r1{suffix}"] = r1.detach().sum()
        return loss, out_r


__all__ = ["HierarchicalLoss", "LowPasses", "crop"]
