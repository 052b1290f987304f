"""Does grade conditioning work? Train on the phantom cohort at 32^3 and judge generated structure.

Every generated sample is judged from its own mask (argmax of the logits) and images by
:mod:`gliomagen.evaluation.conditioning`: a faithful HGG has one main tumour with an enhancing rim
around a necrotic core, bright on T1Gd; a faithful LGG has one main tumour and no enhancing region
(the criteria and thresholds are documented there; the voxel counts are scaled to the store's grid
with ``JudgeThresholds.for_grid``, which leaves them unchanged at 32^3).

The judge is first applied to the real training cases (calibration), then to an untrained
generator and to G_ema at checkpoints over training (``--evals`` evenly spaced in ``--minutes``,
or in ``--steps`` optimiser steps); training runs in chunks through the public API
(``train(..., max_minutes=chunk, resume=True)``, or ``train.steps`` raised chunk by chunk with
``--steps``, which resumes exactly). With ``--steps`` the judged checkpoints do not depend on the
machine's speed or load: two runs of the same code judge the same checkpoints. Rates over time go
to stdout and ``--out`` (JSON); every judged checkpoint is copied to ``WORKDIR/evaluated/`` (the
run itself keeps only its last few).

With validation on (``--config configs/structure-vaegan.yaml``, or ``--set train.val_every=N``
with e.g. ``train.val_metric=mask``), the run's
``best.pt`` (the checkpoint the product picks) is judged at the end as well (``best_checkpoint``),
and every validation record's headline metrics are kept (``validation``).

Two further figures per checkpoint: with ``model.latent_prior=fitted`` the same generator is also
judged sampling ``z ~ N(0, I)`` (``normal_prior``), and every headline sample's whole tumour is
compared with its nearest training tumour (highest Dice; ``nearest_train_dice_*``) against the
real cases' own nearest-neighbour Dice, so that copying the training set shows.

Usage:
    python benchmarks/conditioning.py --minutes 90 --out conditioning.json
    python benchmarks/conditioning.py --store STORE --minutes 8 --evals 4 --samples 100
    python benchmarks/conditioning.py --store STORE --steps 8000 --evals 4 --samples 100
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen.config import Config, resolve_config
from gliomagen.data import open_store
from gliomagen.evaluation.conditioning import (
    JudgeThresholds,
    judge,
    judge_generator,
    nearest_dice,
    rates,
)
from gliomagen.io.atomic import write_json
from gliomagen.models import build_generator
from gliomagen.training import load_checkpoint, load_generator, train
from gliomagen.training.batches import TrainingData
from gliomagen.training.validation import read_records

Judged = dict[str, list[dict[str, Any]]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--resume`` and ``--steps`` checked against the other options)."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--store", type=Path, help="an existing 32^3 phantom store (default: build one)"
    )
    ap.add_argument("--cases", type=int, default=80, help="phantom cases when building the store")
    ap.add_argument("--preset", default="demo-cpu")
    ap.add_argument(
        "--config", type=Path, help="YAML file of overrides (e.g. configs/structure-vaegan.yaml)"
    )
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override (repeatable)"
    )
    ap.add_argument("--minutes", type=float, default=90.0, help="training budget")
    ap.add_argument(
        "--steps",
        type=int,
        help="training budget in optimiser steps instead of --minutes: an evaluation every "
        "STEPS/--evals steps, the same checkpoints whatever the machine's load",
    )
    ap.add_argument("--evals", type=int, default=6, help="checkpoints judged over the budget")
    ap.add_argument("--samples", type=int, default=100, help="samples per grade and checkpoint")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--psi",
        type=float,
        nargs="+",
        default=[1.0, 0.7],
        help="truncation values judged at every checkpoint (1 = none; the first is the headline)",
    )
    ap.add_argument("--workdir", type=Path, help="where the run goes (default: a temp folder)")
    ap.add_argument("--out", type=Path, help="JSON output")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --workdir for --minutes (or --steps) more and append to the "
        "report in --out",
    )
    args = ap.parse_args(argv)
    if args.resume and not (args.workdir and args.out and args.out.exists()):
        ap.error("--resume needs --workdir (holding run/) and an existing --out report")
    if args.steps is not None and args.steps < args.evals:
        ap.error(f"--steps {args.steps}: at least one step per evaluation (--evals {args.evals})")
    return args


def make_store(out: Path, n_cases: int, seed: int) -> Path:
    """Phantom cohort -> 32^3 store through the CLI."""
    exe = [sys.executable, "-m", "gliomagen"]
    phantoms, store = out / "phantoms", out / "store"
    subprocess.run(
        [*exe, "phantoms", "--out", str(phantoms), "--cohorts", f"GLI={n_cases}",
         "--seed", str(seed)],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [*exe, "prepare", str(phantoms), "--out", str(store), "--size", "32",
         "--labels", str(phantoms / "clinical.csv"), "--qc", "2"],
        check=True,
    )  # fmt: skip
    return store


def benchmark_config(args: argparse.Namespace) -> Config:
    """The preset with the benchmark's overrides (grade only, the store's grid) and the user's."""
    return resolve_config(
        args.preset,
        args.config,
        overrides=[
            "data.conditions=[grade]",
            "data.size=null",
            f"train.seed={args.seed}",
            "train.steps=10000000",
            *args.overrides,
        ],
    )


def new_report(args: argparse.Namespace, store_path: Path) -> dict[str, Any]:
    """The report's header, or (``--resume``) the report so far with the budget extended."""
    if args.resume:
        report: dict[str, Any] = json.loads(args.out.read_text())
        if args.steps is not None:
            report["steps"] = int(report.get("steps") or 0) + args.steps
        else:
            report["minutes"] = float(report.get("minutes") or 0.0) + args.minutes
        return report
    report = {
        "store": str(store_path),
        "preset": args.preset,
        "config": str(args.config) if args.config else None,
        "overrides": args.overrides,
        "minutes": args.minutes if args.steps is None else None,
        "samples_per_grade": args.samples,
        "evals": [],
    }
    if args.steps is not None:
        report["steps"] = args.steps
    return report


def calibrate(store: Any, thresholds: JudgeThresholds) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The judge on the real training cases, and their whole-tumour masks.

    Returns:
        The real cases' rates (with their counts and nearest-neighbour Dice), and every training
        case's whole-tumour mask (bool ``[D, H, W]``; cases without a mask are left out).
    """
    real: Judged = {"HGG": [], "LGG": []}
    train_tumours = []
    for i in range(len(store)):
        img, mask, _, _ = store[i]
        grade = store.rows[i].get("grade")
        if bool(store.has_mask[i]):
            train_tumours.append(mask.numpy() > 0)
        if grade in real and bool(store.has_mask[i]):
            real[grade].append(judge(img.numpy(), mask.numpy(), thresholds))
    summary = {
        **rates(real),
        "n_HGG": len(real["HGG"]),
        "n_LGG": len(real["LGG"]),
        # how alike two different real tumours get: the yardstick for the samples' figure
        "nearest_train_dice_median": float(
            np.median(nearest_dice(train_tumours, train_tumours, exclude_self=True))
        ),
    }
    return summary, train_tumours


def judge_untrained(
    cfg: Config, store: Any, store_path: Path, args: argparse.Namespace, th: JudgeThresholds
) -> dict[str, float]:
    """The rates of a freshly initialised generator (seeded with ``train.seed``)."""
    data = TrainingData(store, cfg, str(store_path))
    torch.manual_seed(cfg.train.seed)
    G0 = build_generator(cfg, data.schema, data.size, data.n_modalities).eval()
    return rates(judge_generator(G0, data.schema, args.samples, args.seed + 1, thresholds=th))


def newest_step_checkpoint(run: Path) -> Path:
    """The run's newest ``step-*.pt``."""
    return sorted((run / "checkpoints").glob("step-*.pt"))[-1]


def train_chunk(
    cfg: Config, store: Any, run: Path, args: argparse.Namespace, k: int, start_step: int
) -> None:
    """Train the ``k``-th of ``--evals`` chunks: ``--minutes / --evals`` minutes, or up to step
    ``start_step + k+1 / --evals`` of ``--steps`` (``train.steps`` raised, the run resumed)."""
    resume = k > 0 or args.resume
    if args.steps is None:
        chunk = args.minutes / args.evals
        train(cfg, store, run, resume=resume, max_minutes=chunk, progress=False)
        return
    target = start_step + args.steps * (k + 1) // args.evals
    cfg_k = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=target))
    train(cfg_k, store, run, resume=resume, max_minutes=None, progress=False)


def judge_by_psi(
    G: Any, schema: Any, meta: dict[str, Any], args: argparse.Namespace, th: JudgeThresholds
) -> tuple[dict[str, dict[str, float]], list[np.ndarray]]:
    """Rates at every ``--psi``, and the headline (first) psi's whole-tumour masks."""
    by_psi, tumours = {}, []
    for psi in args.psi:
        by_psi[str(psi)] = rates(
            judge_generator(
                G, schema, args.samples, args.seed + 1, psi=psi, w_avg=meta.get("w_avg"),
                tumours=tumours if psi == args.psi[0] else None, thresholds=th,
            )
        )  # fmt: skip
    return by_psi, tumours


def evaluate_newest(
    run: Path,
    work: Path,
    args: argparse.Namespace,
    train_tumours: list[np.ndarray],
    t_start: float,
    th: JudgeThresholds,
) -> dict[str, Any]:
    """Judge the run's newest checkpoint (kept in ``WORKDIR/evaluated/``): one report entry."""
    G, schema, _, meta = load_generator(run)
    ck_path = newest_step_checkpoint(run)
    ck = load_checkpoint(ck_path)
    kept = work / "evaluated" / ck_path.name  # the run keeps its last few; these stay
    kept.parent.mkdir(exist_ok=True)
    shutil.copy2(ck_path, kept)
    by_psi, tumours = judge_by_psi(G, schema, meta, args, th)
    near = nearest_dice(tumours, train_tumours)
    entry = {
        "train_minutes": ck["train_state"]["elapsed_s"] / 60,
        "step": int(ck["step"]),
        "psi": args.psi[0],
        "latent_prior": "fitted" if G.mapping.prior_is_fitted else "normal",
        **by_psi[str(args.psi[0])],
        "by_psi": by_psi,
        # each sample's tumour against its closest training tumour (copies score ~1)
        "nearest_train_dice_median": float(np.median(near)),
        "nearest_train_dice_p90": float(np.percentile(near, 90)),
        "wall_minutes": (time.time() - t_start) / 60,
        "checkpoint": str(kept),
    }
    if G.mapping.prior_is_fitted:  # the same generator sampled from N(0, I), for comparison
        G.mapping.reset_prior()
        entry["normal_prior"] = rates(
            judge_generator(G, schema, args.samples, args.seed + 1, thresholds=th)
        )
        by_psi["1.0 N(0,I)"] = entry["normal_prior"]
    return entry


def print_entry(entry: dict[str, Any], real_dice_median: float) -> None:
    """One line per judged psi, then the nearest-training-tumour figure."""
    for psi, rp in entry["by_psi"].items():
        print(
            f"{entry['train_minutes']:6.1f} min  step {entry['step']:6d}  psi {psi}  "
            f"faithful HGG {rp['faithful_HGG']:.2f}  LGG {rp['faithful_LGG']:.2f}  "
            f"(tumour present HGG {rp['tumour_HGG']:.2f}, LGG {rp['tumour_LGG']:.2f}; "
            f"HGG enhancing {rp['HGG_ok_et']:.2f} core {rp['HGG_ok_ncr']:.2f} "
            f"rim {rp['HGG_ok_rim']:.2f} bright {rp['HGG_bright']:.2f}; "
            f"LGG with enhancing {rp['LGG_any_et_region']:.2f})",
            flush=True,
        )
    print(
        f"{'':6s}      tumours vs their nearest training tumour: median Dice "
        f"{entry['nearest_train_dice_median']:.2f} (90th percentile "
        f"{entry['nearest_train_dice_p90']:.2f}; real cases among themselves "
        f"{real_dice_median:.2f})",
        flush=True,
    )


def validation_summary(run: Path) -> list[dict[str, Any]]:
    """Every validation record's step, metric, improvement and headline metrics."""
    return [
        {"step": rec["step"], "metric": rec["metric"], "improved": rec["improved"],
         **{k: rec["metrics"].get(k) for k in ("fd", "kid", "fidelity", "mask")}}
        for rec in read_records(run)
    ]  # fmt: skip


def judge_best(run: Path, args: argparse.Namespace, th: JudgeThresholds) -> dict[str, Any] | None:
    """Judge the run's ``best.pt`` (validation's choice) at the headline psi; None without one."""
    best_path = run / "checkpoints" / "best.pt"
    if not best_path.is_file():
        return None
    G, schema, _, meta = load_generator(best_path)
    ck = load_checkpoint(best_path)
    r = rates(judge_generator(G, schema, args.samples, args.seed + 1, psi=args.psi[0],
                              w_avg=meta.get("w_avg"), thresholds=th))  # fmt: skip
    best = {
        "step": int(ck["step"]),
        "train_minutes": ck["train_state"]["elapsed_s"] / 60,
        "val_metric": ck["validation"]["metric"],
        "val_value": ck["validation"]["value"],
        "psi": args.psi[0],
        **r,
    }
    print(
        f"best.pt (validation's choice by {ck['validation']['metric']}): step {int(ck['step'])}"
        f" ({best['train_minutes']:.1f} min)  faithful HGG "
        f"{r['faithful_HGG']:.2f}  LGG {r['faithful_LGG']:.2f}",
        flush=True,
    )
    return best


def write_report(out: Path | None, report: dict[str, Any], run: Path) -> None:
    """Write the JSON report atomically (NaN as null); nothing without ``--out``."""
    if out is None:
        return
    report["run"] = str(run)
    write_json(out, report)


def main(argv: list[str] | None = None) -> None:
    """Calibrate on the real cases, then train in ``--evals`` chunks and judge after each."""
    args = parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gliomagen-cond-"))
    work.mkdir(parents=True, exist_ok=True)
    store_path = args.store or make_store(work, args.cases, args.seed)
    store = open_store(store_path, split="train")
    cfg = benchmark_config(args)
    th = JudgeThresholds.for_grid(store.size)
    report = new_report(args, store_path)
    report["real"], train_tumours = calibrate(store, th)
    print(f"real training cases: {report['real']}")
    if not args.resume:
        report["untrained"] = judge_untrained(cfg, store, store_path, args, th)
        print(f"untrained: {report['untrained']}")
    run = work / "run"
    start_step = int(load_checkpoint(newest_step_checkpoint(run))["step"]) if args.resume else 0
    t_start = time.time()
    for k in range(args.evals):
        train_chunk(cfg, store, run, args, k, start_step)
        entry = evaluate_newest(run, work, args, train_tumours, t_start, th)
        report["evals"].append(entry)
        print_entry(entry, report["real"]["nearest_train_dice_median"])
        report["validation"] = validation_summary(run)
        write_report(args.out, report, run)  # after every evaluation: a stopped run keeps them
    best = judge_best(run, args, th)
    if best is not None:
        report["best_checkpoint"] = best
        write_report(args.out, report, run)
    if args.out:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
