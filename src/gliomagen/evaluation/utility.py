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

import hashlib
import json
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
from gliomagen.evaluation.utility_report import assemble_report, format_table, write_outputs

ARMS: tuple[str, ...] = (
    "real",
    "real+large",
    "synthetic",
    "real+synthetic",
    "real+large+synthetic",
)
"""The arms, in report order; ``real`` is the baseline of every paired comparison."""

HELDOUT: dict[str, tuple[str, ...]] = {"val+test": ("val", "test"), "test": ("test",)}
"""Which real splits of the scarce cohort are scored."""


@dataclass(frozen=True)
class CaseRef:
    """One case of an opened store: the dataset, its index there, its id and raw labels."""

    dataset: Any
    index: int
    case_id: str
    row: Mapping[str, Any]


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


# -- data -------------------------------------------------------------------------------------
def store_cases(ds: Any, cohorts: set[str] | None = None) -> list[CaseRef]:
    """The cases of an opened store that have a mask (and belong to ``cohorts``, if given)."""
    has_mask = np.asarray(ds.has_mask, dtype=bool)
    rows = getattr(ds, "index_rows", ds.rows)  # every index.csv column, not only the schema's
    return [
        CaseRef(ds, i, str(cid), rows[i])
        for i, cid in enumerate(ds.case_ids)
        if has_mask[i] and (cohorts is None or str(rows[i].get("cohort", "")) in cohorts)
    ]


def _tree_key(folder: Path, size: Sequence[int]) -> str:
    h = hashlib.sha256(json.dumps([int(s) for s in size]).encode())
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (p.name.endswith((".nii.gz", ".nii")) or p.name == "clinical.csv"):
            st = p.stat()
            h.update(f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def synthetic_store(synthetic: str | Path, size: Sequence[int], cache_dir: str | Path) -> Path:
    """A store of a synthetic cohort on the real store's grid (built once, then reused).

    Args:
        synthetic: a store (folder with ``meta.json``) or a BraTS-layout folder of cases, e.g. the
            output of ``gliomagen generate``; its ``clinical.csv`` is passed as the labels CSV.
        size: the real store's ``[D, H, W]``.
        cache_dir: where an ingested folder's store is kept, keyed by a hash of its files.

    Returns:
        The path of a store of ``size``.
    """
    src = Path(synthetic)
    if not src.is_dir():
        raise GliomagenError(f"--synthetic {src}: no such folder")
    if (src / "meta.json").is_file():
        meta = json.loads((src / "meta.json").read_text())
        if [int(s) for s in meta.get("size", [])] != [int(s) for s in size]:
            raise GliomagenError(
                f"--synthetic {src}: store size {meta.get('size')} differs from the real store's {list(size)}"
            )
        return src
    from gliomagen.data.store import build_store

    out = Path(cache_dir) / f"synthetic-{_tree_key(src, size)}"
    if (out / "meta.json").is_file():
        return out
    clinical = src / "clinical.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    built = build_store(
        [src],
        out,
        labels_csv=clinical if clinical.is_file() else None,
        size=tuple(int(s) for s in size),
        seed=0,
        progress=False,
    )
    return Path(built)


@dataclass
class BenchmarkData:
    """The cases of a benchmark: training pools, the scored held-out cases, the grid."""

    pools: dict[str, list[CaseRef]]  # "real", "large", "real+large", "synthetic"
    heldout: list[CaseRef]
    cohort: str
    large_cohorts: list[str]
    size: tuple[int, int, int]
    spacing: list[float]
    synthetic_store: Path | None = None


def load_benchmark_data(
    real_store: str | Path,
    synthetic: str | Path | None,
    cohort: str,
    *,
    large_cohort: str | Sequence[str] | None = None,
    heldout: str = "val+test",
    needs_large: bool = True,
    needs_synthetic: bool = True,
    cache_dir: str | Path = "cache",
) -> BenchmarkData:
    """Open the real store (and ingest the synthetic cohort) and sort the cases into pools.

    ``real``: the scarce cohort's *train* cases with a mask; ``large``: the large cohorts' *train*
    cases with a mask; ``synthetic``: every synthetic case with a mask; held-out: the scarce
    cohort's cases with a mask in the ``heldout`` splits. Raises GliomagenError naming the option
    when a needed pool is empty.
    """
    from gliomagen.data.store import open_store

    splits = {s: open_store(real_store, split=s) for s in ("train", "val", "test")}
    size = tuple(int(s) for s in splits["train"].size)
    if len(size) == 2:
        raise GliomagenError(
            f"--real {real_store}: a 2D slice store; the downstream benchmark segments 3D volumes (prepare without --slices)"
        )
    seg.check_size(size, str(real_store))
    cohorts = sorted(
        {
            str(r.get("cohort", ""))
            for ds in splits.values()
            for r in getattr(ds, "index_rows", ds.rows)
        }
    )
    if cohort not in cohorts:
        raise GliomagenError(
            f"--cohort {cohort}: not in {real_store} (cohorts: {', '.join(cohorts)})"
        )
    if large_cohort is None:
        large = [c for c in cohorts if c != cohort]
    else:
        large = [large_cohort] if isinstance(large_cohort, str) else list(large_cohort)
        bad = [c for c in large if c not in cohorts or c == cohort]
        if bad:
            raise GliomagenError(
                f"--large-cohort {','.join(bad)}: not another cohort of {real_store} ({', '.join(cohorts)})"
            )
    real = store_cases(splits["train"], {cohort})
    large_cases = store_cases(splits["train"], set(large))
    held = [c for s in HELDOUT[heldout] for c in store_cases(splits[s], {cohort})]
    if not real:
        raise GliomagenError(f"--cohort {cohort}: no train cases with a mask in {real_store}")
    if not held:
        raise GliomagenError(
            f"--cohort {cohort}: no {heldout} cases with a mask in {real_store} to score"
        )
    if needs_large and not large_cases:
        raise GliomagenError(
            f"--large-cohort: {real_store} has no train cases with a mask outside {cohort} for the +large arms"
        )
    syn: list[CaseRef] = []
    syn_path = None
    if synthetic is not None:
        syn_path = synthetic_store(synthetic, size, cache_dir)
        syn = store_cases(open_store(syn_path, split=None))
        if not syn:
            raise GliomagenError(f"--synthetic {synthetic}: no synthetic cases with a mask")
    elif needs_synthetic:
        raise GliomagenError("--synthetic: a synthetic cohort is required by the synthetic arms")
    pools = {"real": real, "large": large_cases, "real+large": real + large_cases, "synthetic": syn}
    spacing = [float(s) for s in splits["train"].spacing_mm]
    return BenchmarkData(pools, held, cohort, large, size, spacing, syn_path)  # type: ignore[arg-type]


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
    if not (device == "cpu" or device.startswith("cuda")):
        raise GliomagenError(f"--device {device!r}: choose cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GliomagenError(f"--device {device}: CUDA is not available on this machine")
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
    device: str = "cpu",
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
        device: ``cpu`` or ``cuda``.
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
    results: dict[str, dict[int, dict[str, Any]]] = {a: {} for a in arm_list}
    syn_dice: dict[int, dict[str, dict[str, float]]] = {}
    for seed in seeds:
        for arm in arm_list:
            net, res = run_arm(data, arm, seed, **opts)  # type: ignore[arg-type]
            results[arm][seed] = res
            if arm == "real" and data.pools["synthetic"]:
                syn_dice[seed] = realism_dice(net, data.pools["synthetic"], batch_size, device)
            if progress:
                d = " ".join(f"{r} {res['mean'][r]['dice']:.3f}" for r in seg.REGIONS)
                print(
                    f"utility: seed {seed} {arm:<21} loss {res['loss_last']:.3f}  Dice {d}"
                    f"  ({res['seconds']:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
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
