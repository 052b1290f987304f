"""The conditioning judge: is a generated sample a faithful HGG or LGG, from its own mask and images?

Every sample is judged from its mask (labels 0..3; 1 necrotic core, 2 edema, 3 enhancing) and its
images (``[4, D, H, W]`` in [-1, 1], T1Gd in channel ``T1C``):

* the tumour is the largest 26-connected component of labels {1, 2, 3}; it must hold between
  ``min_tumour_frac`` and ``max_tumour_frac`` of the volume and ``min_main_frac`` of all tumour
  voxels (scattered specks, no tumour, or 'tumour' everywhere fail both grades);
* faithful **HGG**: the component holds an enhancing region (label 3, at least ``min_et`` voxels)
  and a necrotic core (label 1, at least ``min_ncr`` voxels); the core's 6-neighbour shell is at
  least ``min_rim`` enhancing (the enhancing rim surrounds the core); the enhancing region is
  bright on T1Gd: its mean T1Gd exceeds that of the normal brain and of the core by ``min_et_contrast``;
* faithful **LGG**: the component exists and the volume holds no enhancing region (no 26-connected
  group of label 3 with ``min_et`` voxels or more).

The thresholds are fields of :class:`JudgeThresholds`; the defaults are set for a 32^3 grid and
:meth:`JudgeThresholds.for_grid` scales the voxel counts to another grid.

:func:`judge` judges one sample, :func:`rates` summarises many per grade, :func:`judge_generator`
samples a generator per grade and judges every sample, and :func:`nearest_dice` compares whole
tumours with their nearest training tumour (copying the training set shows as Dice near 1).
``benchmarks/conditioning.py`` runs them over a training run; ``gliomagen evaluate --judge N``
reports them per cohort (:mod:`gliomagen.evaluation.judge_section`).

Example:
    >>> import numpy as np
    >>> mask = np.zeros((32, 32, 32), np.int64)
    >>> mask[12:20, 12:20, 12:20] = 2
    >>> images = np.zeros((4, 32, 32, 32), np.float32)
    >>> r = judge(images, mask)
    >>> r["tumour"], r["lgg"], r["hgg"]
    (True, True, False)
    >>> JudgeThresholds.for_grid(64).min_et
    32
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from gliomagen.generation.fill import case_table, check_unset, donor_numbers
from gliomagen.generation.sampling import anatomy_layer as default_anatomy_layer
from gliomagen.generation.sampling import broadcast_ws, mix_ws

REFERENCE_GRID = 32
"""Side of the cubic grid the default voxel-count thresholds are set for."""

T1C = 1  # channel of t1c in MODALITIES
FULL = np.ones((3, 3, 3), bool)

FAITHFUL = (
    "A sample is a faithful HGG when its main tumour (the largest connected group of labels 1-3, "
    "of plausible size, holding most tumour voxels) has an enhancing region and a necrotic core, "
    "the core's border at least half enhancing and the enhancing region brighter on T1Gd than "
    "the normal brain and the core; a faithful LGG when it has such a tumour and no enhancing "
    "region anywhere."
)
"""What :func:`judge` calls faithful, in one sentence (the module docstring in short)."""


@dataclasses.dataclass(frozen=True)
class JudgeThresholds:
    """What :func:`judge` asks of a sample (defaults for a 32^3 grid).

    Attributes:
        min_tumour_frac: smallest main tumour component, as a fraction of the volume (~33 voxels
            at 32^3).
        max_tumour_frac: largest main tumour component, as a fraction of the volume (phantom
            tumours stay under 13% of the grid; a "tumour" filling it is none).
        min_main_frac: smallest share of all tumour voxels in the main component.
        min_et: voxels of enhancing tumour (label 3) an HGG needs in its main component; also the
            size of a 26-connected label-3 group that makes a sample no LGG.
        min_ncr: voxels of necrotic core (label 1) an HGG needs in its main component.
        min_rim: smallest enhancing share of the core's 6-neighbour shell.
        min_et_contrast: how much brighter on T1Gd (in [-1, 1] units) the enhancing region must be
            than the normal brain and the core.
    """

    min_tumour_frac: float = 0.001
    max_tumour_frac: float = 0.25
    min_main_frac: float = 0.8
    min_et: int = 4
    min_ncr: int = 2
    min_rim: float = 0.5
    min_et_contrast: float = 0.1

    @classmethod
    def for_grid(cls, size: int | Sequence[int]) -> JudgeThresholds:
        """The default thresholds with the voxel counts scaled to another 3D grid.

        ``min_et`` and ``min_ncr`` are multiplied by the grid's voxel count over 32^3 (rounded,
        at least 1); the tumour fractions are relative to the volume already and stay.

        Args:
            size: the side of a cubic grid, or its three sides ``(D, H, W)``.

        Raises:
            ValueError: a size that is not one or three positive integers.
        """
        sides = [int(size)] * 3 if isinstance(size, (int, np.integer)) else [int(s) for s in size]
        if len(sides) != 3 or min(sides) < 1:
            raise ValueError(f"grid size {size!r}: expected one or three positive integers")
        ratio = math.prod(sides) / REFERENCE_GRID**3
        base = cls()
        return dataclasses.replace(
            base,
            min_et=max(1, round(base.min_et * ratio)),
            min_ncr=max(1, round(base.min_ncr * ratio)),
        )


def _main_component(tumour: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (all False when it is empty)."""
    lab, n = ndimage.label(tumour, structure=FULL)
    main = np.zeros_like(tumour)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        main = lab == (int(np.argmax(sizes)) + 1)
    return main


def _bright(
    images: np.ndarray, mask: np.ndarray, et: np.ndarray, ncr: np.ndarray, contrast: float
) -> bool:
    """Whether the enhancing region's mean T1Gd exceeds the normal brain's and the core's."""
    brain = (images[0] > -0.9) & (mask == 0)
    t1c = images[T1C]
    et_c = float(t1c[et].mean()) if et.any() else float("nan")
    return bool(
        et.any()
        and brain.any()
        and ncr.any()
        and et_c > float(t1c[brain].mean()) + contrast
        and et_c > float(t1c[ncr].mean()) + contrast
    )


def judge(
    images: np.ndarray, mask: np.ndarray, thresholds: JudgeThresholds | None = None
) -> dict[str, Any]:
    """Judge one sample: ``images [4, D, H, W]`` in [-1, 1], ``mask [D, H, W]`` labels 0..3.

    Args:
        images: the four modalities, T1Gd in channel ``T1C``.
        mask: the sample's labels (0 background, 1 core, 2 edema, 3 enhancing).
        thresholds: what a faithful sample needs (default: :class:`JudgeThresholds`, for 32^3).

    Returns:
        ``{"tumour": bool, "hgg": bool, "lgg": bool, ...measurements}``.
    """
    th = thresholds or JudgeThresholds()
    tumour = mask > 0
    n_tumour = int(tumour.sum())
    main = _main_component(tumour)
    n_main = int(main.sum())
    in_range = th.min_tumour_frac * mask.size <= n_main <= th.max_tumour_frac * mask.size
    has_tumour = in_range and n_main >= th.min_main_frac * max(n_tumour, 1)
    et, ncr = main & (mask == 3), main & (mask == 1)
    shell = ndimage.binary_dilation(ncr) & ~ncr
    rim = float((mask[shell] == 3).mean()) if shell.any() else 0.0
    bright = _bright(images, mask, et, ncr, th.min_et_contrast)
    et_all, _ = ndimage.label(mask == 3, structure=FULL)
    et_regions = np.bincount(et_all.ravel())[1:]
    any_et_region = bool((et_regions >= th.min_et).any())
    hgg = bool(
        has_tumour
        and int(et.sum()) >= th.min_et
        and int(ncr.sum()) >= th.min_ncr
        and rim >= th.min_rim
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
        "ok_et": int(et.sum()) >= th.min_et,
        "ok_ncr": int(ncr.sum()) >= th.min_ncr,
        "ok_rim": rim >= th.min_rim,
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
    thresholds: JudgeThresholds | None = None,
    conditions: Mapping[str, str] | None = None,
    unset: str = "unknown",
    anatomy: Mapping[str, str] | None = None,
    anatomy_layer: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Generate ``n`` samples per grade from ``G`` and judge them.

    The other conditions are ``conditions`` (categorical values, e.g. ``{"cohort": "SSA"}``)
    and, for the rest, ``unset="unknown"`` (the unknown slot and the training mean),
    ``"drawn"`` (from a training case drawn given the set ones, as ``gliomagen generate`` does:
    :func:`gliomagen.generation.fill.donor_numbers`, sample ``i`` of a grade with the donor seed
    ``seed * 1_000_003 + i``; unknown when the model holds no table) or ``"blended"`` (the same,
    each number blended with a second training case's, as ``gliomagen generate --unset
    blended`` does). The latents and conditions are drawn on the CPU and moved to ``G``'s
    device; the samples are judged on the CPU.

    Args:
        G: a generator (``G(z, cat, cont, truncation_psi=, w_avg=, noise_mode=)`` returns images
            and mask logits), e.g. a checkpoint's ``G_ema`` from ``load_generator``.
        schema: its condition schema (with a categorical ``grade`` field).
        n: samples per grade (HGG and LGG).
        seed: seed of the latents (one ``torch.Generator`` for all samples, HGG first).
        batch: samples per generator call.
        psi: ``psi < 1`` truncates each ``w`` toward its condition's mean ``w`` (``w_avg`` from
            the checkpoint, as ``gliomagen generate --truncation`` does), or toward the global
            mean without it.
        w_avg: the checkpoint's per-condition mean ``w`` (``{"cat", "w"}``).
        tumours: a list that receives each sample's whole-tumour mask (bool ``[D, H, W]``).
        thresholds: passed to :func:`judge`.
        conditions: further categorical conditions set for every sample.
        unset: how the fields neither the grade nor ``conditions`` set are given.
        anatomy: categorical values for the first ``anatomy_layer`` style inputs (same ``z``), as
            ``gliomagen generate --anatomy-from`` gives them (``psi`` must be 1; ``anatomy_layer``
            defaults to :func:`~gliomagen.generation.sampling.anatomy_layer`).

    Returns:
        ``{"HGG": [judge(...) per sample], "LGG": [...]}``.
    """
    dev = next(G.parameters()).device
    grade = schema["grade"]
    names = [f.name for f in schema.categorical]
    gi = names.index("grade")
    fixed = {names.index(k): schema[k].encode(v) for k, v in (conditions or {}).items()}
    coarse = {names.index(k): int(schema[k].encode(v)) for k, v in (anatomy or {}).items()}
    if coarse and psi != 1.0:
        raise ValueError("the judge's anatomy option takes no truncation")
    table = case_table(G, schema) if check_unset(unset) != "unknown" else None
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
            for j, c in fixed.items():
                cat[:, j] = int(c)
            cont = torch.zeros(b, len(schema.continuous))
            if table is not None:  # every unset field from one training case given the set ones
                seeds = [seed * 1_000_003 + start + i for i in range(b)]
                no_cont = np.zeros(tuple(cont.shape), bool)
                donors, nums, _ = donor_numbers(
                    cat.numpy(), cont.numpy(), no_cont, table, seeds, unset == "blended"
                )
                unk = torch.as_tensor(table.unknown).view(1, -1)
                cat = torch.where(cat == unk, table.cat[torch.as_tensor(donors)], cat)
                cont = torch.tensor(nums, dtype=torch.float32).reshape(cont.shape)
            centre = _condition_centre(w_avg, cat) if psi != 1.0 else None
            z = torch.randn(b, G.z_dim, generator=gen).to(dev)
            if coarse:  # coarse styles under the anatomy's values, the rest under the sample's own
                cat_a = cat.clone()
                for j, c in coarse.items():
                    cat_a[:, j] = c
                own, other = (broadcast_ws(G.mapping(z, c.to(dev), cont.to(dev)), G.num_ws) for c in (cat, cat_a))
                layer = anatomy_layer if anatomy_layer is not None else default_anatomy_layer(G)
                img, logits = G.synthesis(mix_ws(other, own, layer), noise_mode="random")
            else:
                img, logits = G(
                    z, cat.to(dev), cont.to(dev), truncation_psi=psi,
                    w_avg=None if centre is None else centre.to(dev), noise_mode="random",
                )  # fmt: skip
            img, mask = img.float().cpu(), logits.argmax(1).cpu().numpy()
            res += [judge(img[i].numpy(), mask[i], thresholds) for i in range(b)]
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
