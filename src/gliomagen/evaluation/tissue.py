"""Per-case tumour-mask statistics and intensity histograms per tissue label; realism tests on them.

* Mask realism: whole-tumour volume in ml (labels 1-3 times the voxel volume of the grid) and
  enhancing fraction (label 3 over labels 1-3), synthetic against real, compared with the
  two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) and the Wasserstein-1 distance.
* Tumour structure (:func:`structure_statistics`, :func:`tissue_contrast`,
  :func:`structure_distance`): per case the whole-tumour size (log of its voxel count), the
  enhancing and necrotic shares of the tumour, the share of the tumour in its largest 26-connected
  component and, with the images, each tumour tissue's mean intensity minus the normal brain's in
  every modality (an enhancing region bright on T1Gd); per condition, the Wasserstein-1 distance
  of each between synthetic and real cases, in units of the real cases' spread. A tumour that
  vanishes, breaks into specks, grows the wrong inner structure for its condition (an enhancing
  region in an LGG) or the wrong contrast raises it. Validation can rank checkpoints by it
  (``train.val_metric=mask``).
* Intensity histograms: per modality, of the voxels of each tissue label (``brain`` = label 0
  inside the brain, ``ncr``, ``ed``, ``et``), on 50 bins over [-1, 1]; synthetic against real by
  the Wasserstein-1 distance between the histograms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.ndimage
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


STRUCTURE_STATS: tuple[str, ...] = (
    "log_tumour_voxels",
    "enhancing_share",
    "necrotic_share",
    "main_component_share",
)
"""Per-case statistics of :func:`structure_statistics`."""
MIN_SPREAD = 0.05  # floor of a statistic's real spread (a statistic constant over the real cases)
_FULL = np.ones((3, 3, 3), dtype=bool)


def structure_statistics(masks: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """Per case: the tumour's size and inner structure, defined for every case with a mask.

    Args:
        masks: ``[B, D, H, W]`` (or ``[B, H, W]``) labels 0..3; a case whose every voxel is 255 (no
            mask) gets NaN everywhere.

    Returns:
        ``{name: [B] float64}`` for each of :data:`STRUCTURE_STATS`: ``log_tumour_voxels`` =
        ``log(1 + voxels of labels 1-3)``; ``enhancing_share`` and ``necrotic_share`` = voxels of
        label 3 (label 1) over the tumour's voxels; ``main_component_share`` = the tumour's share in
        its largest 26-connected (8 in 2-D) component. A case without tumour has 0 for all four: no
        tumour counts as the smallest, least enhancing and most scattered one, not as missing.
    """
    m = masks.numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    out = {k: np.zeros(len(m), dtype=np.float64) for k in STRUCTURE_STATS}
    full = _FULL if m.ndim == 4 else _FULL[1]
    for i, case in enumerate(m):
        if bool((case == NO_MASK).all()):
            for k in STRUCTURE_STATS:
                out[k][i] = np.nan
            continue
        tumour = (case >= 1) & (case <= 3)
        n = int(tumour.sum())
        out["log_tumour_voxels"][i] = np.log1p(n)
        if n == 0:
            continue
        out["enhancing_share"][i] = float((case == 3).sum()) / n
        out["necrotic_share"][i] = float((case == 1).sum()) / n
        lab, k = scipy.ndimage.label(tumour, structure=full)
        out["main_component_share"][i] = float(np.bincount(lab.ravel())[1:].max()) / n if k else 0.0
    return out


CONTRAST_TISSUES: dict[str, int] = {t: label for label, t in enumerate(TISSUES) if label}
"""Tumour tissues of :func:`tissue_contrast` and their labels."""


def tissue_contrast(
    images: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, modalities: Sequence[str]
) -> dict[str, np.ndarray]:
    """Per case and modality: each tumour tissue's mean intensity minus the normal brain's.

    Args:
        images: ``[B, C, *S]`` in [-1, 1].
        masks: ``[B, *S]`` labels 0..3 (255: no mask).
        modalities: the ``C`` channel names.

    Returns:
        ``{"contrast_<modality>_<tissue>": [B] float64}`` for every modality and tissue of
        :data:`CONTRAST_TISSUES`; NaN where the case has no voxel of that tissue or of normal brain
        (label 0 inside :func:`~gliomagen.evaluation.similarity.brain_mask`).
    """
    img = torch.as_tensor(images).float()
    msk = torch.as_tensor(masks)
    brain = brain_mask(img) & (msk == 0)  # [B, *S]
    out = {
        f"contrast_{m}_{t}": np.full(len(img), np.nan) for m in modalities for t in CONTRAST_TISSUES
    }
    for i in range(len(img)):
        if not bool(brain[i].any()):
            continue
        ref = img[i][:, brain[i]].double().mean(1)  # [C]
        for t, label in CONTRAST_TISSUES.items():
            region = msk[i] == label
            if not bool(region.any()):
                continue
            diff = (img[i][:, region].double().mean(1) - ref).numpy()
            for c, m in enumerate(modalities):
                out[f"contrast_{m}_{t}"][i] = float(diff[c])
    return out


def structure_distance(
    real: dict[str, np.ndarray],
    real_groups: dict[str, np.ndarray],
    synthetic: dict[str, np.ndarray],
    synthetic_groups: dict[str, np.ndarray],
    min_real: int = 2,
) -> dict[str, Any]:
    """How far the synthetic cases' tumour structure is from the real cases', per condition.

    For every condition (a key of both group dicts, e.g. ``"grade=LGG"``) with at least
    ``min_real`` real cases and one synthetic case, and every statistic of ``real``: the
    Wasserstein-1 distance between the real and synthetic values of that condition, divided by the
    statistic's standard deviation over all real cases (at least :data:`MIN_SPREAD`). NaNs (no
    mask; a tissue a case lacks) are dropped. The statistics come in two families, the mask's
    (:data:`STRUCTURE_STATS`) and the tissue contrasts (every other key); the value averages each
    family's mean, so the twelve contrasts weigh as much as the four mask statistics.

    Args:
        real, synthetic: outputs of :func:`structure_statistics`, optionally merged with those of
            :func:`tissue_contrast` (the same keys in both).
        real_groups, synthetic_groups: positions of each condition's cases (``CaseSet.groups``);
            pass ``{"all": all positions}`` for a model without categorical conditions.
        min_real: real cases a condition needs to be compared.

    Returns:
        ``{"value": mean over conditions of the family-balanced mean (None when nothing could be
        compared), "groups": {condition: {statistic: distance, "mask": family mean, "contrast":
        family mean (with contrasts), "n_real": int, "n_synthetic": int}}}``.
    """
    spread = {}
    for k in real:
        r = real[k][np.isfinite(real[k])]
        spread[k] = max(float(r.std()) if len(r) > 1 else 0.0, MIN_SPREAD)
    groups: dict[str, Any] = {}
    values = []
    for key, pr in real_groups.items():
        ps = synthetic_groups.get(key)
        if ps is None or len(ps) == 0:
            continue
        entry: dict[str, Any] = {}
        for k in real:
            r, s = real[k][pr], synthetic[k][ps]
            r, s = r[np.isfinite(r)], s[np.isfinite(s)]
            if len(r) < min_real or len(s) == 0:
                continue
            entry[k] = float(scipy.stats.wasserstein_distance(r, s)) / spread[k]
        families = {
            "mask": [v for k, v in entry.items() if k in STRUCTURE_STATS],
            "contrast": [v for k, v in entry.items() if k not in STRUCTURE_STATS],
        }
        means = {f: float(np.mean(v)) for f, v in families.items() if v}
        if means:
            values.append(float(np.mean(list(means.values()))))
            entry.update(means)
            entry["n_real"], entry["n_synthetic"] = int(len(pr)), int(len(ps))
            groups[key] = entry
    return {"value": float(np.mean(values)) if values else None, "groups": groups}


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
