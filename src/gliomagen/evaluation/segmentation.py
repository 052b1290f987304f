"""Segmentation maths for the downstream benchmark: BraTS regions, Dice, HD95, the network.

Regions (BraTS convention, labels 1 NCR/NET, 2 ED, 3 ET):

- whole tumour ``WT`` = labels {1, 2, 3}
- tumour core ``TC`` = labels {1, 3}
- enhancing tumour ``ET`` = label {3}

Conventions for empty regions (the BraTS 2023 challenge's, so an absent region never drops out of a
mean and never turns it into NaN):

- Dice: ``2 |P & G| / (|P| + |G|)``; both empty -> **1.0**; one empty -> 0.0 (MONAI
  ``compute_dice(..., ignore_empty=False)``).
- HD95: the symmetric 95th-percentile Hausdorff distance in millimetres between the surface voxels
  of P and G (MONAI ``compute_hausdorff_distance(..., percentile=95, spacing=...)``; the percentile
  interpolates linearly, as ``numpy.percentile``); both empty -> **0.0**; exactly one empty ->
  **the volume's diagonal in mm**, ``sqrt(sum((n_i * s_i)^2))`` (373.13 mm for BraTS' 240x240x155
  at 1 mm, the value the challenge uses).

Example:
    >>> import numpy as np
    >>> true = np.zeros((4, 4, 4), np.uint8); true[1, 1, 1:3] = (1, 2)
    >>> pred = np.zeros_like(true); pred[1, 1, 1] = 1
    >>> m = case_metrics(pred, true, spacing=(1.0, 1.0, 1.0))
    >>> round(m["WT"]["dice"], 4), m["TC"]["dice"], m["ET"]["dice"]
    (0.6667, 1.0, 1.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import wilcoxon
from torch import nn

from gliomagen.errors import GliomagenError

REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
"""BraTS evaluation regions: name -> the mask labels it unions."""

NETWORKS: tuple[str, ...] = ("segresnet", "unet")
"""Segmentation networks the benchmark can train (MONAI)."""

NETWORK_DIVISOR = 8
"""Every spatial size must be divisible by this (three stride-2 levels in both networks)."""


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def region_masks(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Binary BraTS region masks of a label map.

    Args:
        labels: integer labels ``[..., D, H, W]`` in {0, 1, 2, 3}.

    Returns:
        bool ``[..., 3, D, H, W]``, channels in :data:`REGIONS` order (WT, TC, ET).
    """
    lab = _as_numpy(labels)
    return np.stack([np.isin(lab, ids) for ids in REGIONS.values()], axis=-4)


def dice_score(pred: np.ndarray | torch.Tensor, true: np.ndarray | torch.Tensor) -> float:
    """Dice of two binary masks of one shape; both empty -> 1.0, one empty -> 0.0."""
    from monai.metrics import compute_dice  # MONAI: a heavy import (seconds), only when scoring

    p, t = _as_numpy(pred).astype(bool), _as_numpy(true).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"dice_score: shapes differ {p.shape} vs {t.shape}")
    pt = torch.from_numpy(p[None, None]).float()  # [1, 1, *spatial]
    tt = torch.from_numpy(t[None, None]).float()
    return float(compute_dice(pt, tt, include_background=True, ignore_empty=False)[0, 0])


def volume_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The diagonal of a volume in mm, ``sqrt(sum((n_i * s_i)^2))``: HD95 when one mask is empty."""
    return float(
        math.sqrt(sum((float(n) * float(s)) ** 2 for n, s in zip(shape, spacing, strict=True)))
    )


def hd95(
    pred: np.ndarray | torch.Tensor,
    true: np.ndarray | torch.Tensor,
    spacing: Sequence[float],
) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm (MONAI), with the empty-set conventions.

    Args:
        pred: binary mask ``[D, H, W]``.
        true: binary mask ``[D, H, W]``.
        spacing: voxel size in mm along (D, H, W).

    Returns:
        HD95 in mm; 0.0 when both are empty; :func:`volume_diagonal_mm` when exactly one is.
    """
    from monai.metrics import compute_hausdorff_distance  # MONAI: a heavy import (seconds)

    p, t = _as_numpy(pred).astype(bool), _as_numpy(true).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"hd95: shapes differ {p.shape} vs {t.shape}")
    if len(spacing) != p.ndim:
        raise ValueError(f"hd95: spacing {tuple(spacing)} does not match a {p.ndim}-D mask")
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return 0.0
    if p_any != t_any:
        return volume_diagonal_mm(p.shape, spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI's internal deprecation notice
        d = compute_hausdorff_distance(
            p[None, None],  # [1, 1, D, H, W]
            t[None, None],
            include_background=True,
            percentile=95,
            spacing=[float(s) for s in spacing],
        )
    return float(d.reshape(-1)[0])


def case_metrics(
    pred_labels: np.ndarray | torch.Tensor,
    true_labels: np.ndarray | torch.Tensor,
    spacing: Sequence[float],
) -> dict[str, dict[str, float]]:
    """Dice and HD95 of every BraTS region for one case.

    Args:
        pred_labels: predicted labels ``[D, H, W]`` in {0..3}.
        true_labels: reference labels ``[D, H, W]`` in {0..3}.
        spacing: voxel size in mm along (D, H, W).

    Returns:
        ``{"WT": {"dice": .., "hd95": ..}, "TC": {..}, "ET": {..}}``.
    """
    pr, tr = region_masks(pred_labels), region_masks(true_labels)  # [3, D, H, W]
    if pr.shape != tr.shape:
        raise ValueError(f"case_metrics: shapes differ {pr.shape[1:]} vs {tr.shape[1:]}")
    return {
        name: {"dice": dice_score(pr[k], tr[k]), "hd95": hd95(pr[k], tr[k], spacing)}
        for k, name in enumerate(REGIONS)
    }


def check_size(size: Sequence[int], where: str) -> None:
    """Raise a GliomagenError unless every spatial size is a multiple of :data:`NETWORK_DIVISOR`."""
    bad = [int(s) for s in size if int(s) % NETWORK_DIVISOR]
    if bad or len(size) != 3:
        raise GliomagenError(
            f"{where}: volume size {tuple(int(s) for s in size)} must be 3-D with every side a multiple "
            f"of {NETWORK_DIVISOR} for the segmentation networks"
        )


def build_network(
    name: str = "segresnet",
    *,
    in_channels: int = 4,
    out_channels: int = 4,
    init_filters: int = 8,
) -> nn.Module:
    """A MONAI 3D segmentation network producing class logits.

    Args:
        name: ``segresnet`` (Myronenko 2018, the BraTS 2018 winner's encoder-decoder) or ``unet``
            (residual U-Net, Kerfoot et al. 2018).
        in_channels: input modalities (4: t1n, t1c, t2w, t2f).
        out_channels: 4 (class logits: background, NCR, ED, ET) or 3 (region logits: WT, TC, ET).
        init_filters: channels of the first level; doubled at each of the three downsamplings.

    Returns:
        A module mapping ``[N, in, D, H, W]`` to logits ``[N, out, D, H, W]``.
    """
    from monai.networks.nets import SegResNet, UNet  # MONAI: a heavy import (seconds)

    if name == "segresnet":
        groups = max(1, min(8, init_filters))
        while init_filters % groups:
            groups -= 1
        return SegResNet(
            spatial_dims=3,
            init_filters=init_filters,
            in_channels=in_channels,
            out_channels=out_channels,
            norm=("GROUP", {"num_groups": groups}),
            blocks_down=(1, 2, 2, 4),
            blocks_up=(1, 1, 1),
        )
    if name == "unet":
        f = init_filters
        return UNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=(f, 2 * f, 4 * f, 8 * f),
            strides=(2, 2, 2),
            num_res_units=2,
        )
    raise GliomagenError(
        f"--network {name!r}: unknown network; choose one of {', '.join(NETWORKS)}"
    )


def regions_to_labels(regions: np.ndarray) -> np.ndarray:
    """BraTS labels uint8 ``[..., D, H, W]`` from region masks ``[..., 3, D, H, W]`` (WT, TC, ET):
    ED (2) in WT, NCR (1) in TC, ET (3) in ET, later regions overriding (the challenge's rule)."""
    r = np.asarray(regions, dtype=bool)
    lab = np.zeros(r.shape[:-4] + r.shape[-3:], np.uint8)
    for k, value in enumerate((2, 1, 3)):
        lab[r[..., k, :, :, :]] = value
    return lab


@torch.no_grad()
def predict_labels(
    net: nn.Module, images: torch.Tensor, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Labels of a batch of volumes: the argmax of 4 class logits, or, for a region network
    (3 outputs: WT, TC, ET), :func:`regions_to_labels` of its sigmoid outputs above 0.5.

    Args:
        net: a network from :func:`build_network`.
        images: ``[N, 4, D, H, W]`` float.
        device: where to run it.

    Returns:
        uint8 labels ``[N, D, H, W]``.
    """
    if images.ndim != 5:
        raise ValueError(f"predict_labels: expected [N, C, D, H, W], got {tuple(images.shape)}")
    was_training = net.training
    net.eval()
    logits = net(images.to(device=device, dtype=torch.float32))  # [N, 4 or 3, D, H, W]
    net.train(was_training)
    if logits.shape[1] == len(REGIONS):
        return regions_to_labels((logits > 0).cpu().numpy())  # sigmoid > 0.5 <=> logit > 0
    return logits.argmax(dim=1).to(torch.uint8).cpu().numpy()


def _loss(n_out: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Dice + cross-entropy: softmax over 4 classes, or (3 outputs) per BraTS region with sigmoids
    (region-based training, as nnU-Net and MONAI's BraTS recipe: Dice over the batch + BCE)."""
    from monai.losses import DiceCELoss, DiceLoss  # MONAI: a heavy import (seconds)

    if n_out != len(REGIONS):
        return DiceCELoss(to_onehot_y=True, softmax=True)
    dice, bce = DiceLoss(sigmoid=True, batch=True), nn.BCEWithLogitsLoss()

    def region_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = torch.stack([torch.isin(y[:, 0], torch.tensor(ids, device=y.device))
                              for ids in REGIONS.values()], dim=1).float()  # [B, 3, D, H, W]  # fmt: skip
        return dice(logits, target) + bce(logits, target)

    return region_loss


def train_segmenter(
    net: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    lr: float = 2e-3,
    device: str | torch.device = "cpu",
    seed: int = 0,
    flip: bool = True,
    after_step: Callable[[int, nn.Module], None] | None = None,
) -> list[float]:
    """Train a segmenter with MONAI's Dice + cross-entropy loss (softmax over classes, or per
    region with sigmoids for a 3-output region network).

    Adam with a cosine learning-rate decay over ``steps``; random left-right flips (axis D, the
    RAS x axis of a store) drawn from a generator seeded by ``seed``, so a run is reproducible.

    Args:
        net: a network from :func:`build_network` (already on ``device``).
        batches: yields ``(images [B, 4, D, H, W] float, labels [B, D, H, W] int)``; the first
            ``steps`` are used.
        steps: optimisation steps.
        lr: initial learning rate.
        device: where to train.
        seed: seed of the flip draws.
        flip: apply the random left-right flips.
        after_step: called as ``after_step(k, net)`` after optimiser step ``k`` (1-based), e.g. to
            validate; it may switch the network to eval mode, training mode is restored after.

    Returns:
        The loss of every step.
    """
    loss_fn: Any = None
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    gen = torch.Generator().manual_seed(int(seed))
    net.train()
    losses: list[float] = []
    for step, (x, y) in enumerate(batches):
        if step >= steps:
            break
        x = x.to(device=device, dtype=torch.float32)  # [B, 4, D, H, W]
        y = y.to(device=device, dtype=torch.int64)[:, None]  # [B, 1, D, H, W]
        if flip:
            rows = torch.rand(x.shape[0], generator=gen) < 0.5  # [B]
            if bool(rows.any()):
                idx = rows.nonzero().flatten().to(x.device)
                x[idx] = x[idx].flip(2)
                y[idx] = y[idx].flip(2)
        opt.zero_grad(set_to_none=True)
        logits = net(x)
        loss_fn = loss_fn or _loss(int(logits.shape[1]))
        loss = loss_fn(logits, y)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if after_step is not None:
            after_step(step + 1, net)
            net.train()
    if len(losses) < steps:
        raise ValueError(
            f"train_segmenter: the batch iterator ended after {len(losses)} of {steps} steps"
        )
    return losses


# -- summaries of per-case metric tables --------------------------------------------------------
# A run's table is ``{case_id: {region: {"dice": x, "hd95": y}}}``; a benchmark arm has one per seed.
METRICS: tuple[str, ...] = ("dice", "hd95")


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std" (ddof=1; 0.0 for one value), "n"}`` of a list (NaN mean/std when empty)."""
    a = np.asarray(list(values), dtype=np.float64)
    if a.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "n": int(a.size),
    }


def table_mean(
    per_case: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> dict[str, dict[str, float]]:
    """Mean over cases of a run's table: ``{region: {metric: mean}}``."""
    return {
        r: {m: float(np.mean([pc[r][m] for pc in per_case.values()])) for m in METRICS}
        for r in REGIONS
    }


def summarise_seeds(
    per_seed_means: Sequence[Mapping[str, Mapping[str, float]]],
) -> dict[str, dict[str, float]]:
    """Mean and std over seeds of the per-seed means: ``{region: {dice_mean, dice_std, hd95_mean, ...}}``."""
    out: dict[str, dict[str, float]] = {}
    for r in REGIONS:
        row: dict[str, float] = {"n_seeds": len(per_seed_means)}
        for m in METRICS:
            ms = mean_std([s[r][m] for s in per_seed_means])
            row[f"{m}_mean"], row[f"{m}_std"] = ms["mean"], ms["std"]
        out[r] = row
    return out


def paired_test(diffs: Sequence[float]) -> dict[str, Any]:
    """Paired differences: mean, median, signs and the two-sided Wilcoxon signed-rank p-value.

    All-zero differences give p = 1.0 (scipy refuses them; nothing differs); no pairs give ``None``.
    """
    d = np.asarray(list(diffs), dtype=np.float64)
    if d.size == 0:
        return {"n_pairs": 0, "mean_diff": None, "median_diff": None, "n_positive": 0,
                "n_negative": 0, "p_value": None}  # fmt: skip
    p = 1.0 if not np.any(d != 0) else float(wilcoxon(d, alternative="two-sided").pvalue)
    return {"n_pairs": int(d.size), "mean_diff": float(d.mean()), "median_diff": float(np.median(d)),
            "n_positive": int((d > 0).sum()), "n_negative": int((d < 0).sum()), "p_value": p}  # fmt: skip


def paired_vs_baseline(
    arm: Mapping[Any, Mapping[str, Mapping[str, Mapping[str, float]]]],
    base: Mapping[Any, Mapping[str, Mapping[str, Mapping[str, float]]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Paired comparison of two arms' ``{seed: table}``: arm minus baseline per (seed, case).
    (The benchmark itself pairs per case, averaged over seeds: :mod:`.utility_stats`.)

    Returns:
        ``{region: {metric: paired_test(...)}}``, pairs over every seed and case of ``arm``.
    """
    return {
        r: {
            m: paired_test([arm[s][c][r][m] - base[s][c][r][m] for s in arm for c in arm[s]])
            for m in METRICS
        }
        for r in REGIONS
    }
