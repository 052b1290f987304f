"""Downstream segmentation benchmark on the phantom cohort: does synthetic SSA data help a segmenter?

Design (what runs, and why; the statistics are in gliomagen.evaluation.utility):

- Data (built once, cached under ``OUT/work``): one phantom cohort (``--cohort-seed``, 0): GLI, the large
  cohort (``--gli`` training cases + ``--gli-val`` val cases that only the generator's validation
  reads), and SSA, the scarce one: a pool of ``--ssa-pool`` training cases, ``--ssa-val`` val cases
  (every arm's checkpoint is chosen on them) and ``--ssa-test`` test cases (scored once; phantoms
  are free, so the test set is large). ``OUT/work/split.csv`` (case_id,split) fixes the split; the
  SSA pool is in a seeded nested order (``ssa-order.txt``): the n=4 cases are among the n=8, which
  are among the n=16. ONE real store is prepared with that split (``build_store(...,
  split_csv=)``, as ``gliomagen prepare --split-csv``) and checked case by case.
- Generator training store per n: a manifest of the GLI cases and the first n SSA training cases
  only (GLI val as its val split), so a generator trained on it never sees an SSA val or test case
  and trains on exactly the segmenter's training cases. The script prints the command to train it
  (``gliomagen train GEN_STORE --run RUN --max-minutes 90``); pass the result with ``--checkpoint``
  or let ``--train-generator-minutes M`` run that command for the smallest n (cached).
- Synthetic SSA cohort: ``generate_cohort(ckpt, n = max multiple x n, conditions = one row per
  real SSA training case with its cohort and grade)``, so the mix follows the real cases; the
  library takes ``M`` x n of them per multiple (``--synthetic-multiple 1,4``) by cohort and grade.
- Stand-in (``--stand-in``, on by default): phantom SSA cases drawn with the next seed from the same
  simulator: the upper bound a perfect generator would reach (arms ``real+stand-in`` etc.).
- Headroom (the stand-in must add >= 5 points of mean region Dice to ``real``): the segmenter's
  budget decides it. At 600 steps per arm (the earlier default) no design showed it (5 seeds each;
  docs/experiments/2026-12-07-utility-and-conditioning.md): the package's phantoms at n=16 (stand-in
  +0.7 / +1.2 points at 1x / 4x), the hard SSA cohort at n=4 (+3.1 / +3.0) and n=16 (+1.5 / +2.1):
  the real arm converged, but the arms with more data had not used it. At 2000 steps (the default
  now; the real arm still peaks on val by step ~1000) the hard cohort at n=16 shows +6.5 points for
  the stand-in at 4x and +2.9 at 1x (5 seeds; docs/experiments/2026-12-07-utility-headroom.md). The segmenter is
  region-based (WT/TC/ET sigmoids, Dice + BCE, the BraTS recipe): with a 4-class softmax it never
  predicted ET at 32^3. The defaults are the hard cohort (``--phantoms hard``: SNR 8-20, bias 0.25,
  per-subject tissue contrast jitter 0.25) and n in {8, 16, 32} (the issue's sizes; n=16 is the
  one the targets name); the report's checks say, for every n, whether the headroom is there.

Time (2-core CPU, idle, 2 jobs of 1 thread): one arm at 32^3 (U-Net, 8 filters, batch 2, region
outputs) costs about 60 s at the defaults (2000 steps, val every 100 on 16 cases, 64 test cases
scored with Dice + HD95). At n=16 with a generator: 17 arms x 5 seeds = 85 runs + 5 pretrainings,
about 45 minutes with ``--jobs 2`` (two single-threaded processes side by side on two free
cores); n in {8, 16, 32} with a generator each about 2 hours.

Numbers are reproducible for a seed on one machine (same torch build and thread count).

Usage::

    .venv/bin/python benchmarks/utility.py --out out/benchmarks/utility               # real + stand-in
    .venv/bin/python benchmarks/utility.py --train-generator-minutes 90               # full run
    .venv/bin/python benchmarks/utility.py --checkpoint 4=runs/ssa4 --checkpoint 16=runs/ssa16
    .venv/bin/python benchmarks/utility.py --quick --out /tmp/u                       # tests
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen.data.phantoms import generate_cohort as phantom_cohort
from gliomagen.data.phantoms.params import PhantomParams
from gliomagen.data.store import build_store, open_store
from gliomagen.evaluation.utility import ARMS, STAND_IN_ARMS, format_table, run_utility
from gliomagen.evaluation.utility_html import write_outputs
from gliomagen.generation import generate_cohort
from gliomagen.generation.plan import split_assignments
from gliomagen.io.atomic import write_text
from gliomagen.io.checkpoint import load_checkpoint, resolve_checkpoint

QUICK = dict(gli=6, gli_val=2, ssa_pool=8, ssa_val=3, ssa_test=6, n="2,4", size=16, steps=4, val_every=2,
             pretrain_steps=3, seeds="0", synthetic_multiple="1,2", init_filters=4, n_boot=200)  # fmt: skip


def phantom_params(kind: str) -> PhantomParams:
    """``default``: the package's phantoms. ``hard``: a heterogeneous SSA cohort (the headroom
    fix): SNR 8-20 instead of 14-20, bias field 0.25 instead of 0.12, and per-subject tissue
    contrast jitter 0.25 instead of 0.05 (every cohort) - site and scanner variability that a few
    training cases do not cover, so more cases help."""
    base = PhantomParams()
    if kind == "default":
        return base
    ssa = base.cohorts["SSA"]
    acq = dataclasses.replace(ssa.acquisition, snr=(8.0, 20.0), bias_sigma=0.25)
    return dataclasses.replace(
        base, contrast=dataclasses.replace(base.contrast, class_jitter_sigma=0.25),
        cohorts={**base.cohorts, "SSA": dataclasses.replace(ssa, acquisition=acq)},
    )  # fmt: skip


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    a = p.add_argument
    a("--out", type=Path, default=Path("out/benchmarks/utility"), help="output folder")
    a("--n", action="append", default=None, help="real SSA training cases (repeatable or comma list; "
      "default 8,16,32; the smallest is the headline)")  # fmt: skip
    a("--synthetic-multiple", default="1,4", help="synthetic cases per real case, comma list")
    a("--checkpoint", action="append", default=[], help="[N=]generator checkpoint or run folder trained on the "
      "n=N training store (default N: the smallest --n); repeatable")  # fmt: skip
    a("--synthetic", action="append", default=[], help="[N=]an already generated synthetic SSA cohort folder")
    a("--train-generator-minutes", type=float, default=None, help="train the generator of the smallest n here "
      "with `gliomagen train`'s defaults (cached)")  # fmt: skip
    a("--anatomy-from", action="append", default=[], help="name=value: generate the synthetic cases as "
      "`gliomagen generate --anatomy-from` does (e.g. cohort=GLI: the large cohort's anatomy); repeatable")
    a("--unset", choices=("drawn", "blended"), default="drawn", help="how the synthetic rows' unset conditions "
      "are drawn (`gliomagen generate --unset`)")
    a("--phantoms", choices=("hard", "default"), default="hard", help="SSA phantoms (see phantom_params)")
    a("--cohort-seed", type=int, default=0,
      help="the phantom cohort's seed (the stand-in uses this + 1); use a fresh --out per cohort")
    a("--outputs", choices=("regions", "labels"), default="regions", help="segmenter outputs")
    a("--arms", default=None, help="comma list of arms (names as in the report, @Mx allowed; "
      "default: every arm at every --synthetic-multiple)")
    a("--ssa-order", type=Path, default=None, help="the SSA cases' order (pool, then val, then test), "
      "e.g. the one an existing generator's training store used; default: seeded")
    a("--stand-in", action=argparse.BooleanOptionalAction, default=True, help="the perfect-generator arms")
    a("--steps", type=int, default=2000, help="optimiser steps of every arm")
    a("--val-every", type=int, default=100, help="steps between val scores (checkpoint choice)")
    a("--pretrain-steps", type=int, default=2000, help="large-cohort steps of large-then-real")
    a("--seeds", default="0,1,2,3,4")
    a("--threads", type=int, default=1, help="torch threads per run")
    a("--jobs", type=int, default=2, help="runs in parallel (processes with --threads threads each)")
    a("--batch-size", type=int, default=2)
    a("--mix-ratio", type=float, default=0.5)
    a("--network", default="unet", help="unet (fast on CPU) or segresnet")
    a("--init-filters", type=int, default=8)
    a("--lr", type=float, default=1e-3)
    a("--device", default="cpu")
    a("--size", type=int, default=32, help="store grid (cube side, a multiple of 8)")
    a("--gli", type=int, default=60, help="GLI training cases (the large cohort)")
    a("--gli-val", type=int, default=4, help="GLI val cases (the generator's validation only)")
    a("--ssa-pool", type=int, default=32, help="SSA training pool (the largest n)")
    a("--ssa-val", type=int, default=16, help="SSA val cases (checkpoint choice)")
    a("--ssa-test", type=int, default=64, help="SSA test cases (scored)")
    a("--n-boot", type=int, default=2000, help="bootstrap resamples")
    a("--workers", type=int, default=2, help="processes for phantoms and prepare")
    a("--quick", action="store_true", help="tiny sizes for tests (16^3, a few cases and steps)")
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            if p.get_default(k) == getattr(args, k):
                setattr(args, k, v)
    args.n = sorted({int(x) for s in (args.n or ["8,16,32"]) for x in str(s).split(",") if x})
    args.multiples = sorted({int(x) for x in args.synthetic_multiple.split(",") if x})
    if max(args.n) > args.ssa_pool:
        p.error(f"--n {max(args.n)}: larger than --ssa-pool {args.ssa_pool}")
    return args


def _keyed(items: list[str], default_n: int) -> dict[int, Path]:
    """``["16=path", "path"]`` -> ``{16: path, default_n: path}``."""
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        out[int(k) if sep else default_n] = Path(v if sep else k)
    return out


# -- data ---------------------------------------------------------------------------------------
def phantoms(work: Path, args: argparse.Namespace) -> Path:
    """The phantom cohort (seed ``--cohort-seed``): GLI train + val, SSA pool + val + test."""
    gli, ssa = args.gli + args.gli_val, args.ssa_pool + args.ssa_val + args.ssa_test
    src = work / f"phantoms-{args.phantoms}-gli{gli}-ssa{ssa}-seed{args.cohort_seed}"
    if not (src / "clinical.csv").is_file():
        phantom_cohort(src, {"GLI": gli, "SSA": ssa}, resolution=2, seed=args.cohort_seed, workers=args.workers,
                       progress=False, params=phantom_params(args.phantoms))  # fmt: skip
    return src


def write_split(work: Path, clinical: Path, args: argparse.Namespace) -> tuple[Path, list[str]]:
    """``split.csv`` (case_id,split) and the SSA training pool's nested order (seeded)."""
    with open(clinical, newline="") as fh:
        rows = list(csv.DictReader(fh))
    gli = sorted(r["case_id"] for r in rows if r["cohort"] == "GLI")
    ssa = sorted(r["case_id"] for r in rows if r["cohort"] == "SSA")
    if args.ssa_order is not None:  # a given order (e.g. the one an existing generator trained on)
        given = read_order(args.ssa_order)
        if sorted(given) != ssa:
            raise SystemExit(f"--ssa-order {args.ssa_order}: not the {len(ssa)} SSA case ids of {clinical}")
        ssa = given
    else:
        ssa = [ssa[i] for i in np.random.default_rng(12345).permutation(len(ssa))]
    split = {c: "train" for c in gli[: args.gli]} | {c: "val" for c in gli[args.gli :]}
    split |= {c: "train" for c in ssa[: args.ssa_pool]}
    split |= {c: "val" for c in ssa[args.ssa_pool : args.ssa_pool + args.ssa_val]}
    split |= {c: "test" for c in ssa[args.ssa_pool + args.ssa_val :]}
    path = work / "split.csv"
    write_text(path, "case_id,split\n" + "".join(f"{c},{s}\n" for c, s in sorted(split.items())))
    write_text(work / "ssa-order.txt", "\n".join(ssa[: args.ssa_pool]) + "\n")
    return path, ssa[: args.ssa_pool]


def read_order(path: Path) -> list[str]:
    """Case ids in order: the first column of a CSV with a ``case_id`` header, or one id per line."""
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if lines and lines[0].split(",")[0] == "case_id":
        lines = lines[1:]
    return [ln.split(",")[0] for ln in lines]


def _read_split(path: Path) -> dict[str, str]:
    with open(path, newline="") as fh:
        return {r["case_id"]: r["split"] for r in csv.DictReader(fh)}


def _store_splits(store: Path) -> dict[str, str]:
    ds = open_store(store)
    return {c: r["split"] for c, r in zip(ds.case_ids, ds.index_rows, strict=True)}


def prepare(sources: list[Path], out: Path, split_csv: Path, **kw: Any) -> Path:
    """A store whose split is exactly ``split_csv`` (checked case by case)."""
    want = _read_split(split_csv)
    build_store(sources, out, split_csv=split_csv, progress=False, **kw)
    got = _store_splits(out)
    if got != want:
        bad = sorted(c for c in want if got.get(c) != want[c])
        raise SystemExit(f"{out}: split differs from {split_csv} for {len(bad)} cases, e.g. {bad[:3]}")
    return out


def generator_store(work: Path, src: Path, order: list[str], n: int, args: argparse.Namespace) -> Path:
    """The generator's training store for n: the GLI cases and the first n SSA training cases only
    (GLI val cases as its val split, for the generator's own validation)."""
    split = _read_split(work / "split.csv")
    cases = [c for c, s in sorted(split.items()) if c.startswith("BraTS-GLI")] + order[:n]
    with open(src / "clinical.csv", newline="") as fh:
        labels = {r["case_id"]: r for r in csv.DictReader(fh)}
    man, gsplit = io.StringIO(), io.StringIO()
    w = csv.writer(man)
    w.writerow(["case_id", "t1n", "t1c", "t2w", "t2f", "seg", "cohort", "grade", "age", "sex"])
    for c in cases:
        d = (src / c).resolve()
        w.writerow([c, *(d / f"{c}-{m}.nii.gz" for m in ("t1n", "t1c", "t2w", "t2f", "seg")),
                    *(labels[c][k] for k in ("cohort", "grade", "age", "sex"))])  # fmt: skip
    gsplit.write("case_id,split\n" + "".join(f"{c},{'val' if split[c] == 'val' else 'train'}\n" for c in cases))
    (work / "manifests").mkdir(exist_ok=True)
    write_text(work / "manifests" / f"generator-n{n}.csv", man.getvalue())
    write_text(work / "manifests" / f"generator-n{n}-split.csv", gsplit.getvalue())
    return prepare([work / "manifests" / f"generator-n{n}.csv"], work / f"generator-store-n{n}",
                   work / "manifests" / f"generator-n{n}-split.csv", size=args.size, workers=args.workers)  # fmt: skip


def train_generator(work: Path, store: Path, n: int, minutes: float) -> Path:
    """``gliomagen train STORE --run RUN --max-minutes M`` (the command's defaults), once."""
    run = work / f"generator-run-n{n}-{minutes:g}min"
    done = work / f"generator-run-n{n}-{minutes:g}min.done"
    if not done.is_file():
        cmd = [sys.executable, "-m", "gliomagen", "train", str(store), "--run", str(run),
               "--max-minutes", f"{minutes:g}", "--quiet"]  # fmt: skip
        print("training the generator:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        write_text(done, f"{minutes:g}\n")
    return run


def synthetic_cohort(work: Path, ckpt: Path, store: Path, order: list[str], n: int,
                     args: argparse.Namespace) -> Path:  # fmt: skip
    """``max multiple`` x n generated SSA cases, one condition row per real training case."""
    ds = open_store(store)
    grade = {c: r.get("grade") for c, r in zip(ds.case_ids, ds.index_rows, strict=True)}
    rows = [{"cohort": "SSA", "grade": grade[c], "weight": 1} for c in order[:n]]
    f = resolve_checkpoint(ckpt)
    anatomy = split_assignments(args.anatomy_from, "--anatomy-from") if args.anatomy_from else None
    key = hashlib.sha256(f"{f.resolve()}|{f.stat().st_size}|{f.stat().st_mtime_ns}".encode()).hexdigest()[:8]
    tag = "".join(f"-{k}{v}" for k, v in sorted((anatomy or {}).items()))
    unset = getattr(args, "unset", "drawn")
    out = work / (f"synthetic-n{n}-x{max(args.multiples)}-{key}{'-anatomy' + tag if anatomy else ''}"
                  f"{'-' + unset if unset != 'drawn' else ''}")  # fmt: skip
    if not (out / "clinical.csv").is_file():
        generate_cohort(f, out, n=max(args.multiples) * n, conditions=rows, seed=1000, device=args.device,
                        progress=False, anatomy_from=anatomy, unset=unset)  # fmt: skip
    return out


def stand_in(work: Path, args: argparse.Namespace) -> Path:
    """Phantom SSA cases from the same simulator, seed ``--cohort-seed`` + 1 (twice what the largest
    pool needs, so every grade has enough cases for the real cases' mix)."""
    k, seed = 2 * max(args.multiples) * max(args.n), args.cohort_seed + 1
    out = work / f"stand-in-{args.phantoms}-ssa{k}-seed{seed}"
    if not (out / "clinical.csv").is_file():
        phantom_cohort(out, {"SSA": k}, resolution=2, seed=seed, workers=args.workers, progress=False,
                       params=phantom_params(args.phantoms))  # fmt: skip
    return out


# -- the run ------------------------------------------------------------------------------------
def _full_volume(ckpt: Path) -> bool:
    """Whether a checkpoint's model is full-volume (its D scores whole cases: the attack through D)."""
    return not bool(load_checkpoint(resolve_checkpoint(ckpt))["config"]["model"].get("hierarchical"))


def _sources(work: Path, src: Path, order: list[str], args: argparse.Namespace) -> dict[int, tuple[Path, str, Path | None]]:
    """Per n, the synthetic cohort, a note on where it came from and the generator checkpoint whose
    discriminator the privacy report's attack scores (full-volume models; only n with a generator)."""
    ckpts, given = _keyed(args.checkpoint, args.n[0]), _keyed(args.synthetic, args.n[0])
    out: dict[int, tuple[Path, str, Path | None]] = {}
    for n in args.n:
        gstore = generator_store(work, src, order, n, args)
        print(f"n={n}: generator training store {gstore}; train it with:\n  gliomagen train {gstore} "
              f"--run {work / f'generator-run-n{n}'} --max-minutes 90", flush=True)  # fmt: skip
        if n == args.n[0] and n not in ckpts and args.train_generator_minutes is not None:
            ckpts[n] = train_generator(work, gstore, n, args.train_generator_minutes)
        if n in given:
            out[n] = (given[n], f"synthetic SSA cases from {given[n]}", None)
        elif n in ckpts:
            folder = synthetic_cohort(work, ckpts[n], gstore, order, n, args)
            anat = f"; anatomy from {', '.join(args.anatomy_from)}" if args.anatomy_from else ""
            out[n] = (folder, f"synthetic SSA cases generated by {resolve_checkpoint(ckpts[n])}, trained on "
                              f"{gstore} (GLI + these n={n} SSA cases); one condition row per real case{anat}",
                      resolve_checkpoint(ckpts[n]) if _full_volume(ckpts[n]) else None)  # fmt: skip
    return out


def _arms(has_synthetic: bool, has_stand_in: bool) -> list[str]:
    arms = [a for a in ARMS if has_synthetic or "synthetic" not in a]
    return arms + (list(STAND_IN_ARMS) if has_stand_in else [])


def _select(args: argparse.Namespace, has_synthetic: bool, has_stand_in: bool) -> list[str]:
    """``--arms`` (those whose source exists) or every arm."""
    if args.arms is None:
        return _arms(has_synthetic, has_stand_in)
    keep = [a.strip() for a in args.arms.split(",") if a.strip()]
    return [a for a in keep if (has_synthetic or "synthetic" not in a) and (has_stand_in or "stand-in" not in a)]


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    src = phantoms(work, args)
    split_csv, order = write_split(work, src / "clinical.csv", args)
    real = prepare([src], work / f"store-{src.name}-{args.size}", split_csv, labels_csv=src / "clinical.csv",
                   size=args.size, workers=args.workers)  # fmt: skip
    syn = _sources(work, src, order, args)
    std = stand_in(work, args) if args.stand_in else None
    t_data = time.perf_counter() - t0
    print(f"data ready in {t_data:.0f} s: real store {real}; synthetic for n in {sorted(syn)}; stand-in {std}")
    runs: dict[str, Any] = {}
    timing: dict[str, Any] = {"seconds_data": t_data, "runs": {}}
    for n in args.n:
        t1 = time.perf_counter()
        folder, note, disc = syn.get(n, (None, "no generator for this n: real-data and stand-in arms only", None))
        rep = run_utility(
            real, folder, "SSA", args.out / f"n{n}", arms=_select(args, folder is not None, std is not None),
            seeds=[int(s) for s in args.seeds.split(",")], steps=args.steps, batch_size=args.batch_size,
            mix_ratio=args.mix_ratio, network=args.network, device=args.device, lr=args.lr,
            init_filters=args.init_filters, cache_dir=work, synthetic_note=note, val_every=args.val_every,
            pretrain_steps=args.pretrain_steps, synthetic_multiples=args.multiples, real_cases=order[:n],
            stand_in=std, jobs=args.jobs, threads=args.threads, n_boot=args.n_boot, outputs=args.outputs,
            discriminator=disc,
        )  # fmt: skip
        runs[f"n = {n}"] = rep
        timing["runs"][str(n)] = time.perf_counter() - t1
        print(f"\n== n = {n} ==\n{format_table(rep)}")
    timing["seconds_total"] = time.perf_counter() - t0
    doc = {"benchmark": {"args": {k: str(v) for k, v in vars(args).items()}, "timing": timing,
                         "split_csv": str(split_csv), "ssa_order": order, "design": __doc__},
           "runs": runs}  # fmt: skip
    notes = [" ".join(b.split()).lstrip("- ").replace("``", "") for b in __doc__.split("\n\n")[2].split("\n- ")]
    notes += [
             f"Wall time: data {t_data:.0f} s, runs {', '.join(f'n={k}: {v:.0f} s' for k, v in timing['runs'].items())}, "
             f"total {timing['seconds_total']:.0f} s ({args.jobs} jobs x {args.threads} threads)."]  # fmt: skip
    write_outputs(doc, args.out, runs=runs, notes=notes)
    print(f"\ntotal {timing['seconds_total']:.0f} s; wrote {args.out / 'utility.json'}, {args.out / 'index.html'}")


if __name__ == "__main__":
    main()
