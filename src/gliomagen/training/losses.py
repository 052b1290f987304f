"""The GAN objectives. The loss owns the math; the loop owns the schedule.

Per-sample adversarial terms (``score`` = D's raw output):

=============== ================================== ==================================
kind            D loss (real, fake)                G loss (fake)
=============== ================================== ==================================
lsgan           ½(s_r - 1)², ½ s_f²                 ½(s_f - 1)²           (Mao et al. 2017)
nonsaturating   softplus(-s_r), softplus(s_f)      softplus(-s_f)        (Goodfellow et al. 2014)
hinge           relu(1 - s_r), relu(1 + s_f)       -s_f                  (Lim & Ye 2017)
wgan-gp         -s_r + drift·s_r², s_f             -s_f                  (Gulrajani et al. 2017)
=============== ================================== ==================================

Regularisers: R1 ``γ/2 ‖∇_x D(x_real)‖²`` applied lazily every ``r1_interval`` steps with weight
multiplied by the interval (Mescheder et al. 2018; StyleGAN2); the WGAN gradient penalty
``λ (‖∇ D(x̂)‖ - 1)²`` on random interpolates. The auxiliary classification loss (AC-GAN) is the
cross-entropy of each categorical condition (the 'unknown' code ignored) plus the MSE of the
continuous ones. With ``model.d_mask=straight_through`` D sees the generated mask as the one-hot of its
argmax (as real masks are one-hot) while G receives the gradient of the softmax.

:class:`StyleGANLoss.accumulate_gradients` runs one phase (``"G"`` or ``"D"``) on one micro-batch
and calls ``backward``; the caller all-reduces and steps the optimisers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss

from gliomagen.errors import GliomagenError
from gliomagen.models.augment import AugmentPipe
from gliomagen.models.discriminator import DOutput
from gliomagen.models.encoder import kl_standard_normal

LOSS_KINDS = ("lsgan", "nonsaturating", "hinge", "wgan-gp")

REAL_SIGN_OFFSET = {"lsgan": 0.5, "nonsaturating": 0.0, "hinge": 0.0, "wgan-gp": 0.0}
"""Threshold of D's score between 'fake' and 'real' per loss (the ADA heuristic uses its sign)."""


def g_adv_loss(kind: str, fake_score: torch.Tensor) -> torch.Tensor:
    """Per-sample generator loss ``[N]`` from D's scores on generated volumes ``[N]``."""
    s = fake_score.float()
    if kind == "lsgan":
        return 0.5 * (s - 1.0).square()
    if kind == "nonsaturating":
        return F.softplus(-s)
    if kind in ("hinge", "wgan-gp"):
        return -s
    raise ValueError(f"unknown loss kind {kind!r}; expected one of {LOSS_KINDS}")


def d_adv_loss(
    kind: str, real_score: torch.Tensor, fake_score: torch.Tensor, wgan_drift: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample discriminator loss terms ``(real [N], fake [N])``."""
    r, f = real_score.float(), fake_score.float()
    if kind == "lsgan":
        return 0.5 * (r - 1.0).square(), 0.5 * f.square()
    if kind == "nonsaturating":
        return F.softplus(-r), F.softplus(f)
    if kind == "hinge":
        return F.relu(1.0 - r), F.relu(1.0 + f)
    if kind == "wgan-gp":
        return -r + wgan_drift * r.square(), f
    raise ValueError(f"unknown loss kind {kind!r}; expected one of {LOSS_KINDS}")


def grad_sq_norm(score: torch.Tensor, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-sample squared norm ``[N]`` of ``d score.sum() / d inputs`` (graph kept for backward)."""
    grads = torch.autograd.grad(
        score.float().sum(), list(inputs), create_graph=True, only_inputs=True
    )
    return sum(g.float().square().flatten(1).sum(1) for g in grads)  # type: ignore[return-value]


def r1_penalty(score: torch.Tensor, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """R1: per-sample ``‖∇_x D(x)‖²`` ``[N]`` at real inputs (multiply by ``γ/2``)."""
    return grad_sq_norm(score, inputs)


def gradient_penalty(score: torch.Tensor, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """WGAN-GP: per-sample ``(‖∇ D(x̂)‖ - 1)²`` ``[N]`` at interpolated inputs (multiply by ``λ``)."""
    return (grad_sq_norm(score, inputs) + 1e-12).sqrt().sub(1.0).square()


def aux_loss(
    out: DOutput, cat: torch.Tensor, cont: torch.Tensor, cat_sizes: Sequence[int]
) -> torch.Tensor:
    """AC-GAN loss: mean cross-entropy per categorical field + MSE of the continuous fields.

    Args:
        out: D's output with ``cat_logits`` (one ``[N, n_categories]`` per field) and ``cont_pred``.
        cat: ``[N, n_cat]`` codes; the code ``n_categories`` ('unknown') is ignored.
        cont: ``[N, n_cont]`` standardised values.
        cat_sizes: embedding sizes (categories + 1) per field.

    Returns:
        A scalar (0 when D has no auxiliary head).
    """
    total = out.score.new_zeros(())
    for i, logits in enumerate(out.cat_logits):
        target = cat[:, i]
        valid = target < cat_sizes[i] - 1
        if bool(valid.any()):
            total = total + F.cross_entropy(logits.float()[valid], target[valid])
    if out.cont_pred is not None and cont.shape[1]:
        total = total + F.mse_loss(out.cont_pred.float(), cont.float())
    return total


def _float_output(out: DOutput) -> DOutput:
    return DOutput(
        out.score.float(),
        tuple(c.float() for c in out.cat_logits),
        None if out.cont_pred is None else out.cont_pred.float(),
    )


@dataclass
class MicroBatch:
    """Everything one phase on one micro-batch needs; all randomness drawn beforehand.

    Attributes:
        real_img: ``[n, C, *S]`` real images in [-1, 1].
        real_mask: ``[n, 4, *S]`` one-hot real masks.
        real_cat / real_cont: the real cases' conditions.
        z: ``[n, z_dim]`` latents; ``gen_cat`` / ``gen_cont``: their conditions.
        noise_seeds: one noise seed per generated sample.
        aug_real / aug_fake: augmentation parameters (``None`` = no augmentation).
        mix_z: ``[n, z_dim]`` second latents for style mixing; ``mix_cutoff``: ``[n]`` first layer
            taking ``mix_z`` (``num_ws`` = no mixing). ``None`` = no mixing.
        gp_alpha: ``[n]`` interpolation weights of the gradient penalty.
    """

    real_img: torch.Tensor
    real_mask: torch.Tensor
    real_cat: torch.Tensor
    real_cont: torch.Tensor
    z: torch.Tensor
    gen_cat: torch.Tensor
    gen_cont: torch.Tensor
    noise_seeds: list[int]
    aug_real: dict[str, torch.Tensor] | None = None
    aug_fake: dict[str, torch.Tensor] | None = None
    mix_z: torch.Tensor | None = None
    mix_cutoff: torch.Tensor | None = None
    gp_alpha: torch.Tensor | None = None


def _bound_by_code(table: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
    """Look up a per-code bound ``table [n_cat, n_codes]`` (NaN: no bound) for each sample's codes
    ``cat [n, n_cat]`` -> ``[n, n_cat]`` with 0 where there is no bound: codes no training case
    has, the 'unknown' slot included, set none."""
    cat = cat.to(table.device)
    width = max(table.shape[1], int(cat.max()) + 1 if cat.numel() else 0)
    padded = F.pad(table.float(), (0, width - table.shape[1]), value=float("nan"))
    cols = torch.arange(table.shape[0], device=table.device)
    return torch.nan_to_num(padded, nan=0.0)[cols.unsqueeze(0), cat]


class StyleGANLoss:
    """Runs G and D for one phase and accumulates gradients.

    Args:
        G: the generator.
        D: the discriminator.
        cfg: the run configuration (``loss`` section used).
        augment: the augmentation pipeline, or ``None``.
        autocast: a factory of the autocast context (``contextlib.nullcontext`` on CPU).
        cat_sizes: embedding sizes of the categorical conditions.
        compile: run G's mapping and synthesis and D's main passes through ``torch.compile``
            (the modules themselves, their state_dicts and the R1/GP passes stay plain).
        tumour_floor: ``[n_cat, n_codes]`` the smallest real tumour share by condition
            (:meth:`TrainingData.tumour_floor`), needed when ``loss.presence_weight > 0``.
        focal_floor: ``[n_cat, n_codes]`` the smallest share of a real tumour in its largest
            lesion by condition (:meth:`TrainingData.focal_floor`), needed when
            ``loss.focality_weight > 0``.
    """

    def __init__(
        self,
        G: Any,
        D: Any,
        cfg: Any,
        augment: AugmentPipe | None,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]],
        cat_sizes: Sequence[int],
        compile: bool = False,
        tumour_floor: torch.Tensor | None = None,
        focal_floor: torch.Tensor | None = None,
    ) -> None:
        self.num_ws = G.num_ws
        self.mapping: Any = torch.compile(G.mapping) if compile else G.mapping
        self.synthesis: Any = torch.compile(G.synthesis) if compile else G.synthesis
        self.D: Any = torch.compile(D) if compile else D
        self.D_reg = D
        self.cfg = cfg.loss
        self.kind = cfg.loss.kind
        self.augment = augment
        self.autocast = autocast
        self.cat_sizes = list(cat_sizes)
        self.use_aux = bool(cfg.model.aux_classifier) and cfg.loss.aux_weight > 0
        self.straight_through = getattr(cfg.model, "d_mask", "soft") == "straight_through"
        self.encoder: Any = getattr(G, "encoder", None)
        self._dice = DiceLoss(include_background=False, softmax=True, reduction="none")
        self.recon_img_balanced = bool(getattr(cfg.loss, "recon_img_balanced", False))
        self.kl_scale = 1.0  # the KL weight's share this step (set by the loop: loss.kl_warmup_steps)
        # the mask-statistics terms: each reads a per-condition table taken from the store
        self.presence_weight = float(getattr(cfg.loss, "presence_weight", 0.0))
        self.presence_floor = float(getattr(cfg.loss, "presence_floor", 0.5))
        self.focality_weight = float(getattr(cfg.loss, "focality_weight", 0.0))
        self.tumour_floor = tumour_floor
        self.focal_floor = focal_floor
        for name, weight, table in (
            ("presence", self.presence_weight, tumour_floor),
            ("focality", self.focality_weight, focal_floor),
        ):
            if weight > 0 and (table is None or table.shape[0] == 0):
                raise GliomagenError(
                    f"loss.{name}_weight needs a categorical condition (data.conditions has none)"
                )

    def presence_loss(self, probs: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """Tumour presence: each sample should hold at least a tumour of ``k`` voxels.

        ``k = ceil(presence_floor x V x m)``, ``V`` voxels and ``m`` the smallest training tumour
        share among the cases that share a categorical code with the sample, the largest such
        bound over the conditions (each is a lower bound the real cases respect; the largest is
        the tightest). The term is the mean of ``1 - p(tumour)`` over the sample's ``k`` voxels
        most likely to be tumour. It is zero once the sample has ``k`` sure tumour voxels, so
        samples with a tumour of their condition's size feel nothing, and a sample whose tumour
        vanished or shrank is pulled where its tumour probability is already highest (it grows a
        tumour there, rather than specks everywhere, as a pull on every voxel would). Averaged
        over the samples; codes no training case has, or whose smallest case has no tumour, set
        no bound.

        Args:
            probs: ``[n, 4, *S]`` G's (soft) mask probabilities.
            cat: ``[n, n_cat]`` the samples' categorical codes.
        """
        assert self.tumour_floor is not None
        tumour = 1.0 - probs.float()[:, 0].flatten(1)  # [n, V]
        n_vox = tumour.shape[1]
        share = _bound_by_code(self.tumour_floor, cat).amax(1)  # [n]
        ks = (share * self.presence_floor * n_vox).ceil().clamp(0, n_vox).long().tolist()
        terms = [1.0 - tumour[i].topk(k).values.mean() for i, k in enumerate(ks) if k >= 1]
        return torch.stack(terms).mean() if terms else tumour.sum() * 0.0

    def focality_loss(self, probs: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """Focality: tumour outside each sample's largest lesion, beyond what the real cases have.

        Per sample, the argmax tumour (labels 1-3) is split into 26-connected lesions (no
        gradient; :func:`scipy.ndimage.label`). ``s`` is the tumour
        probability ``1 - p(bg)`` summed over the voxels of the lesions other than the largest,
        divided by that probability summed over all the argmax tumour; the term is
        ``max(0, s - (1 - f))`` with ``f`` the smallest share of a real tumour in its largest
        lesion among the training cases sharing a categorical code with the sample (the largest
        such bound over the conditions). With unifocal training cases (``f = 1``) every satellite
        voxel is pulled to background; multifocal cases loosen the bound. Averaged over the
        samples; one lesion or none gives 0. The labelling runs on the CPU (a small copy of the
        argmax per step).

        Args:
            probs: ``[n, 4, *S]`` G's (soft) mask probabilities.
            cat: ``[n, n_cat]`` the samples' categorical codes.
        """
        assert self.focal_floor is not None
        allow = 1.0 - _bound_by_code(self.focal_floor, cat).amax(1).to(probs.device)  # [n]
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

    # -- forward helpers ---------------------------------------------------------------------
    def run_G(self, mb: MicroBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generate ``(images, mask probabilities, w)`` for a micro-batch (with style mixing);
        under ``model.d_mask=straight_through`` the probabilities are argmax one-hots carrying
        the softmax's gradient."""
        img, probs, w = self._generate(mb)
        return img, self._for_D(probs), w

    def _for_D(self, probs: torch.Tensor) -> torch.Tensor:
        """The mask D sees: ``probs``, or under ``straight_through`` the argmax one-hot that
        carries the softmax's gradient."""
        if not self.straight_through:
            return probs
        hard = F.one_hot(probs.argmax(1), probs.shape[1]).movedim(-1, 1).to(probs.dtype)
        return hard + probs - probs.detach()

    def _generate(self, mb: MicroBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images, soft mask probabilities, w)`` for a micro-batch (with style mixing)."""
        with self.autocast():
            w = self.mapping(mb.z, mb.gen_cat, mb.gen_cont)  # [n, w_dim]
            ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)  # [n, num_ws, w_dim]
            if mb.mix_z is not None and mb.mix_cutoff is not None:
                w2 = self.mapping(mb.mix_z, mb.gen_cat, mb.gen_cont)
                layer = torch.arange(self.num_ws, device=w.device).reshape(1, -1)
                cutoff = mb.mix_cutoff.to(w.device).reshape(-1, 1)
                take = (layer >= cutoff).unsqueeze(2)  # [n, num_ws, 1]
                ws = torch.where(take, w2.unsqueeze(1), ws)
            seeds = torch.tensor(mb.noise_seeds, dtype=torch.int64)  # a tensor: no per-value guards
            img, logits = self.synthesis(ws, noise_mode="random", noise_seeds=seeds)
        return img.float(), torch.softmax(logits.float(), dim=1), w.float()

    def run_D(
        self,
        img: torch.Tensor,
        mask: torch.Tensor,
        cat: torch.Tensor,
        cont: torch.Tensor,
        aug: dict[str, torch.Tensor] | None,
        D: Any = None,
        autocast: bool = True,
    ) -> DOutput:
        """Augment (when ``aug``) and judge."""
        D = self.D if D is None else D
        if self.augment is not None and aug is not None:
            img, mask = self.augment.apply(img, mask, aug)
        ctx = self.autocast() if autocast else contextlib.nullcontext()
        with ctx:
            out = D(img, mask, cat, cont)
        return _float_output(out)

    def _reconstruction(self, mb: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """VAE-GAN terms: encode the reals, regenerate them under their conditions, compare.

        Returns the weighted sum ``recon_weight * (CE + soft Dice of the tumour classes)(mask) +
        recon_img_weight * L1(images) + kl_weight * kl_scale * KL`` (``kl_scale`` < 1 during
        ``loss.kl_warmup_steps``) (L1 class-balanced with
        ``loss.recon_img_balanced``, see :meth:`_image_l1`) (means over the micro-batch) and its
        parts summed over the micro-batch. The Dice is MONAI's ``DiceLoss`` per case.
        """
        c, enc = self.cfg, self.encoder
        assert enc is not None
        real_img, real_mask = mb.real_img.detach(), mb.real_mask.detach()
        with self.autocast():
            mu, logvar = enc(real_img, real_mask)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation
            w = self.mapping(z, mb.real_cat, mb.real_cont, prior=False)  # z is encoded
            ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
            seeds = torch.tensor(mb.noise_seeds, dtype=torch.int64)
            img, logits = self.synthesis(ws, noise_mode="random", noise_seeds=seeds)
        n = len(mu)
        ce = F.cross_entropy(logits.float(), real_mask.argmax(1), reduction="none")
        ce = ce.flatten(1).mean(1)  # [n]
        # a tumour is a few percent of the volume: the soft Dice of the tumour classes makes its
        # inner structure (a small necrotic core, a thin enhancing rim) weigh as much as the rest
        dice = self._dice(logits.float(), real_mask).flatten(1).mean(1)  # [n]
        l1 = self._image_l1(img.float(), real_img, real_mask)  # [n]
        kl = kl_standard_normal(mu, logvar)  # [n]
        kl_w = c.kl_weight * self.kl_scale
        loss = (c.recon_weight * (ce + dice) + c.recon_img_weight * l1 + kl_w * kl).mean()
        stats = {
            "G/recon_ce": ce.detach().sum(),
            "G/recon_dice": dice.detach().sum(),
            "G/recon_l1": l1.detach().sum(),
            "G/kl": kl.detach().sum(),
        }
        assert n == len(ce)
        return loss, stats

    def _image_l1(
        self, img: torch.Tensor, real_img: torch.Tensor, real_mask: torch.Tensor
    ) -> torch.Tensor:
        """Per-case image L1 of a reconstruction, ``[n]``.

        Plain: the mean over every voxel and modality. ``loss.recon_img_balanced``: the mean of
        the L1 within each mask class the real case has (background, core, edema, enhancing),
        so that the intensities of a 30-voxel necrotic core count as much as the brain's.
        """
        err = (img - real_img).abs().mean(1)  # [n, *S]
        if not self.recon_img_balanced:
            return err.flatten(1).mean(1)
        m = real_mask.flatten(2)  # [n, 4, V]
        count = m.sum(2)  # [n, 4]
        per_class = (m * err.flatten(1).unsqueeze(1)).sum(2) / count.clamp_min(1.0)
        present = (count > 0).to(err.dtype)
        return (per_class * present).sum(1) / present.sum(1).clamp_min(1.0)

    # -- phases ------------------------------------------------------------------------------
    def accumulate_gradients(
        self, phase: str, mb: MicroBatch, gain: float, do_r1: bool = False
    ) -> dict[str, torch.Tensor]:
        """Run one phase on one micro-batch and ``backward(gain * loss)``.

        Args:
            phase: ``"G"`` (generator step) or ``"D"`` (discriminator step, with R1 when ``do_r1``).
            mb: the micro-batch.
            gain: weight of this micro-batch in the step's mean (``1 / grad_accum``).
            do_r1: add the lazy R1 term (``γ/2 · r1_interval``) this step.

        Returns:
            Detached statistics (sums over the micro-batch, to be all-reduced and averaged).
        """
        c = self.cfg
        stats: dict[str, torch.Tensor] = {}
        if phase == "G":
            img, soft, w = self._generate(mb)
            mask = self._for_D(soft)
            out = self.run_D(img, mask, mb.gen_cat, mb.gen_cont, mb.aug_fake)
            adv = g_adv_loss(self.kind, out.score)
            loss = adv.mean()
            stats["G/adv"] = adv.detach().sum()
            if self.use_aux:
                aux = aux_loss(out, mb.gen_cat, mb.gen_cont, self.cat_sizes)
                loss = loss + c.aux_weight * aux
                stats["G/aux"] = aux.detach() * len(adv)
            for name, weight, term, probs in (  # the mask-statistics terms
                ("presence", self.presence_weight, self.presence_loss, soft),
                ("focality", self.focality_weight, self.focality_loss, soft),
            ):
                if weight > 0:
                    value = term(probs, mb.gen_cat)
                    loss = loss + weight * value
                    stats[f"G/{name}"] = value.detach() * len(adv)
            if self.encoder is not None:
                rec, rec_stats = self._reconstruction(mb)
                loss = loss + rec
                stats.update(rec_stats)
            (loss * gain).backward()
            stats["w_sum"] = w.detach().sum(0)
            return stats
        if phase != "D":
            raise ValueError(f"phase must be G or D, got {phase!r}")
        with torch.no_grad():
            fake_img, fake_mask, _ = self.run_G(mb)
        out_f = self.run_D(fake_img, fake_mask, mb.gen_cat, mb.gen_cont, mb.aug_fake)
        real_img, real_mask = mb.real_img.detach(), mb.real_mask.detach()
        if do_r1:
            real_img, real_mask = real_img.requires_grad_(True), real_mask.requires_grad_(True)
        out_r = self.run_D(
            real_img,
            real_mask,
            mb.real_cat,
            mb.real_cont,
            mb.aug_real,
            D=self.D_reg if do_r1 else None,
            autocast=not do_r1,
        )
        l_real, l_fake = d_adv_loss(self.kind, out_r.score, out_f.score, c.wgan_drift)
        loss = (l_real + l_fake).mean()
        n = len(l_real)
        stats["D/real"], stats["D/fake"] = l_real.detach().sum(), l_fake.detach().sum()
        stats["D/score_real"], stats["D/score_fake"] = (
            out_r.score.detach().sum(),
            out_f.score.detach().sum(),
        )
        stats["ada_sign"] = torch.sign(out_r.score.detach() - REAL_SIGN_OFFSET[self.kind]).sum()
        if self.use_aux:
            aux = aux_loss(out_r, mb.real_cat, mb.real_cont, self.cat_sizes)
            loss = loss + c.aux_weight * aux
            stats["D/aux"] = aux.detach() * n
        if do_r1:
            r1 = r1_penalty(out_r.score, [real_img, real_mask])
            loss = loss + (r1 * (c.r1_gamma / 2) * c.r1_interval).mean()
            stats["D/r1"] = r1.detach().sum()
        if self.kind == "wgan-gp" and c.gp_weight > 0:
            alpha = mb.gp_alpha if mb.gp_alpha is not None else torch.rand(n)
            a = alpha.to(fake_img.device).reshape(n, *(1,) * (fake_img.ndim - 1))
            x_img = (a * mb.real_img + (1 - a) * fake_img).requires_grad_(True)
            x_mask = (a * mb.real_mask + (1 - a) * fake_mask).requires_grad_(True)
            out_gp = self.run_D(
                x_img, x_mask, mb.real_cat, mb.real_cont, None, D=self.D_reg, autocast=False
            )
            gp = gradient_penalty(out_gp.score, [x_img, x_mask])
            loss = loss + c.gp_weight * gp.mean()
            stats["D/gp"] = gp.detach().sum()
        (loss * gain).backward()
        return stats
