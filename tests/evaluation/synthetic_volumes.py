"""Structured synthetic multi-parametric volumes for evaluation tests (no files, fast).

Each case is an ellipsoidal brain (white matter, grey-matter shell, two ventricles) with a
spherical tumour, a smooth bias field and Rician-like noise; four modalities with their own tissue
contrasts; labels ``cohort`` (GLI: cleaner, SSA: noisier and darker T1c) and ``grade`` (HGG: large
tumour with necrosis and an enhancing rim; LGG: small, non-enhancing). Background is exactly -1,
as in a store. Also the degradations used by the sensitivity tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

# tissue -> intensity per modality (t1n, t1c, t2w, t2f), in [-1, 1]
CONTRAST = {
    "wm": (0.55, 0.5, -0.45, -0.2),
    "gm": (0.15, 0.1, 0.05, 0.15),
    "csf": (-0.7, -0.7, 0.85, -0.75),
    "ncr": (-0.5, -0.4, 0.6, 0.3),
    "ed": (-0.1, -0.15, 0.55, 0.75),
    "et": (0.1, 0.9, 0.2, 0.4),
}


def make_case(
    rng: np.random.Generator, size: int, cohort: str, grade: str
) -> tuple[np.ndarray, np.ndarray]:
    """One case: images ``[4, S, S, S]`` float32 and mask ``[S, S, S]`` uint8."""
    g = (
        np.indices((size, size, size)).astype(np.float32) + 0.5
    ) / size * 2 - 1  # [3, S, S, S] in [-1, 1]
    centre = rng.normal(0, 0.03, 3)
    radii = np.array([0.72, 0.85, 0.75]) * rng.uniform(0.88, 1.08, 3)
    r = np.sqrt((((g - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0))
    brain = r < 1.0
    tissue = np.full(brain.shape, "wm", dtype=object)
    tissue[(r > 0.72 + rng.uniform(-0.05, 0.05))] = "gm"
    for side in (-1, 1):
        vc = centre + np.array([side * 0.12, 0.05, 0.1])
        vr = np.array([0.07, 0.25, 0.12]) * rng.uniform(0.8, 1.3)
        tissue[
            np.sqrt((((g - vc[:, None, None, None]) / vr[:, None, None, None]) ** 2).sum(0)) < 1
        ] = "csf"
    mask = np.zeros(brain.shape, np.uint8)
    tc = centre + rng.uniform(-0.3, 0.3, 3) * np.array([1, 1, 0.6])
    dist = np.sqrt(((g - tc[:, None, None, None]) ** 2).sum(0))
    rad = rng.uniform(0.22, 0.32) if grade == "HGG" else rng.uniform(0.12, 0.2)
    ed = (dist < rad * 1.6) & brain
    mask[ed] = 2
    tissue[ed] = "ed"
    if grade == "HGG":
        core = (dist < rad) & brain
        mask[core] = 3
        tissue[core] = "et"
        nec = (dist < rad * 0.6) & brain
        mask[nec] = 1
        tissue[nec] = "ncr"
    else:
        core = (dist < rad) & brain
        mask[core] = 1
        tissue[core] = "ncr"
    noise = 0.03 if cohort == "GLI" else 0.08
    images = np.full((4, size, size, size), -1.0, np.float32)
    bias = ndimage.gaussian_filter(rng.normal(0, 1, (size,) * 3), size / 4)
    bias = 1 + 0.05 * bias / (np.abs(bias).max() + 1e-6)
    for c in range(4):
        vol = np.zeros(brain.shape, np.float32)
        for name, values in CONTRAST.items():
            v = values[c] - (0.15 if (cohort == "SSA" and c == 1) else 0.0)
            vol[tissue == name] = v + rng.normal(0, 0.02)
        vol = ndimage.gaussian_filter(vol, 0.6) * bias + rng.normal(0, noise, vol.shape)
        images[c][brain] = np.clip(vol[brain], -0.97, 1.0)
    mask[~brain] = 0
    return images, mask


def make_cohort(
    n: int,
    size: int = 24,
    seed: int = 0,
    p_ssa: float = 0.5,
    p_hgg: float = 0.5,
    prefix: str = "CASE",
) -> tuple[np.ndarray, np.ndarray, list[str], list[dict[str, Any]]]:
    """``n`` cases: images ``[N, 4, S, S, S]``, masks ``[N, S, S, S]``, ids and labels."""
    rng = np.random.default_rng(seed)
    imgs, masks, labels = [], [], []
    for i in range(n):
        cohort = "SSA" if (i % 2 == 1 if p_ssa == 0.5 else rng.random() < p_ssa) else "GLI"
        grade = "HGG" if ((i // 2) % 2 == 0 if p_hgg == 0.5 else rng.random() < p_hgg) else "LGG"
        im, m = make_case(rng, size, cohort, grade)
        imgs.append(im)
        masks.append(m)
        labels.append({"cohort": cohort, "grade": grade})
    ids = [f"{prefix}-{i:05d}" for i in range(n)]
    return np.stack(imgs), np.stack(masks), ids, labels


def degrade(images: np.ndarray, kind: str, level: float, seed: int = 0) -> np.ndarray:
    """Degrade images ``[N, 4, S, S, S]`` inside the brain: ``noise`` (std), ``blur`` (sigma, voxels),
    ``swap`` (fraction of cases whose t1c/t2f and t1n/t2w channels are exchanged)."""
    rng = np.random.default_rng(seed)
    out = images.copy()
    brain = (images > -0.98).any(axis=1, keepdims=True)  # [N, 1, S, S, S]
    brain_c = np.broadcast_to(brain, images.shape)
    if kind == "noise":
        out = out + rng.normal(0, level, out.shape).astype(np.float32)
    elif kind == "blur":
        out = np.stack(
            [[ndimage.gaussian_filter(ch, level) for ch in case] for case in out]
        ).astype(np.float32)
    elif kind == "swap":
        k = int(round(level * len(out)))
        for i in rng.choice(len(out), k, replace=False):
            out[i] = out[i][[3, 2, 1, 0]]
    else:
        raise ValueError(kind)
    out = np.where(brain_c, np.clip(out, -0.97, 1.0), -1.0).astype(np.float32)
    return out
