"""One arm of the downstream benchmark for one seed: train, choose the checkpoint on val, score test.

Every arm trains ``steps`` optimiser steps of ``batch_size`` cases (:func:`run_arm`; region outputs
WT/TC/ET by default, see :func:`gliomagen.evaluation.segmentation.train_segmenter`), from the
seed's initial weights, or, for ``large-then-real*``, from that seed's large-cohort pretraining
(:func:`pretrain`, ``pretrain_steps`` steps on the large cohort's training cases, run once per seed
and shared). Every ``val_every`` steps (and at step 0 and the last step) the network is scored on
the scarce cohort's **val** cases: the mean over cases of the mean over WT/TC/ET of MONAI's
voxel-wise Dice. The weights with the best val score (the earliest on a tie) are kept, and only
they are scored on the **test** cases, once: Dice and HD95 per region (MONAI, voxel-wise,
:func:`gliomagen.evaluation.segmentation.case_metrics`) and, when the optional package is there,
the official BraTS lesion-wise Dice and HD95 (:mod:`gliomagen.evaluation.brats_metrics`).
``val_every=0`` keeps the last weights (no selection).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from gliomagen.errors import GliomagenError
from gliomagen.evaluation import segmentation as seg
from gliomagen.evaluation.utility_arms import ArmPlan, batch_schedule, parse_arm, plan_arm
from gliomagen.evaluation.utility_data import CaseBank


def optional_module(name: str) -> ModuleType | None:
    """``name`` imported, or ``None`` when that module is not there (another branch adds it)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


# TODO(lead): a plain import once gliomagen.evaluation.brats_metrics is merged.
brats_metrics = optional_module("gliomagen.evaluation.brats_metrics")


def lesion_metrics_status() -> tuple[bool, str]:
    """Whether the official BraTS lesion-wise metrics are computed here, and why not."""
    if brats_metrics is None:
        return False, "gliomagen.evaluation.brats_metrics is not in this version of gliomagen"
    ok, why = brats_metrics.available()
    return bool(ok), str(why)


@dataclass(frozen=True)
class TrainOptions:
    """How every arm trains (see the module docstring)."""

    steps: int = 200
    batch_size: int = 2
    mix_ratio: float = 0.5
    network: str = "segresnet"
    device: str = "cpu"
    lr: float = 2e-3
    init_filters: int = 8
    val_every: int = 25
    pretrain_steps: int = 200
    eval_batch: int = 4
    outputs: str = "regions"  # "regions": WT/TC/ET sigmoids (BraTS region-based); "labels": softmax


@dataclass
class Arrays:
    """What a training process needs: the bank, each pool's / split's bank rows, the spacing."""

    bank: CaseBank
    index: dict[str, list[int]]
    spacing: list[float]


@dataclass
class Fit:
    """A finished training: the chosen weights and the val curve."""

    state: dict[str, torch.Tensor]
    best_step: int
    best_val: float | None
    curve: dict[str, list[float]] = field(default_factory=dict)  # step, val_dice, val_WT, ...
    losses: list[float] = field(default_factory=list)


def predict(net: nn.Module, bank: CaseBank, rows: Sequence[int], batch: int, device: str) -> np.ndarray:
    """Predicted labels uint8 ``[n, D, H, W]`` of bank rows ``rows``."""
    out = []
    for s in range(0, len(rows), batch):
        x, _ = bank.take(rows[s : s + batch])
        out.append(seg.predict_labels(net, x, device))
    return np.concatenate(out) if out else np.zeros((0, *bank.labels.shape[1:]), np.uint8)


def region_dice(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """MONAI voxel-wise Dice ``[n, 3]`` (WT, TC, ET) of label maps ``[n, D, H, W]``; both regions
    empty -> 1.0, one empty -> 0.0 (as :func:`gliomagen.evaluation.segmentation.dice_score`)."""
    from monai.metrics import compute_dice  # MONAI: a heavy import (seconds), only when scoring

    if len(pred) == 0:
        return np.zeros((0, len(seg.REGIONS)))
    p = torch.from_numpy(seg.region_masks(pred)).float()  # [n, 3, D, H, W]
    t = torch.from_numpy(seg.region_masks(true)).float()
    return compute_dice(p, t, include_background=True, ignore_empty=False).numpy().astype(np.float64)


def _validator(arrays: Arrays, opts: TrainOptions) -> Callable[[nn.Module], np.ndarray]:
    rows = arrays.index.get("val", [])
    true = arrays.bank.labels[rows]

    def val(net: nn.Module) -> np.ndarray:
        return region_dice(predict(net, arrays.bank, rows, opts.eval_batch, opts.device), true)

    return val


def fit(
    net: nn.Module,
    batches: Any,
    *,
    steps: int,
    lr: float,
    device: str,
    seed: int,
    val: Callable[[nn.Module], np.ndarray] | None,
    val_every: int,
) -> Fit:
    """Train ``net``; every ``val_every`` steps (and at 0 and ``steps``) score it with ``val``
    (``[n_cases, n_regions]`` Dice) and keep the weights of the best mean (the earliest on a tie).

    Without ``val`` or with ``val_every=0`` the last weights are kept.
    """
    curve: dict[str, list[float]] = {"step": [], "val_dice": [], **{f"val_{r}": [] for r in seg.REGIONS}}
    best: dict[str, Any] = {"score": None, "step": steps, "state": None}

    def check(step: int, model: nn.Module) -> None:
        if val is None or val_every <= 0 or not (step % val_every == 0 or step == steps):
            return
        d = val(model)  # [n, 3]
        score = float(d.mean()) if d.size else float("nan")
        curve["step"].append(step)
        curve["val_dice"].append(score)
        for k, r in enumerate(seg.REGIONS):
            curve[f"val_{r}"].append(float(d[:, k].mean()) if d.size else float("nan"))
        if best["score"] is None or score > best["score"]:
            best.update(score=score, step=step,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})  # fmt: skip

    check(0, net)
    losses = seg.train_segmenter(
        net, batches, steps=steps, lr=lr, device=device, seed=seed, after_step=check
    )
    state = best["state"] if best["state"] is not None else {
        k: v.detach().clone() for k, v in net.state_dict().items()
    }  # fmt: skip
    return Fit(state, int(best["step"]), best["score"], curve, losses)


def _batches(arrays: Arrays, schedule: list[list[tuple[str, int]]]) -> Any:
    for slots in schedule:
        yield arrays.bank.take([arrays.index[p][i] for p, i in slots])


def _network(opts: TrainOptions, seed: int) -> nn.Module:
    torch.manual_seed(seed)  # the same initial weights in every arm of a seed
    out = len(seg.REGIONS) if opts.outputs == "regions" else 4
    return seg.build_network(opts.network, out_channels=out, init_filters=opts.init_filters).to(opts.device)


def pretrain(arrays: Arrays, seed: int, opts: TrainOptions) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The large-cohort pretraining of a seed: ``pretrain_steps`` steps on the ``large`` pool,
    the last weights kept (the val curve is recorded: the zero-shot Dice on the scarce cohort).

    Returns:
        ``(state_dict, {"steps", "curve", "loss_first", "loss_last", "seconds"})``.
    """
    t0 = time.perf_counter()
    net = _network(opts, seed)
    plan = ArmPlan("pretrain", (("large", 1.0),))
    sizes = {k: len(v) for k, v in arrays.index.items()}
    sched = batch_schedule(plan, sizes, opts.pretrain_steps, opts.batch_size, seed)
    res = fit(
        net, _batches(arrays, sched), steps=opts.pretrain_steps, lr=opts.lr, device=opts.device,
        seed=seed, val=_validator(arrays, opts) if arrays.index.get("val") else None,
        val_every=opts.val_every,
    )  # fmt: skip
    last = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return last, {
        "steps": opts.pretrain_steps, "curve": res.curve, "loss_first": res.losses[0],
        "loss_last": res.losses[-1], "seconds": time.perf_counter() - t0,
    }  # fmt: skip


def score_cases(
    pred: np.ndarray, true: np.ndarray, ids: Sequence[str], spacing: Sequence[float]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Per case ``{region: {dice, hd95}}``: MONAI voxel-wise, and BraTS lesion-wise (or ``None``
    when that package is not available)."""
    voxel = {c: seg.case_metrics(p, t, spacing) for c, p, t in zip(ids, pred, true, strict=True)}
    if not lesion_metrics_status()[0]:
        return voxel, None
    assert brats_metrics is not None
    lesion: dict[str, Any] = {}
    for c, p, t in zip(ids, pred, true, strict=True):
        m = brats_metrics.lesion_wise(np.asarray(p), np.asarray(t), tuple(spacing))
        if m is None:
            return voxel, None
        lesion[c] = {r: {"dice": float(m[r]["dice"]), "hd95": float(m[r]["hd95"])} for r in seg.REGIONS}
    return voxel, lesion


def run_arm(
    arrays: Arrays,
    arm: str,
    seed: int,
    opts: TrainOptions,
    pretrained: Mapping[str, torch.Tensor] | None = None,
    realism: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Train one arm for one seed, keep its best-val weights, score them on the test cases.

    Args:
        arrays: the cases (pools ``real``, ``real+large``, ``SOURCE@Mx``, ``val``, ``heldout``).
        arm: an arm name (:mod:`gliomagen.evaluation.utility_arms`).
        seed: initial weights, batch order and flips.
        opts: the training options.
        pretrained: the seed's large-cohort weights (needed by ``large-then-real*``).
        realism: ``{source: pool}``: also score the chosen network on those synthetic cases
            against their own masks (image-mask agreement; the ``real`` arm does this).

    Returns:
        ``{"per_case", "per_case_lesion", "mean", "curve", "best_step", "best_val",
        "loss_first", "loss_last", "seconds", "realism"}``.
    """
    t0 = time.perf_counter()
    spec = parse_arm(arm)
    net = _network(opts, seed)
    if spec.pretrain:
        if pretrained is None:
            raise GliomagenError(f"arm {arm}: needs the large-cohort pretraining of seed {seed}")
        net.load_state_dict(dict(pretrained))
    sizes = {k: len(v) for k, v in arrays.index.items()}
    sched = batch_schedule(plan_arm(spec, opts.mix_ratio), sizes, opts.steps, opts.batch_size, seed)
    res = fit(
        net, _batches(arrays, sched), steps=opts.steps, lr=opts.lr, device=opts.device, seed=seed,
        val=_validator(arrays, opts) if arrays.index.get("val") else None, val_every=opts.val_every,
    )  # fmt: skip
    net.load_state_dict(res.state)
    rows = arrays.index["heldout"]
    pred = predict(net, arrays.bank, rows, opts.eval_batch, opts.device)
    ids = [arrays.bank.ids[i] for i in rows]
    voxel, lesion = score_cases(pred, arrays.bank.labels[rows], ids, arrays.spacing)
    agree: dict[str, Any] = {}
    for source, pool in (realism or {}).items():
        prow = arrays.index[pool]
        d = region_dice(predict(net, arrays.bank, prow, opts.eval_batch, opts.device), arrays.bank.labels[prow])
        agree[source] = {arrays.bank.ids[i]: dict(zip(seg.REGIONS, map(float, d[k]), strict=True))
                         for k, i in enumerate(prow)}  # fmt: skip
    return {
        "per_case": voxel, "per_case_lesion": lesion, "mean": seg.table_mean(voxel),
        "curve": res.curve, "best_step": res.best_step, "best_val": res.best_val,
        "loss_first": res.losses[0], "loss_last": res.losses[-1],
        "seconds": time.perf_counter() - t0, "realism": agree,
    }  # fmt: skip
