"""The conditioning judge: is a generated sample a faithful HGG or LGG, from its own mask and images?

Every sample is judged from its mask (labels 0..3; 1 necrotic core, 2 edema, 3 enhancing) and its
images (``[4, D, H, W]`` in [-1, 1], T1Gd in channel ``T1C``):

* the tumour is the largest 26-connected component of labels {1, 2, 3}; it must hold between
  ``MIN_TUMOUR_FRAC`` and ``MAX_TUMOUR_FRAC`` of the volume and ``MIN_MAIN_FRAC`` of all tumour
  voxels (scattered specks, no tumour, or 'tumour' everywhere fail both grades);
* faithful **HGG**: the component holds an enhancing region (label 3, at least ``MIN_ET`` voxels)
  and a necrotic core (label 1, at least ``MIN_NCR`` voxels); the core's 6-neighbour shell is at
  least ``MIN_RIM`` enhancing (the enhancing rim surrounds the core); the enhancing region is
  bright on T1Gd: its mean T1Gd exceeds that of the normal brain and of the core by ``MIN_ET_CONTRAST``;
* faithful **LGG**: the component exists and the volume holds no enhancing region (no 26-connected
  group of label 3 with ``MIN_ET`` voxels or more).

:func:`judge` judges one sample, :func:`rates` summarises many per grade, :func:`judge_generator`
samples a generator per grade and judges every sample, and :func:`nearest_dice` compares whole
tumours with their nearest training tumour (copying the training set shows as Dice near 1).
``benchmarks/conditioning.py`` runs them over a training run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

MIN_TUMOUR_FRAC = 0.001  # ~33 voxels at 32^3
MAX_TUMOUR_FRAC = 0.25  # phantom tumours stay under 13% of the grid; a "tumour" filling it is none
MIN_MAIN_FRAC = 0.8
MIN_ET = 4
MIN_NCR = 2
MIN_RIM = 0.5
MIN_ET_CONTRAST = 0.1
T1C = 1  # channel of t1c in MODALITIES
FULL = np.ones((3, 3, 3), bool)


def judge(images: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Judge one sample: ``images [4, D, H, W]`` in [-1, 1], ``mask [D, H, W]`` labels 0..3.

    Returns:
        ``{"tumour": bool, "hgg": bool, "lgg": bool, ...measurements}``.
    """
    tumour = mask > 0
    n_tumour = int(tumour.sum())
    lab, n = ndimage.label(tumour, structure=FULL)
    main = np.zeros_like(tumour)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        main = lab == (int(np.argmax(sizes)) + 1)
    n_main = int(main.sum())
    in_range = MIN_TUMOUR_FRAC * mask.size <= n_main <= MAX_TUMOUR_FRAC * mask.size
    has_tumour = in_range and n_main >= MIN_MAIN_FRAC * max(n_tumour, 1)
    et, ncr = main & (mask == 3), main & (mask == 1)
    shell = ndimage.binary_dilation(ncr) & ~ncr
    rim = float((mask[shell] == 3).mean()) if shell.any() else 0.0
    brain = (images[0] > -0.9) & (mask == 0)
    t1c = images[T1C]
    et_c = float(t1c[et].mean()) if et.any() else float("nan")
    bright = bool(
        et.any()
        and brain.any()
        and ncr.any()
        and et_c > float(t1c[brain].mean()) + MIN_ET_CONTRAST
        and et_c > float(t1c[ncr].mean()) + MIN_ET_CONTRAST
    )
    et_all, _ = ndimage.label(mask == 3, structure=FULL)
    et_regions = np.bincount(et_all.ravel())[1:]
    any_et_region = bool((et_regions >= MIN_ET).any())
    hgg = bool(
        has_tumour
        and int(et.sum()) >= MIN_ET
        and int(ncr.sum()) >= MIN_NCR
        and rim >= MIN_RIM
        and bright
    )
    lgg = bool(has_tumour and not any_et_region)
    return {
        "tumour": bool(has_tumour),
        "hgg": hgg,
        "lgg": lgg,
        "n_tumour": n_tumour,
        "n_et": int(et.sum()),
        "n_ncr": int(ncr.sum()),
        "rim": rim,
        # each HGG criterion on its own, to see which one fails
        "ok_et": int(et.sum()) >= MIN_ET,
        "ok_ncr": int(ncr.sum()) >= MIN_NCR,
        "ok_rim": rim >= MIN_RIM,
        "bright": bright,
        "any_et_region": any_et_region,
    }


def rates(results: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Faithful-HGG rate among HGG samples, faithful-LGG among LGG samples, tumour rates."""
    out = {}
    for grade in ("HGG", "LGG"):
        rs = results.get(grade, [])
        out[f"faithful_{grade}"] = (
            float(np.mean([r[grade.lower()] for r in rs])) if rs else float("nan")
        )
        out[f"tumour_{grade}"] = float(np.mean([r["tumour"] for r in rs])) if rs else float("nan")
    hgg = results.get("HGG", [])
    for key in ("ok_et", "ok_ncr", "ok_rim", "bright"):  # what a faithful HGG sample needs
        out[f"HGG_{key}"] = float(np.mean([r[key] for r in hgg])) if hgg else float("nan")
    lgg = results.get("LGG", [])
    out["LGG_any_et_region"] = (
        float(np.mean([r["any_et_region"] for r in lgg])) if lgg else float("nan")
    )
    return out


def _condition_centre(
    w_avg: dict[str, torch.Tensor] | None, cat: torch.Tensor
) -> torch.Tensor | None:
    """Per-sample truncation centres: the checkpoint's mean ``w`` of each sample's condition."""
    if w_avg is None:
        return None
    rows = []
    for c in cat:
        hit = (w_avg["cat"] == c).all(1).nonzero()
        if len(hit) == 0:
            return None
        rows.append(w_avg["w"][int(hit[0])])
    return torch.stack(rows)


@torch.no_grad()
def judge_generator(
    G: Any,
    schema: Any,
    n: int,
    seed: int,
    batch: int = 16,
    psi: float = 1.0,
    w_avg: dict[str, torch.Tensor] | None = None,
    tumours: list[np.ndarray] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Generate ``n`` samples per grade from ``G`` (other conditions unknown/mean) and judge them.

    ``psi < 1`` truncates each ``w`` toward its condition's mean ``w`` (``w_avg`` from the
    checkpoint, as ``gliomagen generate --truncation`` does), or toward the global mean without it.
    ``tumours``: a list that receives each sample's whole-tumour mask (bool ``[D, H, W]``).
    """
    grade = schema["grade"]
    gi = [f.name for f in schema.categorical].index("grade")
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, list[dict[str, Any]]] = {}
    for code, name in enumerate(grade.categories):
        if name not in ("HGG", "LGG"):
            continue
        res = []
        for start in range(0, n, batch):
            b = min(batch, n - start)
            cat = torch.tensor([f.num_embeddings - 1 for f in schema.categorical]).repeat(
                b, 1
            )  # unknown
            cat[:, gi] = code
            cont = torch.zeros(b, len(schema.continuous))
            img, logits = G(
                torch.randn(b, G.z_dim, generator=gen),
                cat,
                cont,
                truncation_psi=psi,
                w_avg=_condition_centre(w_avg, cat) if psi != 1.0 else None,
                noise_mode="random",
            )
            mask = logits.argmax(1).numpy()
            res += [judge(img[i].numpy(), mask[i]) for i in range(b)]
            if tumours is not None:
                tumours.extend(mask > 0)
        out[name] = res
    return out


def nearest_dice(
    tumours: list[np.ndarray], train: list[np.ndarray], exclude_self: bool = False
) -> np.ndarray:
    """For each whole-tumour mask in ``tumours``, its highest Dice with any mask of ``train``.

    A generator that copies its training cases scores near 1; ``exclude_self`` (``tumours`` is
    ``train``) gives the real cases' own nearest-neighbour Dice, the yardstick.
    """
    a = np.stack([t.ravel() for t in tumours]).astype(np.float32)  # [n, V]
    b = np.stack([t.ravel() for t in train]).astype(np.float32)  # [m, V]
    inter = a @ b.T  # [n, m]
    dice = 2 * inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None, :], 1.0)
    if exclude_self:
        np.fill_diagonal(dice, -1.0)
    return dice.max(1)
