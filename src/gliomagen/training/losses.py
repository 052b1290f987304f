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
continuous ones. With ``model.d_mask=straight_through`` D sees the generated mask as the one-hot
of its argmax (as real masks are one-hot) while G receives the gradient of the softmax.

:class:`StyleGANLoss.accumulate_gradients` runs one phase (``"G"`` or ``"D"``) on one micro-batch
and calls ``backward``; the caller all-reduces and steps the optimisers. Every other objective (the
mask-statistics penalties, the VAE-GAN reconstruction) is a training term
(:mod:`gliomagen.training.terms`): each phase adds ``weight * value`` of its terms.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from gliomagen.models.augment import AugmentPipe
from gliomagen.models.discriminator import DOutput
from gliomagen.training.batches import MicroBatch
from gliomagen.training.terms import Term, TermInputs, build_terms

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
        terms: the training terms each phase adds (:func:`gliomagen.training.terms.build_terms`);
            ``None``: those of ``cfg`` that need no table from the training data.
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
        terms: Sequence[Term] | None = None,
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
        self.seg: Any = getattr(D, "seg", None)  # label consistency's segmenter (loss.seg_weight)
        self.terms = list(terms) if terms is not None else build_terms(cfg)

    def _add_terms(
        self, phase: str, inputs: TermInputs, loss: torch.Tensor, stats: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """``loss`` plus ``weight * value`` of each term of ``phase``; their statistics into
        ``stats``."""
        for term in self.terms:
            if term.phase == phase:
                value, term_stats = term.loss(inputs)
                loss = loss + term.weight * value
                stats.update(term_stats)
        return loss

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
            ws, w = self.styles(mb)
            seeds = torch.tensor(mb.noise_seeds, dtype=torch.int64)  # a tensor: no per-value guards
            img, logits = self.synthesis(ws, noise_mode="random", noise_seeds=seeds)
        return img.float(), torch.softmax(logits.float(), dim=1), w.float()

    def styles(self, mb: MicroBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ws [n, num_ws, w_dim], w [n, w_dim])`` of a micro-batch, with its style mixing
        (call it under :attr:`autocast`)."""
        w = self.mapping(mb.z, mb.gen_cat, mb.gen_cont)  # [n, w_dim]
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)  # [n, num_ws, w_dim]
        if mb.mix_z is not None and mb.mix_cutoff is not None:
            w2 = self.mapping(mb.mix_z, mb.gen_cat, mb.gen_cont)
            layer = torch.arange(self.num_ws, device=w.device).reshape(1, -1)
            cutoff = mb.mix_cutoff.to(w.device).reshape(-1, 1)
            take = (layer >= cutoff).unsqueeze(2)  # [n, num_ws, 1]
            ws = torch.where(take, w2.unsqueeze(1), ws)
        return ws, w

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
        if phase == "G":
            loss, stats = self._g_loss(mb)
        elif phase == "D":
            loss, stats = self._d_loss(mb, do_r1)
        else:
            raise ValueError(f"phase must be G or D, got {phase!r}")
        (loss * gain).backward()
        return stats

    def _g_loss(self, mb: MicroBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G's loss on its fakes (adversarial, auxiliary, its terms) and its statistics."""
        c = self.cfg
        stats: dict[str, torch.Tensor] = {}
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
        loss = self._add_terms("G", TermInputs(mb, img, soft, self), loss, stats)
        stats["w_sum"] = w.detach().sum(0)
        return loss, stats

    def _d_loss(self, mb: MicroBatch, do_r1: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's loss on fakes and reals (adversarial, auxiliary, R1 / GP, its terms)."""
        c = self.cfg
        stats: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            fake_img, fake_soft, _ = self._generate(mb)
            fake_mask = self._for_D(fake_soft)
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
        stats["D/real"], stats["D/fake"] = l_real.detach().sum(), l_fake.detach().sum()
        stats["D/score_real"], stats["D/score_fake"] = (
            out_r.score.detach().sum(),
            out_f.score.detach().sum(),
        )
        stats["ada_sign"] = torch.sign(out_r.score.detach() - REAL_SIGN_OFFSET[self.kind]).sum()
        if self.use_aux:
            aux = aux_loss(out_r, mb.real_cat, mb.real_cont, self.cat_sizes)
            loss = loss + c.aux_weight * aux
            stats["D/aux"] = aux.detach() * len(l_real)
        if do_r1:
            r1 = r1_penalty(out_r.score, [real_img, real_mask])
            loss = loss + (r1 * (c.r1_gamma / 2) * c.r1_interval).mean()
            stats["D/r1"] = r1.detach().sum()
        if self.kind == "wgan-gp" and c.gp_weight > 0:
            gp = self._gradient_penalty(mb, fake_img, fake_mask)
            loss = loss + c.gp_weight * gp.mean()
            stats["D/gp"] = gp.detach().sum()
        loss = self._add_terms("D", TermInputs(mb, fake_img, fake_soft, self), loss, stats)
        return loss, stats

    def _gradient_penalty(
        self, mb: MicroBatch, fake_img: torch.Tensor, fake_mask: torch.Tensor
    ) -> torch.Tensor:
        """WGAN-GP ``[n]`` at ``a * real + (1 - a) * fake`` with the micro-batch's ``gp_alpha``."""
        n = len(fake_img)
        alpha = mb.gp_alpha if mb.gp_alpha is not None else torch.rand(n)
        a = alpha.to(fake_img.device).reshape(n, *(1,) * (fake_img.ndim - 1))
        x_img = (a * mb.real_img + (1 - a) * fake_img).requires_grad_(True)
        x_mask = (a * mb.real_mask + (1 - a) * fake_mask).requires_grad_(True)
        out_gp = self.run_D(
            x_img, x_mask, mb.real_cat, mb.real_cont, None, D=self.D_reg, autocast=False
        )
        return gradient_penalty(out_gp.score, [x_img, x_mask])


__all__ = [
    "LOSS_KINDS",
    "REAL_SIGN_OFFSET",
    "MicroBatch",
    "StyleGANLoss",
    "aux_loss",
    "d_adv_loss",
    "g_adv_loss",
    "gradient_penalty",
    "grad_sq_norm",
    "r1_penalty",
]
