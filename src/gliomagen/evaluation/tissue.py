"""Per-case tumour-mask statistics and intensity histograms per tissue label; realism tests on them.

* Mask realism: whole-tumour volume in ml (labels 1-3 times the voxel volume of the grid) and
  enhancing fraction (label 3 over labels 1-3), synthetic against real, compared with the
  two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) and the Wasserstein-1 distance.
* Intensity histograms: per modality, of the voxels of each tissue label (``brain`` = label 0
  inside the brain, ``ncr``, ``ed``, ``et``), on 50 bins over [-1, 1]; synthetic against real by
  the Wasserstein-1 distance between the histograms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.stats
import torch

from gliomagen.evaluation.cases import NO_MASK
from gliomagen.evaluation.similarity import brain_mask

TISSUES: tuple[str, ...] = ("brain", "ncr", "ed", "et")
N_BINS = 50
BIN_EDGES = np.linspace(-1.0, 1.0, N_BINS + 1)
BIN_CENTRES = (BIN_EDGES[:-1] + BIN_EDGES[1:]) / 2


def mask_statistics(masks: torch.Tensor, voxel_ml: float) -> dict[str, np.ndarray]:
    """Per case: ``wt_volume_ml`` and ``enhancing_fraction`` (NaN without mask or tumour).

    Args:
        masks: ``[B, D, H, W]`` labels 0..3, 255 where a case has no mask.
        voxel_ml: volume of one voxel in ml.
    """
    flat = masks.flatten(1)
    has = ~(flat == NO_MASK).all(1)
    wt = ((flat >= 1) & (flat <= 3)).sum(1).double()
    et = (flat == 3).sum(1).double()
    vol = torch.where(has, wt * voxel_ml, torch.full_like(wt, float("nan")))
    frac = torch.where(has & (wt > 0), et / wt.clamp_min(1), torch.full_like(wt, float("nan")))
    return {"wt_volume_ml": vol.numpy(), "enhancing_fraction": frac.numpy()}


def tissue_histograms(images: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """Per case histograms ``[B, C, len(TISSUES), N_BINS]`` (voxel counts) of each modality per tissue."""
    b, c = images.shape[:2]
    out = np.zeros((b, c, len(TISSUES), N_BINS), dtype=np.float64)
    brain = brain_mask(images)  # [B, D, H, W]
    for i in range(b):
        m = masks[i]
        if bool((m == NO_MASK).all()):
            regions = [brain[i], None, None, None]
        else:
            regions = [brain[i] & (m == 0), m == 1, m == 2, m == 3]
        for t, region in enumerate(regions):
            if region is None or not bool(region.any()):
                continue
            vals = images[i][:, region].numpy()  # [C, n]
            for ch in range(c):
                out[i, ch, t] = np.histogram(np.clip(vals[ch], -1, 1), bins=BIN_EDGES)[0]
    return out


def _summary(x: np.ndarray) -> dict[str, Any]:
    x = x[np.isfinite(x)]
    if not len(x):
        return {"n": 0, "median": None, "q25": None, "q75": None, "values": []}
    return {
        "n": int(len(x)), "median": float(np.median(x)), "q25": float(np.percentile(x, 25)),
        "q75": float(np.percentile(x, 75)), "values": [float(v) for v in x],
    }  # fmt: skip


def compare_distributions(real: np.ndarray, synthetic: np.ndarray) -> dict[str, Any]:
    """Summaries of two samples (NaNs dropped), KS statistic and p-value, Wasserstein-1 distance."""
    out: dict[str, Any] = {
        "real": _summary(real),
        "synthetic": _summary(synthetic),
        "ks": None,
        "ks_p": None,
        "wasserstein": None,
    }
    r, s = real[np.isfinite(real)], synthetic[np.isfinite(synthetic)]
    if len(r) and len(s):
        ks = scipy.stats.ks_2samp(r, s)
        out.update(
            ks=float(ks.statistic),
            ks_p=float(ks.pvalue),
            wasserstein=float(scipy.stats.wasserstein_distance(r, s)),
        )
    return out


def mask_realism(real: dict[str, np.ndarray], synthetic: dict[str, np.ndarray]) -> dict[str, Any]:
    """:func:`compare_distributions` of every mask statistic (outputs of :func:`mask_statistics`)."""
    return {key: compare_distributions(real[key], synthetic[key]) for key in real}


def histogram_comparison(
    real: np.ndarray, synthetic: np.ndarray, modalities: Sequence[str]
) -> dict[str, Any]:
    """Summed histograms of two sets and their Wasserstein-1 distances per modality and tissue.

    Args:
        real: per-case histograms ``[R, C, T, N_BINS]``.
        synthetic: ``[G, C, T, N_BINS]``.
        modalities: channel names.

    Returns:
        ``{"bin_centres", "tissues", "real": {mod: {tissue: density}}, "synthetic": ..., "w1": {mod: {tissue: v}}}``.
    """
    r, s = real.sum(0), synthetic.sum(0)  # [C, T, N_BINS]
    out: dict[str, Any] = {
        "bin_centres": [float(v) for v in BIN_CENTRES],
        "tissues": list(TISSUES),
        "real": {},
        "synthetic": {},
        "w1": {},
    }
    for ch, mod in enumerate(modalities):
        out["real"][mod], out["synthetic"][mod], out["w1"][mod] = {}, {}, {}
        for t, tissue in enumerate(TISSUES):
            hr, hs = r[ch, t], s[ch, t]
            out["real"][mod][tissue] = [float(v) for v in hr / hr.sum()] if hr.sum() else None
            out["synthetic"][mod][tissue] = [float(v) for v in hs / hs.sum()] if hs.sum() else None
            if hr.sum() and hs.sum():
                out["w1"][mod][tissue] = float(
                    scipy.stats.wasserstein_distance(BIN_CENTRES, BIN_CENTRES, hr, hs)
                )
            else:
                out["w1"][mod][tissue] = None
    return out
