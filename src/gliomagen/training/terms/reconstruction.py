"""The VAE-GAN terms (``model.encoder``): reconstruction of the encoded real cases, and the KL.

A real case is encoded to ``z ~ q(z | x)``, regenerated under its own conditions and compared voxel
by voxel: cross-entropy plus MONAI's soft Dice of the mask (``loss.recon_weight``), L1 of the
images (``loss.recon_img_weight``, per mask class with ``loss.recon_img_balanced``), and
``KL(q(z | x) || N(0, I))`` (``loss.kl_weight``, ramped from 0 over ``loss.kl_warmup_steps``).
The three parts carry their own weights; the term's own weight is 1 when G has an encoder.
Cases with a ``loss.recon_exclude`` condition (e.g. ``cohort=SSA``) keep their KL but are no
reconstruction target: the generator is never taught to rebuild those patients case by case.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from gliomagen.models.encoder import kl_standard_normal, reparameterise
from gliomagen.training.batches import MicroBatch
from gliomagen.training.terms.base import GeneratorPasses, Term, TermInputs


class ReconstructionTerm(Term):
    """Reconstruction (mask CE + soft Dice, image L1) and KL of the encoded real cases."""

    name: ClassVar[str] = "reconstruction"
    weight_key: ClassVar[str] = "model.encoder"
    optional: ClassVar[tuple[str, ...]] = ("recon_excluded",)

    def __init__(self, cfg: Any, tables: Any = None) -> None:
        super().__init__(cfg, tables)
        c = cfg.loss
        self.recon_weight, self.recon_img_weight = c.recon_weight, c.recon_img_weight
        self.kl_weight, self.kl_warmup_steps = c.kl_weight, int(c.kl_warmup_steps)
        self.balanced = bool(getattr(c, "recon_img_balanced", False))
        self._dice = DiceLoss(include_background=False, softmax=True, reduction="none")

    @classmethod
    def weight_of(cls, cfg: Any) -> float:
        """1 when G carries an encoder (``model.encoder``), else 0 (off)."""
        return 1.0 if getattr(cfg.model, "encoder", False) else 0.0

    def kl_scale(self, step: int | None) -> float:
        """The KL weight's share at ``step``: ``min(1, step / loss.kl_warmup_steps)`` (1 without a
        warm-up or a step)."""
        if not self.kl_warmup_steps or step is None:
            return 1.0
        return min(1.0, step / self.kl_warmup_steps)

    def reconstruct(
        self, mb: MicroBatch, net: GeneratorPasses
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Encode the reals, regenerate them under their conditions, compare.

        Returns the weighted sum ``recon_weight * (CE + soft Dice of the tumour classes)(mask) +
        recon_img_weight * L1(images) + kl_weight * kl_scale * KL`` (means over the micro-batch;
        L1 from :meth:`image_l1`) and its parts summed over the micro-batch. The Dice is MONAI's
        ``DiceLoss`` per case. The reparameterisation noise is the micro-batch's ``enc_eps`` (the
        step plan's, so a resumed run draws what an uninterrupted one does).
        """
        enc = net.encoder
        assert enc is not None
        real_img, real_mask = mb.real_img.detach(), mb.real_mask.detach()
        with net.autocast():
            mu, logvar = enc(real_img, real_mask)
            z = reparameterise(mu, logvar, mb.enc_eps)
            w = net.mapping(z, mb.real_cat, mb.real_cont, prior=False)  # z is encoded
            ws = w.unsqueeze(1).repeat(1, net.num_ws, 1)
            seeds = torch.tensor(mb.noise_seeds, dtype=torch.int64)
            img, logits = net.synthesis(ws, noise_mode="random", noise_seeds=seeds)
        ce = F.cross_entropy(logits.float(), real_mask.argmax(1), reduction="none")
        ce = ce.flatten(1).mean(1)  # [n]
        # a tumour is a few percent of the volume: the soft Dice of the tumour classes makes its
        # inner structure (a small necrotic core, a thin enhancing rim) weigh as much as the rest
        dice = self._dice(logits.float(), real_mask).flatten(1).mean(1)  # [n]
        l1 = self.image_l1(img.float(), real_img, real_mask)  # [n]
        kl = kl_standard_normal(mu, logvar)  # [n]
        kl_w = self.kl_weight * self.kl_scale(mb.step)
        keep = self.targets(mb.real_cat).to(ce.dtype)  # [n] 1 = a reconstruction target
        recon = self.recon_weight * (ce + dice) + self.recon_img_weight * l1
        loss = (keep * recon + kl_w * kl).mean()
        stats = {
            "G/recon_ce": ce.detach().sum(),
            "G/recon_dice": dice.detach().sum(),
            "G/recon_l1": l1.detach().sum(),
            "G/kl": kl.detach().sum(),
        }
        return loss, stats

    def targets(self, cat: torch.Tensor) -> torch.Tensor:
        """``[n]`` bool: which cases of a micro-batch (categorical codes ``cat [n, n_cat]``) are
        reconstruction targets (none of the ``loss.recon_exclude`` codes)."""
        keep = torch.ones(cat.shape[0], dtype=torch.bool, device=cat.device)
        for col, code in self.tables.get("recon_excluded", torch.zeros(0, 2)).long().tolist():
            keep &= cat[:, col] != code
        return keep

    def image_l1(
        self, img: torch.Tensor, real_img: torch.Tensor, real_mask: torch.Tensor
    ) -> torch.Tensor:
        """Per-case image L1 of a reconstruction, ``[n]``.

        Plain: the mean over every voxel and modality. ``loss.recon_img_balanced``: the mean of
        the L1 within each mask class the real case has (background, core, edema, enhancing),
        so that the intensities of a 30-voxel necrotic core count as much as the brain's.
        """
        err = (img - real_img).abs().mean(1)  # [n, *S]
        if not self.balanced:
            return err.flatten(1).mean(1)
        m = real_mask.flatten(2)  # [n, 4, V]
        count = m.sum(2)  # [n, 4]
        per_class = (m * err.flatten(1).unsqueeze(1)).sum(2) / count.clamp_min(1.0)
        present = (count > 0).to(err.dtype)
        return (per_class * present).sum(1) / present.sum(1).clamp_min(1.0)

    def loss(self, inputs: TermInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The reconstruction of the micro-batch's real cases."""
        return self.reconstruct(inputs.mb, inputs.net)
