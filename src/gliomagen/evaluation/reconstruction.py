"""Reconstruction audit: project held-out real cases into a generator's ``w`` space.

A generator has no paired target, so SSIM and MSE between a synthetic case and some real case say
little. What they can measure is how well the generator *can* produce a real case it never saw:
each held-out case is projected by optimising a per-layer latent ``ws [1, num_ws, w_dim]`` (W+),
started at the mean ``w`` of the case's own conditions, to minimise the squared error inside the
brain plus a small cross-entropy on the tumour mask (when the case has one), with constant noise.
The reconstruction is then scored by SSIM, MS-SSIM, PSNR and MSE inside the brain, and by the
Dice overlap of the whole tumour.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.cases import NO_MASK, CaseSet
from gliomagen.evaluation.similarity import brain_mask, ms_ssim, mse, psnr, ssim
from gliomagen.models.loading import load_generator

MASK_WEIGHT = 0.1
W_MEAN_SAMPLES = 64


def _load(checkpoint: str | os.PathLike[str], device: torch.device) -> tuple[Any, Any]:
    G, schema, _config, _meta = load_generator(checkpoint, device=device)
    for attr in ("mapping", "synthesis", "num_ws", "w_dim", "z_dim"):
        if not hasattr(G, attr):
            raise GliomagenError(
                f"--checkpoint {checkpoint}: the generator has no {attr!r}; cannot project into w space"
            )
    return G, schema


def _mean_w(G: Any, cat: torch.Tensor, cont: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(W_MEAN_SAMPLES, G.z_dim, generator=gen).to(cat.device)
    with torch.no_grad():
        w = G.mapping(
            z, cat.expand(W_MEAN_SAMPLES, -1), cont.expand(W_MEAN_SAMPLES, -1)
        )  # [S, w_dim]
    return w.mean(0, keepdim=True)  # [1, w_dim]


def _dice(a: torch.Tensor, b: torch.Tensor) -> float | None:
    total = int(a.sum() + b.sum())
    return None if total == 0 else float(2 * (a & b).sum() / total)


def project(
    G: Any,
    image: torch.Tensor,
    mask: torch.Tensor | None,
    cat: torch.Tensor,
    cont: torch.Tensor,
    *,
    steps: int,
    lr: float,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Optimise W+ latents so that ``G.synthesis`` reproduces one case.

    Args:
        G: generator with ``mapping``, ``synthesis``, ``num_ws``.
        image: ``[1, C, D, H, W]`` in [-1, 1].
        mask: ``[1, D, H, W]`` labels 0..3, or ``None``.
        cat: ``[1, n_cat]`` long.
        cont: ``[1, n_cont]`` float.
        steps: Adam steps.
        lr: Adam learning rate.
        seed: seed of the mean-``w`` start.

    Returns:
        ``(reconstructed image [1, C, D, H, W], mask labels [1, D, H, W], final loss)``.
    """
    w0 = _mean_w(G, cat, cont, seed)
    ws = w0.unsqueeze(1).repeat(1, G.num_ws, 1).clone().requires_grad_(True)  # [1, num_ws, w_dim]
    opt = torch.optim.Adam([ws], lr=lr)
    brain = brain_mask(image).unsqueeze(1).float()  # [1, 1, D, H, W]
    loss_value = float("nan")
    for _ in range(steps):
        img, logits = G.synthesis(ws, noise_mode="const")
        loss = (((img - image) ** 2) * brain).sum() / (brain.sum() * image.shape[1]).clamp_min(1)
        if mask is not None:
            loss = loss + MASK_WEIGHT * F.cross_entropy(logits, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = float(loss.detach())
    with torch.no_grad():
        img, logits = G.synthesis(ws, noise_mode="const")
    return img.detach(), logits.argmax(1), loss_value


def reconstruct(
    checkpoint: str | os.PathLike[str],
    real: CaseSet,
    *,
    n_cases: int = 8,
    steps: int = 100,
    lr: float = 0.05,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Project ``n_cases`` held-out cases into the generator's W+ space and score the reconstructions.

    The projection runs on ``device``; the scores are computed on the CPU.

    Returns:
        ``{"n", "steps", "cases": [{case_id, ssim, ms_ssim, psnr, mse, dice_wt, loss}], "mean": {...}}``.
    """
    dev = torch.device(device)
    G, schema = _load(checkpoint, dev)
    size = tuple(int(s) for s in G.synthesis.size)
    if size != tuple(real.spatial) or int(G.synthesis.n_img) != real.shape[0]:
        raise GliomagenError(
            f"--checkpoint {checkpoint}: generator makes {G.synthesis.n_img} x {list(size)} volumes but the real "
            f"cases are {real.shape[0]} x {list(real.spatial)}"
        )
    if steps < 1 or n_cases < 1:
        raise GliomagenError(
            f"reconstruction: steps and cases must be >= 1, got {steps} and {n_cases}"
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(real), min(n_cases, len(real)), replace=False))
    rows = []
    for pos in chosen:
        image, mask = real.load([pos])
        known = {k: v for k, v in real.labels[pos].items() if k in schema}
        cat_np, cont_np = schema.encode(known)
        cat = torch.from_numpy(cat_np).view(1, -1).to(dev)
        cont = torch.from_numpy(cont_np).view(1, -1).to(dev)
        m = None if bool((mask == NO_MASK).all()) else mask
        rec, rec_mask, loss = project(
            G,
            image.to(dev),
            None if m is None else m.to(dev),
            cat,
            cont,
            steps=steps,
            lr=lr,
            seed=seed,
        )
        rec, rec_mask = rec.cpu(), rec_mask.cpu()
        rows.append({
            "case_id": real.case_ids[pos],
            "ssim": float(ssim(rec, image)[0]), "ms_ssim": float(ms_ssim(rec, image)[0]),
            "psnr": float(psnr(rec, image)[0]), "mse": float(mse(rec, image)[0]),
            "dice_wt": None if m is None else _dice(rec_mask[0] > 0, (m[0] > 0) & (m[0] < 4)),
            "loss": loss,
        })  # fmt: skip
    mean = {}
    for key in ("ssim", "ms_ssim", "psnr", "mse", "dice_wt"):
        vals = [r[key] for r in rows if r[key] is not None]
        mean[key] = float(np.mean(vals)) if vals else None
    return {"n": len(rows), "steps": steps, "space": "W+", "cases": rows, "mean": mean}
