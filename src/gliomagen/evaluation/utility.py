"""Does synthetic data help? The downstream segmentation benchmark on a scarce cohort.

Question: does a generator's synthetic cohort of the scarce cohort (e.g. SSA, BraTS-Africa) make a
segmenter better on *real* cases of that cohort, beyond what the real data alone give?

Design (every number is in ``utility.json``):

- **Data.** The scarce cohort is scarce in *training* only. The store's split (``gliomagen prepare
  --split-csv``) fixes which case goes where: the segmenter trains on the scarce cohort's *train*
  cases (optionally the first n of a nested order, ``real_cases``) and the large cohort's *train*
  cases; its checkpoint is chosen on the scarce cohort's *val* cases; it is scored once on the
  scarce cohort's *test* cases. No val or test case enters a training pool.
- **Arms** (:mod:`~gliomagen.evaluation.utility_arms`): ``real``; ``real+large`` (joint);
  ``large-then-real`` (pretrain on the large cohort, fine-tune on the scarce one); each with
  ``+synthetic``; ``synthetic`` alone; with a stand-in cohort also ``+stand-in`` arms (the upper
  bound a perfect generator would reach). A synthetic pool holds ``M`` x n cases (``@Mx``) that
  follow the real training cases' mix of labels; mixed arms fill ``mix_ratio`` of each batch with
  synthetic cases.
- **Training** (:mod:`~gliomagen.evaluation.utility_train`): a MONAI U-Net or SegResNet with
  three sigmoid outputs (WT, TC, ET; Dice + BCE per region, BraTS' region-based recipe;
  ``outputs="labels"``: 4-class softmax), Adam with a cosine decay; every arm the same ``steps``
  x ``batch_size`` cases from the seed's initial weights (``large-then-real*`` after the seed's
  ``pretrain_steps`` large-cohort steps, run once per seed and shared); the val mean region Dice
  (MONAI voxel-wise) every ``val_every`` steps is recorded (the curve) and the best weights are
  kept; only those are scored on test.
- **Metrics**: per test case and BraTS region (WT, TC, ET) MONAI's voxel-wise Dice and HD95, and
  the official BraTS lesion-wise Dice and HD95 when that package is present; the headline is the
  mean region Dice (mean of WT, TC, ET).
- **Statistics** (:mod:`~gliomagen.evaluation.utility_stats`): per arm the mean over seeds of the
  per-seed mean over test cases, the std over seeds and a 95% bootstrap interval over test cases;
  paired comparisons (every arm vs ``real``, every mixed arm vs its base) on the per-case
  differences averaged over seeds (independent pairs): mean, bootstrap interval, Wilcoxon p.
  The best real-data arm is chosen on val. Convergence: how much the ``real`` arm's best val score
  still rose over the last third of the steps.
- **Also**: image-mask agreement (the ``real`` segmenter on the synthetic images vs their own
  masks) and the privacy report of each synthetic cohort against the real training cases
  (:mod:`~gliomagen.evaluation.utility_privacy`).

Outputs: ``OUT/utility.json`` (every figure, per case), ``OUT/utility.png`` and ``OUT/index.html``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gliomagen.errors import GliomagenError
from gliomagen.evaluation import segmentation as seg
from gliomagen.evaluation.utility_arms import (
    ARMS,
    STAND_IN_ARMS,
    ArmPlan,
    batch_schedule,
    expand_arms,
    largest_pool,
    parse_arm,
    plan_arm,
)
from gliomagen.evaluation.utility_data import (
    HELDOUT,
    BenchmarkData,
    CaseRef,
    load_benchmark_data,
    read_case_ids,
    store_cases,
    synthetic_store,
)
from gliomagen.evaluation.utility_html import write_outputs
from gliomagen.evaluation.utility_privacy import discriminator_attack_scores, privacy_section
from gliomagen.evaluation.utility_report import assemble_report, format_table
from gliomagen.evaluation.utility_runs import run_all
from gliomagen.evaluation.utility_stats import N_BOOT
from gliomagen.evaluation.utility_train import Arrays, TrainOptions, lesion_metrics_status, run_arm
from gliomagen.io.device import resolve_device


def _validate(opts: TrainOptions, seeds: Sequence[int], heldout: str, jobs: int, threads: int | None) -> None:
    if not seeds:
        raise GliomagenError("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise GliomagenError(f"--seeds: duplicate seeds in {list(seeds)}")
    for name, v, low in (("--steps", opts.steps, 1), ("--batch-size", opts.batch_size, 1),
                         ("--val-every", opts.val_every, 0), ("--pretrain-steps", opts.pretrain_steps, 1),
                         ("--jobs", jobs, 1), ("--threads", 1 if threads is None else threads, 1)):  # fmt: skip
        if v < low:
            raise GliomagenError(f"{name} {v}: must be at least {low}")
    if not 0.0 < float(opts.mix_ratio) < 1.0:
        raise GliomagenError(f"--mix-ratio {opts.mix_ratio}: must lie strictly between 0 and 1")
    if opts.network not in seg.NETWORKS:
        raise GliomagenError(f"--network {opts.network!r}: choose one of {', '.join(seg.NETWORKS)}")
    if opts.outputs not in ("regions", "labels"):
        raise GliomagenError(f"--outputs {opts.outputs!r}: choose regions or labels")
    if heldout not in HELDOUT:
        raise GliomagenError(f"--heldout {heldout!r}: choose one of {', '.join(HELDOUT)}")
    if heldout != "test" and opts.val_every > 0:
        raise GliomagenError(
            f"--heldout {heldout}: the val split chooses each arm's checkpoint (--val-every "
            f"{opts.val_every}), so only test is scored; use --heldout test, or --val-every 0 to keep "
            "the last weights"
        )


def _arm_list(arms: Sequence[str], multiples: Sequence[int], synthetic: Any, stand_in: Any) -> list[str]:
    arm_list = expand_arms(list(arms), [int(m) for m in multiples])
    for a in arm_list:
        source = parse_arm(a).source
        if source == "stand-in" and stand_in is None:
            raise GliomagenError(f"--arms {a}: needs a stand-in cohort (the benchmark script's upper bound)")
        if source == "synthetic" and synthetic is None:
            raise GliomagenError(f"--synthetic: a synthetic cohort is required by the arm {a}")
    return arm_list


def _data_config(data: BenchmarkData, opts: TrainOptions) -> dict[str, Any]:
    """The parts of the report's ``config`` that come from the data and the training options."""
    return {
        "synthetic_stores": {k: str(v) for k, v in data.sources.items()},
        "large_cohort": data.large_cohorts, "n_real": data.n_real, "size": list(data.size),
        "spacing_mm": data.spacing, "samples_per_run": opts.steps * opts.batch_size, **vars(opts),
    }  # fmt: skip


def _largest_pools(data: BenchmarkData) -> dict[str, str]:
    """Each synthetic source's largest pool (``SOURCE@Mx``): realism and privacy look at it."""
    return {s: str(largest_pool(data.index, s)) for s in data.sources}


def run_utility(
    real_store: str | Path,
    synthetic: str | Path | None = None,
    cohort: str = "SSA",
    out: str | Path = "utility",
    *,
    arms: Sequence[str] = ARMS,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 2000,
    batch_size: int = 2,
    mix_ratio: float = 0.5,
    network: str = "segresnet",
    device: str = "auto",
    large_cohort: str | Sequence[str] | None = None,
    heldout: str = "test",
    lr: float = 2e-3,
    init_filters: int = 8,
    cache_dir: str | Path | None = None,
    synthetic_note: str | None = None,
    progress: bool = True,
    val_every: int = 100,
    pretrain_steps: int | None = None,
    synthetic_multiples: Sequence[int] = (1,),
    real_cases: Sequence[str] | None = None,
    stand_in: str | Path | None = None,
    jobs: int = 1,
    threads: int | None = None,
    n_boot: int = N_BOOT,
    write: bool = True,
    outputs: str = "regions",
    discriminator: str | Path | None = None,
) -> dict[str, Any]:
    """Run the downstream segmentation benchmark (see the module docstring).

    Args:
        real_store: a store (``gliomagen prepare``) holding the scarce cohort (train/val/test) and,
            for the ``+large`` and ``large-then-real`` arms, the large cohort's training cases.
        synthetic: a synthetic cohort (BraTS-layout folder from ``gliomagen generate``, or a store);
            needed by the synthetic arms (``None``: only real-data arms).
        cohort: the scarce cohort (``index.csv`` column ``cohort``).
        out: output folder.
        arms: arm names (:mod:`~gliomagen.evaluation.utility_arms`); ``real`` always runs, synthetic
            arms without ``@Mx`` run once per synthetic multiple.
        seeds: one training run per arm and seed (initial weights, batch order, flips).
        steps: optimisation steps per arm (after the pretraining of ``large-then-real``).
        batch_size: cases per step, the same for every arm.
        mix_ratio: fraction of the batch slots taken by synthetic cases in the mixed arms.
        network: ``segresnet`` or ``unet``.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        large_cohort: the large cohort(s); default every other cohort of the store.
        heldout: the scored split(s): ``test`` (``val+test`` only with ``val_every=0``).
        lr: Adam learning rate (cosine decay over each stage).
        init_filters: width of the network's first level.
        cache_dir: where an ingested synthetic folder's store is kept (default ``OUT/cache``), and,
            when given, the large-cohort pretrainings (shared by later runs with the same options).
        synthetic_note: a sentence shown with the results, e.g. where the synthetic cases came from.
        progress: print one line per run on stderr.
        val_every: steps between val scores (checkpoint choice); 0 keeps the last weights.
        pretrain_steps: large-cohort steps of ``large-then-real`` (default ``steps``).
        synthetic_multiples: synthetic pool sizes in units of n (e.g. ``(1, 4)``).
        real_cases: the scarce training cases to use (ids of train cases; default all).
        stand_in: a second synthetic cohort for the ``+stand-in`` arms (the benchmark's).
        jobs: runs in parallel, as processes with ``threads`` torch threads each (1: here).
        threads: torch threads (of this process with ``jobs=1``, of each worker otherwise);
            ``None``: torch's default here, 1 per worker.
        n_boot: bootstrap resamples of every interval.
        write: write ``utility.json``, ``utility.png`` and ``index.html`` into ``out``.
        outputs: ``regions`` (3 sigmoid outputs WT/TC/ET, Dice + BCE per region: the BraTS
            region-based recipe) or ``labels`` (4 softmax classes, Dice + cross-entropy).
        discriminator: the checkpoint of the generator that made ``synthetic``: the privacy
            report adds the membership attack through its discriminator's score (full-volume
            models; :func:`~gliomagen.evaluation.utility_privacy.discriminator_attack_scores`).

    Returns:
        Everything written to ``utility.json``.
    """
    opts = TrainOptions(
        steps=steps, batch_size=batch_size, mix_ratio=mix_ratio, network=network,
        device=str(resolve_device(device)), lr=lr, init_filters=init_filters, val_every=val_every,
        pretrain_steps=steps if pretrain_steps is None else pretrain_steps, outputs=outputs,
    )  # fmt: skip
    _validate(opts, list(seeds), heldout, jobs, threads)
    arm_list = _arm_list(arms, synthetic_multiples, synthetic, stand_in)
    out = Path(out)
    specs = [parse_arm(a) for a in arm_list]
    data = load_benchmark_data(
        real_store, synthetic, cohort, large_cohort=large_cohort, heldout=heldout,
        needs_large=any(s.base in ("real+large", "large-then-real") for s in specs),
        needs_synthetic=False, cache_dir=cache_dir if cache_dir is not None else out / "cache",
        stand_in=stand_in, real_cases=real_cases, multiples=synthetic_multiples,
        needs_val=val_every > 0,
    )  # fmt: skip
    assert data.bank is not None
    arrays = Arrays(data.bank, data.index, data.spacing)
    realism = _largest_pools(data)
    if jobs <= 1 and threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    results, pre = run_all(
        arrays, arm_list, [int(s) for s in seeds], opts, jobs=jobs, threads=threads or 1, realism=realism,
        progress=progress, cache_dir=Path(cache_dir) if cache_dir is not None else None,
        cache_tag=str(Path(real_store).resolve()),
    )  # fmt: skip
    config = {
        "real_store": str(real_store), "synthetic": None if synthetic is None else str(synthetic),
        "stand_in": None if stand_in is None else str(stand_in), "synthetic_note": synthetic_note,
        "cohort": cohort, "arms": arm_list, "seeds": [int(s) for s in seeds], "heldout": heldout,
        "synthetic_multiples": sorted({int(m) for m in synthetic_multiples}), "jobs": jobs,
        "threads": threads or torch.get_num_threads(), "n_boot": n_boot, **_data_config(data, opts),
    }  # fmt: skip
    clinical = {k: (Path(v) / "clinical.csv") for k, v in (("synthetic", synthetic), ("stand-in", stand_in)) if v}
    d_scores = None
    if discriminator is not None and "synthetic" in data.sources:
        d_scores = {"synthetic": discriminator_attack_scores(data, discriminator)}
    priv = privacy_section(data, list(data.sources), d_scores) if data.sources else None
    report = assemble_report(config, data, results, pre, lesion=lesion_metrics_status(),
                             privacy=priv, clinical=clinical, n_boot=n_boot)  # fmt: skip
    if write:
        write_outputs(report, out)
    return report


__all__ = [
    "ARMS", "STAND_IN_ARMS", "ArmPlan", "BenchmarkData", "CaseRef", "TrainOptions", "batch_schedule",
    "format_table", "load_benchmark_data", "plan_arm", "read_case_ids", "run_arm", "run_utility", "store_cases",
    "synthetic_store",
]  # fmt: skip
