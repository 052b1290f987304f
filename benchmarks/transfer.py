"""Cohort transfer (issue 24): does a GLI-pretrained generator learn the scarce SSA cohort faster?

Design (phantom cohorts, one seed; every stage cached under ``OUT/work``):

- Data: ``gliomagen phantoms`` (seed 0, 2 mm): ``--gli`` GLI cases and ``--ssa-train`` +
  ``--ssa-test`` SSA cases. Three stores at ``--size`` with every label: ``gli`` (GLI only, all
  train), ``ssa`` (the SSA training cases; the held-out SSA cases as its ``test`` split) and
  ``joint`` (both training sets; the same ``test`` split).
- Pretraining: ``gliomagen train gli --run pretrain --max-minutes P`` (the default recipe).
- Arms, ``--minutes M`` each, checkpoints every ``--checkpoint-every`` steps (all kept):
  (a) ``scratch``: ``train ssa`` from random weights; (b) ``finetune``: ``train ssa --init
  pretrain --init-map cohort=SSA:GLI`` plus ``--finetune-set`` options (e.g.
  ``model.d_freeze_blocks=2``); (c) ``joint``: ``train joint`` conditioned on cohort.
- Over time (each checkpoint's own training seconds): the probe FD / KID of ``--samples`` samples
  conditioned on the held-out SSA cases' labels against those cases (one probe and one reference
  for every arm, cached; the floor: the SSA training cases against the same held-out cases), the
  structural conditioning judge (``--judge`` samples per grade, cohort SSA, the other conditions
  drawn), and the acquisition shift: the high-pass noise level (standard deviation of the image
  minus its Gaussian-smoothed self, sigma 1 voxel, inside the brain 3 voxels from its edge, mean
  over modalities) of the
  samples against the held-out real SSA cases'.
- Targets (issue 24): (b) reaches (a)'s final FD in at most a third of (a)'s minutes; (b)'s noise
  level within 10% of real SSA's. The utility gain of (b) against (c): the script prints the
  ``benchmarks/utility.py --phantoms default --n 16 --ssa-order OUT/work/ssa-order.csv
  --checkpoint 16=RUN`` command of each (its n=16 SSA cases are the generators' training cases).

Load: run it on an otherwise idle machine (two processes beside a training halve its steps).

Usage::

    python benchmarks/transfer.py --out out/transfer                   # 60 + 3 x 30 minutes
    python benchmarks/transfer.py --out out/transfer --stage evaluate   # re-measure the checkpoints
    python benchmarks/transfer.py --quick --out /tmp/t                  # tests: tiny, seconds
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import binary_erosion, gaussian_filter

from gliomagen.data.phantoms import generate_cohort as phantom_cohort
from gliomagen.evaluation import suite
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.conditioning import JudgeThresholds, judge_generator, rates
from gliomagen.evaluation.heldout import HeldOutCheck, generate_samples
from gliomagen.evaluation.inputs import from_store
from gliomagen.io.atomic import write_json, write_text
from gliomagen.io.checkpoint import list_checkpoints, load_checkpoint
from gliomagen.models.loading import load_generator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from utility import prepare  # noqa: E402  (the benchmark scripts share their store helper)

ARMS = ("scratch", "finetune", "joint")
QUICK = dict(gli=6, ssa_train=4, ssa_test=4, size=16, pretrain_minutes=0.0, minutes=0.0, pretrain_steps=4,
             steps=4, checkpoint_every=2, samples=4, judge=2)  # fmt: skip


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    a = p.add_argument
    a("--out", type=Path, default=Path("out/benchmarks/transfer"), help="output folder")
    a("--stage", choices=("all", "data", "train", "evaluate"), default="all")
    a("--gli", type=int, default=200, help="GLI cases (all pretraining and joint training cases)")
    a("--ssa-train", type=int, default=16, help="SSA training cases")
    a("--ssa-test", type=int, default=48, help="held-out SSA cases (FD, noise level)")
    a("--size", type=int, default=32, help="store grid (cube side)")
    a("--pretrain-minutes", type=float, default=60.0)
    a("--minutes", type=float, default=30.0, help="training minutes of each arm")
    a("--pretrain-steps", type=int, default=None, help="instead of minutes: steps (reproducible)")
    a("--steps", type=int, default=None, help="instead of minutes: steps of each arm")
    a("--checkpoint-every", type=int, default=500, help="steps between the arms' checkpoints")
    a("--finetune-set", action="append", default=[], help="extra --set of the finetune arm")
    a("--samples", type=int, default=48, help="samples per checkpoint for FD / KID / noise")
    a("--judge", type=int, default=50, help="judge samples per grade per checkpoint")
    a("--workers", type=int, default=2)
    a("--quick", action="store_true", help="tiny sizes for tests")
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    return args


# -- data -----------------------------------------------------------------------------------------
def stores(work: Path, args: argparse.Namespace) -> dict[str, Path]:
    """The phantom cohort and the gli / ssa / joint stores (cached)."""
    src = work / f"phantoms-gli{args.gli}-ssa{args.ssa_train + args.ssa_test}-seed0"
    if not (src / "clinical.csv").is_file():
        phantom_cohort(src, {"GLI": args.gli, "SSA": args.ssa_train + args.ssa_test}, resolution=2,
                       seed=0, workers=args.workers, progress=False)  # fmt: skip
    with open(src / "clinical.csv", newline="") as fh:
        labels = {r["case_id"]: r for r in csv.DictReader(fh)}
    gli = sorted(c for c, r in labels.items() if r["cohort"] == "GLI")
    ssa = sorted(c for c, r in labels.items() if r["cohort"] == "SSA")
    ssa = [ssa[i] for i in np.random.default_rng(12345).permutation(len(ssa))]
    train_ssa, test_ssa = ssa[: args.ssa_train], ssa[args.ssa_train :]
    plans = {
        "gli": {c: "train" for c in gli},
        "ssa": {c: "train" for c in train_ssa} | {c: "test" for c in test_ssa},
        "joint": {c: "train" for c in gli + train_ssa} | {c: "test" for c in test_ssa},
    }
    # the utility benchmark's SSA order (--ssa-order): these training cases first, so that its
    # n=16 arms train on exactly the cases the generators saw (phantom case i is the same case in
    # any cohort of the same seed); 112 ids = its default pool + val + test
    rest = [f"BraTS-SSA-{i:05d}-000" for i in range(112)]
    rest = [c for c in rest if c not in set(train_ssa)]
    write_text(work / "ssa-order.csv", "case_id\n" + "".join(c + "\n" for c in train_ssa + rest))
    out = {}
    for name, split in plans.items():
        store = work / f"store-{name}"
        out[name] = (
            store
            if (store / "meta.json").is_file()
            else _prepare(work, src, name, split, labels, args)
        )
    return out


def _prepare(work: Path, src: Path, name: str, split: dict[str, str], labels: dict[str, Any],
             args: argparse.Namespace) -> Path:  # fmt: skip
    man = io.StringIO()
    w = csv.writer(man)
    w.writerow(["case_id", "t1n", "t1c", "t2w", "t2f", "seg", "cohort", "grade", "age", "sex"])
    for c in sorted(split):
        d = (src / c).resolve()
        w.writerow([c, *(d / f"{c}-{m}.nii.gz" for m in ("t1n", "t1c", "t2w", "t2f", "seg")),
                    *(labels[c][k] for k in ("cohort", "grade", "age", "sex"))])  # fmt: skip
    (work / "manifests").mkdir(exist_ok=True)
    write_text(work / "manifests" / f"{name}.csv", man.getvalue())
    write_text(work / "manifests" / f"{name}-split.csv",
               "case_id,split\n" + "".join(f"{c},{s}\n" for c, s in sorted(split.items())))  # fmt: skip
    return prepare([work / "manifests" / f"{name}.csv"], work / f"store-{name}",
                   work / "manifests" / f"{name}-split.csv", size=args.size, workers=args.workers)  # fmt: skip


# -- training -------------------------------------------------------------------------------------
def _train(store: Path, run: Path, minutes: float, steps: int | None, extra: list[str]) -> Path:
    """``gliomagen train`` once (a ``.done`` marker beside the run caches it)."""
    done = run.with_suffix(".done")
    if done.is_file():
        return run
    cmd = [
        sys.executable,
        "-m",
        "gliomagen",
        "train",
        str(store),
        "--run",
        str(run),
        "--quiet",
        *extra,
    ]
    cmd += ["--set", f"train.steps={steps}"] if steps else ["--max-minutes", f"{minutes:g}"]
    print("training:", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True)
    write_text(done, f"{time.time() - t0:.1f}\n")
    return run


def train_all(work: Path, st: dict[str, Path], args: argparse.Namespace) -> dict[str, Path]:
    """The pretraining and the three arms (in that order, one at a time)."""
    pre = _train(st["gli"], work / "run-pretrain", args.pretrain_minutes, args.pretrain_steps, [])
    keep = [
        "--set",
        f"train.checkpoint_every={args.checkpoint_every}",
        "--set",
        "train.keep_checkpoints=100000",
    ]
    fine = ["--init", str(pre), "--init-map", "cohort=SSA:GLI"]
    for s in args.finetune_set:
        fine += ["--set", s]
    runs = {
        "scratch": (st["ssa"], keep),
        "finetune": (st["ssa"], keep + fine),
        "joint": (st["joint"], keep),
    }
    return {arm: _train(store, work / f"run-{arm}", args.minutes, args.steps, extra)
            for arm, (store, extra) in runs.items()}  # fmt: skip


# -- measurements ---------------------------------------------------------------------------------
def noise_level(images: np.ndarray) -> float:
    """Mean over cases and modalities of the high-pass standard deviation inside the brain:
    ``std(x - gaussian(x, sigma=1 voxel))`` over voxels above the background (> -0.99 in [-1, 1])
    at least 3 voxels from it (the brain's edge is not noise)."""
    vals = []
    for case in images:
        for x in case:
            brain = binary_erosion(x > -0.99, iterations=3)
            if brain.sum() > 10:
                vals.append(float((x - gaussian_filter(x, 1.0))[brain].std()))
    return float(np.mean(vals)) if vals else float("nan")


def measure_checkpoint(
    ckpt: Path, ssa_store: Path, args: argparse.Namespace, cache: Path
) -> dict[str, Any]:
    """FD / KID (with the floor), judge rates and noise level of one checkpoint's SSA samples."""
    G, schema, _cfg, _meta = load_generator(ckpt)
    opts = suite.SuiteOptions(by_condition=False)
    check = HeldOutCheck(ssa_store, schema, opts, n_samples=args.samples, z_dim=G.z_dim, seed=0,
                         split="test", cache_dir=cache)  # fmt: skip
    torch.manual_seed(0)
    images, masks = generate_samples(G, check.z, check.cat, check.cont, 8, "cpu")
    ref = check.reference()
    samples = CaseSet.from_arrays(images, masks, labels=check.labels, name="G_ema",
                                        spacing_mm=ref.real.spacing_mm, categorical=list(check.fields))  # fmt: skip
    measured = suite.measure(ref, samples, strict=False)
    dist = measured.get("distances", {}).get(suite.ALL, {})
    fd = lambda e: None if e is None else e.get("fd", {}).get("value")  # noqa: E731
    judged = judge_generator(G, schema, args.judge, seed=0, thresholds=JudgeThresholds.for_grid(G.size),
                             conditions={"cohort": "SSA"}, unset="drawn")  # fmt: skip
    r = rates(judged)
    ck = load_checkpoint(ckpt)
    return {
        "checkpoint": ckpt.name, "step": int(ck["step"]),
        "minutes": float(ck.get("train_state", {}).get("elapsed_s", float("nan"))) / 60.0,
        "fd": fd(dist.get("synthetic")), "fd_floor": fd(dist.get("floor")),
        "kid": (dist.get("synthetic") or {}).get("kid", {}).get("value"),
        "faithful_HGG": r.get("faithful_HGG"), "faithful_LGG": r.get("faithful_LGG"),
        "noise": noise_level(images), "parent": bool(ck.get("parent")),
    }  # fmt: skip


def evaluate_all(
    work: Path, st: dict[str, Path], runs: dict[str, Path], args: argparse.Namespace
) -> dict[str, Any]:
    """Every arm's checkpoints over time, the real SSA noise level, and the targets."""
    real = from_store(st["ssa"], "test", "real")
    real_noise = noise_level(real.load(np.arange(len(real)))[0].float().numpy())
    curves = {}
    for arm, run in runs.items():
        curves[arm] = [
            measure_checkpoint(p, st["ssa"], args, work / "cache") for p in list_checkpoints(run)
        ]
        last = curves[arm][-1]
        print(f"{arm:9s} {len(curves[arm])} checkpoints; last: {last['minutes']:.1f} min, FD {last['fd']}, "
              f"noise {last['noise']:.4f} (real {real_noise:.4f})", flush=True)  # fmt: skip
    return {"real_noise": real_noise, "curves": curves, "checks": checks(curves, real_noise)}


def checks(curves: dict[str, list[dict[str, Any]]], real_noise: float) -> list[dict[str, Any]]:
    """Issue 24's targets, from the curves."""
    a, b = curves["scratch"], curves["finetune"]
    target = a[-1]["fd"]
    reached = next(
        (
            p["minutes"]
            for p in b
            if p["fd"] is not None and target is not None and p["fd"] <= target
        ),
        None,
    )
    ratio = None if reached is None else reached / max(a[-1]["minutes"], 1e-9)
    noise = abs(b[-1]["noise"] / real_noise - 1.0) if real_noise else None
    return [
        {"name": "finetune reaches scratch's final FD within a third of its minutes", "value": ratio,
         "threshold": 1 / 3, "passed": None if ratio is None else ratio <= 1 / 3,
         "detail": f"scratch's final FD {target}; finetune reached it at {reached} min"},
        {"name": "finetune's noise level within 10% of real SSA's", "value": noise, "threshold": 0.10,
         "passed": None if noise is None else noise <= 0.10},
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    st = stores(work, args)
    if args.stage == "data":
        return
    runs = train_all(work, st, args) if args.stage in ("all", "train") else {
        arm: work / f"run-{arm}" for arm in ARMS}  # fmt: skip
    if args.stage == "train":
        return
    result = {
        "args": {k: str(v) for k, v in vars(args).items()},
        **evaluate_all(work, st, runs, args),
    }
    write_json(args.out / "transfer.json", result)
    print(json.dumps(result["checks"], indent=1))
    for arm in ("finetune", "joint"):  # issue 24's third target: the utility gain of (b) vs (c)
        print(
            f"utility of {arm}: python benchmarks/utility.py --phantoms default --n 16 --ssa-order "
            f"{work / 'ssa-order.csv'} --checkpoint 16={runs[arm]} --out {args.out / ('utility-' + arm)}"
        )


if __name__ == "__main__":
    main()
