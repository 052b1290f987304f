"""Does synthetic data help? The downstream segmentation benchmark on a scarce cohort.

A MONAI segmenter (:mod:`gliomagen.evaluation.segmentation`) is trained in matched *arms*, every
arm with the same budget (``steps`` optimisation steps of ``batch_size`` cases, so the same number
of cases seen), from the same initial weights for a given seed:

==========================  ===============================================================
``real``                    the scarce cohort's training cases (the baseline)
``real+large``              the scarce cohort's and the large cohort's training cases, pooled
``synthetic``               the synthetic cases only
``real+synthetic``          a fraction ``mix_ratio`` of the batch slots synthetic, the rest real
``real+large+synthetic``    ``mix_ratio`` synthetic, the rest from the pooled real cases
==========================  ===============================================================

Every arm is scored on the scarce cohort's real held-out cases (``val+test`` or ``test``): Dice
and HD95 of WT/TC/ET per case; per seed the mean over cases; per arm the mean and the standard
deviation over seeds (ddof=1; 0 for one seed). Each arm is compared with ``real`` by per-case
paired differences over seeds x cases and a two-sided Wilcoxon signed-rank test (scipy; the pairs
of one case under different seeds are not independent, so read the p-value as descriptive).

Anatomical realism: each seed's ``real`` segmenter is applied to the synthetic images and its
prediction scored (Dice) against each synthetic case's own generated mask (image-mask agreement),
per region and per condition (the synthetic cohort's categorical columns), beside the same figure
on the real held-out cases.

Outputs: ``OUT/utility.json`` (every figure, per case), ``OUT/utility.png`` and ``OUT/index.html``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen.errors import GliomagenError
from gliomagen.evaluation import segmentation as seg
from gliomagen.evaluation.utility_data import (
    HELDOUT,
    BenchmarkData,
    CaseRef,
    load_benchmark_data,
    store_cases,
    synthetic_store,
)
from gliomagen.evaluation.utility_report import assemble_report, format_table, write_outputs
from gliomagen.io.device import resolve_device

ARMS: tuple[str, ...] = (
    "real",
    "real+large",
    "synthetic",
    "real+synthetic",
    "real+large+synthetic",
)
"""The arms, in report order; ``real`` is the baseline of every paired comparison."""



@dataclass(frozen=True)
class ArmPlan:
    """What an arm's batch slots are drawn from: ``(pool name, fraction of slots)`` pairs."""

    name: str
    slots: tuple[tuple[str, float], ...]

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.slots)


def plan_arm(arm: str, mix_ratio: float = 0.5) -> ArmPlan:
    """The batch composition of one arm (pools ``real``, ``real+large``, ``synthetic``).

    Example:
        >>> plan_arm("real+synthetic", 0.25).slots
        (('real', 0.75), ('synthetic', 0.25))
    """
    r = float(mix_ratio)
    plans = {
        "real": (("real", 1.0),),
        "real+large": (("real+large", 1.0),),
        "synthetic": (("synthetic", 1.0),),
        "real+synthetic": (("real", 1.0 - r), ("synthetic", r)),
        "real+large+synthetic": (("real+large", 1.0 - r), ("synthetic", r)),
    }
    if arm not in plans:
        raise GliomagenError(f"--arms: unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    return ArmPlan(arm, plans[arm])


def batch_schedule(
    plan: ArmPlan, pool_sizes: Mapping[str, int], steps: int, batch_size: int, seed: int
) -> list[list[tuple[str, int]]]:
    """Which case fills every batch slot of a run: ``[steps][batch_size]`` of ``(pool, index)``.

    A pool with fraction ``f`` gets exactly ``round(f * steps * batch_size)`` slots (the last pool
    the remainder), shuffled over the run; within a pool the cases are drawn epoch by epoch (a
    fresh permutation each pass), so every case is seen ``floor`` or ``ceil`` of its share.
    Deterministic for a seed.
    """
    total = steps * batch_size
    rng = np.random.default_rng(seed)
    counts: list[int] = []
    for k, (_, frac) in enumerate(plan.slots):
        counts.append(total - sum(counts) if k == len(plan.slots) - 1 else int(round(frac * total)))
    labels = np.concatenate([np.full(n, k) for k, n in enumerate(counts)]).astype(np.int64)
    labels = rng.permutation(labels)  # [total]
    draws: list[list[int]] = []
    for (pool, _), n in zip(plan.slots, counts, strict=True):
        size = int(pool_sizes.get(pool, 0))
        if n and size <= 0:
            raise GliomagenError(f"arm {plan.name}: the {pool} pool has no cases with a mask")
        order: list[int] = []
        while len(order) < n:
            order.extend(int(i) for i in rng.permutation(size))
        draws.append(order[:n])
    taken = [0] * len(counts)
    flat: list[tuple[str, int]] = []
    for k in labels:
        flat.append((plan.slots[k][0], draws[k][taken[k]]))
        taken[k] += 1
    return [flat[s * batch_size : (s + 1) * batch_size] for s in range(steps)]


def _load(cases: Sequence[CaseRef]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack cases into ``(images [n, 4, D, H, W] float32, labels [n, D, H, W] int64)``."""
    items = [c.dataset[c.index] for c in cases]
    return torch.stack([it[0] for it in items]).float(), torch.stack([it[1] for it in items]).long()


def _batches(schedule: list[list[tuple[str, int]]], pools: Mapping[str, list[CaseRef]]):
    for slots in schedule:
        yield _load([pools[p][i] for p, i in slots])


def _predict(
    net: torch.nn.Module, cases: Sequence[CaseRef], batch: int, device: str
) -> dict[str, tuple]:
    """Per case: (predicted labels [D, H, W] uint8, reference labels [D, H, W] uint8)."""
    out: dict[str, tuple] = {}
    for s in range(0, len(cases), batch):
        chunk = cases[s : s + batch]
        x, y = _load(chunk)
        pred = seg.predict_labels(net, x, device)  # [n, D, H, W]
        for c, p, t in zip(chunk, pred, y.numpy().astype(np.uint8), strict=True):
            out[c.case_id] = (p, t)
    return out


# -- the benchmark ----------------------------------------------------------------------------
def _validate(
    arms: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    batch_size: int,
    mix_ratio: float,
    network: str,
    device: str,
    heldout: str,
) -> list[str]:
    for a in arms:
        plan_arm(a)
    if not seeds:
        raise GliomagenError("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise GliomagenError(f"--seeds: duplicate seeds in {list(seeds)}")
    if steps < 1:
        raise GliomagenError(f"--steps {steps}: must be at least 1")
    if batch_size < 1:
        raise GliomagenError(f"--batch-size {batch_size}: must be at least 1")
    if not 0.0 < float(mix_ratio) < 1.0:
        raise GliomagenError(f"--mix-ratio {mix_ratio}: must lie strictly between 0 and 1")
    if network not in seg.NETWORKS:
        raise GliomagenError(f"--network {network!r}: choose one of {', '.join(seg.NETWORKS)}")
    if heldout not in HELDOUT:
        raise GliomagenError(f"--heldout {heldout!r}: choose one of {', '.join(HELDOUT)}")
    resolve_device(device)  # one line naming --device if it is not one (auto: CUDA if present)
    return ["real"] + [a for a in ARMS if a in arms and a != "real"]  # real: always, the baseline


def run_arm(
    data: BenchmarkData,
    arm: str,
    seed: int,
    *,
    steps: int,
    batch_size: int,
    mix_ratio: float,
    network: str,
    device: str,
    lr: float,
    init_filters: int,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train one arm for one seed and score it on the held-out cases.

    Returns:
        The trained network and ``{"per_case": {case: {region: {dice, hd95}}}, "mean": ...,
        "loss_first", "loss_last", "seconds"}``.
    """
    plan = plan_arm(arm, mix_ratio)
    sizes = {k: len(v) for k, v in data.pools.items()}
    schedule = batch_schedule(plan, sizes, steps, batch_size, seed)
    torch.manual_seed(seed)  # the same initial weights in every arm of a seed
    net = seg.build_network(network, init_filters=init_filters).to(device)
    t0 = time.perf_counter()
    losses = seg.train_segmenter(
        net, _batches(schedule, data.pools), steps=steps, lr=lr, device=device, seed=seed
    )
    preds = _predict(net, data.heldout, batch_size, device)
    per_case = {cid: seg.case_metrics(p, t, data.spacing) for cid, (p, t) in preds.items()}
    return net, {
        "per_case": per_case,
        "mean": seg.table_mean(per_case),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "seconds": time.perf_counter() - t0,
    }


def realism_dice(
    net: torch.nn.Module, cases: Sequence[CaseRef], batch: int, device: str
) -> dict[str, dict[str, float]]:
    """Image-mask agreement: Dice per region of the network's prediction against each case's own mask."""
    return {
        cid: {
            r: seg.dice_score(a, b)
            for r, a, b in zip(seg.REGIONS, seg.region_masks(p), seg.region_masks(t), strict=True)
        }
        for cid, (p, t) in _predict(net, cases, batch, device).items()
    }


def _run_arms(
    data: BenchmarkData,
    arm_list: Sequence[str],
    seeds: Sequence[int],
    opts: dict[str, Any],
    progress: bool,
) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[int, dict[str, dict[str, float]]]]:
    """Every arm for every seed: ``(results[arm][seed], realism Dice per seed)``."""
    results: dict[str, dict[int, dict[str, Any]]] = {a: {} for a in arm_list}
    syn_dice: dict[int, dict[str, dict[str, float]]] = {}
    for seed in seeds:
        for arm in arm_list:
            net, res = run_arm(data, arm, seed, **opts)
            results[arm][seed] = res
            if arm == "real" and data.pools["synthetic"]:
                syn_dice[seed] = realism_dice(
                    net, data.pools["synthetic"], opts["batch_size"], opts["device"]
                )
            if progress:
                d = " ".join(f"{r} {res['mean'][r]['dice']:.3f}" for r in seg.REGIONS)
                print(
                    f"utility: seed {seed} {arm:<21} loss {res['loss_last']:.3f}  Dice {d}"
                    f"  ({res['seconds']:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    return results, syn_dice


def run_utility(
    real_store: str | Path,
    synthetic: str | Path | None = None,
    cohort: str = "SSA",
    out: str | Path = "utility",
    *,
    arms: Sequence[str] = ARMS,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 200,
    batch_size: int = 2,
    mix_ratio: float = 0.5,
    network: str = "segresnet",
    device: str = "auto",
    large_cohort: str | Sequence[str] | None = None,
    heldout: str = "val+test",
    lr: float = 2e-3,
    init_filters: int = 8,
    cache_dir: str | Path | None = None,
    synthetic_note: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the downstream segmentation benchmark; write ``utility.json``, ``.png`` and ``index.html``.

    Args:
        real_store: a store (``gliomagen prepare``) holding the scarce cohort and, for the
            ``+large`` arms, the large cohort.
        synthetic: a synthetic cohort (BraTS-layout folder from ``gliomagen generate``, or a store);
            needed by the synthetic arms and the realism figures (skipped when ``None``).
        cohort: the scarce cohort (``index.csv`` column ``cohort``).
        out: output folder.
        arms: arms to run (:data:`ARMS`); ``real`` is always run, as the baseline.
        seeds: one training run per arm and seed (initial weights from the seed).
        steps: optimisation steps per run, the same for every arm.
        batch_size: cases per step, the same for every arm.
        mix_ratio: fraction of the batch slots taken by synthetic cases in the mixed arms.
        network: ``segresnet`` or ``unet``.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        large_cohort: the large cohort(s); default every other cohort of the store.
        heldout: ``val+test`` or ``test``: the scarce cohort's real cases that are scored.
        lr: Adam learning rate.
        init_filters: width of the network's first level.
        cache_dir: where an ingested synthetic folder's store is kept (default ``OUT/cache``).
        synthetic_note: a sentence shown with the results, e.g. what stands in for synthetic data.
        progress: print one line per run on stderr.

    Returns:
        Everything written to ``utility.json``.
    """
    arm_list = _validate(
        list(arms), list(seeds), steps, batch_size, mix_ratio, network, device, heldout
    )
    device = str(resolve_device(device))
    out = Path(out)
    data = load_benchmark_data(
        real_store,
        synthetic,
        cohort,
        large_cohort=large_cohort,
        heldout=heldout,
        needs_large=any("large" in a for a in arm_list),
        needs_synthetic=any("synthetic" in a for a in arm_list),
        cache_dir=cache_dir if cache_dir is not None else out / "cache",
    )
    opts = dict(
        steps=steps,
        batch_size=batch_size,
        mix_ratio=mix_ratio,
        network=network,
        device=device,
        lr=lr,
        init_filters=init_filters,
    )
    results, syn_dice = _run_arms(data, arm_list, seeds, opts, progress)
    config = {
        "real_store": str(real_store),
        "synthetic": None if synthetic is None else str(synthetic),
        "synthetic_store": None if data.synthetic_store is None else str(data.synthetic_store),
        "synthetic_note": synthetic_note,
        "cohort": cohort,
        "large_cohort": data.large_cohorts,
        "arms": arm_list,
        "seeds": [int(s) for s in seeds],
        "samples_per_run": steps * batch_size,
        "heldout": heldout,
        "size": list(data.size),
        "spacing_mm": data.spacing,
        **opts,
    }
    clinical = Path(synthetic) / "clinical.csv" if synthetic is not None else None
    plans = {a: plan_arm(a, mix_ratio) for a in arm_list}
    report = assemble_report(config, data, plans, results, syn_dice, clinical)
    write_outputs(report, out)
    return report


__all__ = [
    "ARMS",
    "ArmPlan",
    "BenchmarkData",
    "CaseRef",
    "batch_schedule",
    "format_table",
    "load_benchmark_data",
    "plan_arm",
    "run_arm",
    "run_utility",
    "store_cases",
    "synthetic_store",
]
