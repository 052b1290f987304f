"""Does grade conditioning work? Train on the phantom cohort at 32^3 and judge generated structure.

Every generated sample is judged from its own mask (argmax of the logits) and images:

* the tumour is the largest 26-connected component of labels {1, 2, 3}; it must hold between
  ``MIN_TUMOUR_FRAC`` and ``MAX_TUMOUR_FRAC`` of the volume and ``MIN_MAIN_FRAC`` of all tumour
  voxels (scattered specks, no tumour, or 'tumour' everywhere fail both grades);
* faithful **HGG**: the component holds an enhancing region (label 3, at least ``MIN_ET`` voxels)
  and a necrotic core (label 1, at least ``MIN_NCR`` voxels); the core's 6-neighbour shell is at
  least ``MIN_RIM`` enhancing (the enhancing rim surrounds the core); the enhancing region is
  bright on T1Gd: its mean T1Gd exceeds that of the normal brain and of the core by ``MIN_ET_CONTRAST``;
* faithful **LGG**: the component exists and the volume holds no enhancing region (no 26-connected
  group of label 3 with ``MIN_ET`` voxels or more).

The judge is first applied to the real training cases (calibration), then to an untrained
generator and to G_ema at checkpoints over training (``--evals`` evenly spaced in ``--minutes``);
training runs in chunks through the public API (``train(..., max_minutes=chunk, resume=True)``,
which resumes exactly). Rates over time go to stdout and ``--out`` (JSON); every judged checkpoint
is copied to ``WORKDIR/evaluated/`` (the run itself keeps only its last few).

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
"""

from __future__ import annotations

import argparse
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

from gliomagen.config import resolve_config
from gliomagen.data import open_store
from gliomagen.evaluation.conditioning import judge, judge_generator, nearest_dice, rates
from gliomagen.models import build_generator
from gliomagen.training import load_checkpoint, load_generator, train
from gliomagen.training.batches import TrainingData
from gliomagen.training.validation import read_records


def make_store(out: Path, n_cases: int, seed: int) -> Path:
    """Phantom cohort -> 32^3 store through the CLI."""
    exe = [sys.executable, "-m", "gliomagen"]
    subprocess.run(
        [
            *exe,
            "phantoms",
            "--out",
            str(out / "phantoms"),
            "--cohorts",
            f"GLI={n_cases}",
            "--seed",
            str(seed),
        ],
        check=True,
    )
    subprocess.run(
        [
            *exe,
            "prepare",
            str(out / "phantoms"),
            "--out",
            str(out / "store"),
            "--size",
            "32",
            "--labels",
            str(out / "phantoms" / "clinical.csv"),
            "--qc",
            "2",
        ],
        check=True,
    )
    return out / "store"


def main() -> None:
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
        help="continue the run in --workdir for --minutes more and append to the report in --out",
    )
    args = ap.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="gliomagen-cond-"))
    work.mkdir(parents=True, exist_ok=True)
    store_path = args.store or make_store(work, args.cases, args.seed)
    store = open_store(store_path, split="train")
    cfg = resolve_config(
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
    if args.resume and not (args.workdir and args.out and args.out.exists()):
        ap.error("--resume needs --workdir (holding run/) and an existing --out report")
    report: dict[str, Any] = {
        "store": str(store_path),
        "preset": args.preset,
        "config": str(args.config) if args.config else None,
        "overrides": args.overrides,
        "minutes": args.minutes,
        "samples_per_grade": args.samples,
        "evals": [],
    }

    if args.resume:
        report = json.loads(args.out.read_text())
        report["minutes"] = float(report["minutes"]) + args.minutes
    # calibration: the judge on the real training cases
    real: dict[str, list[dict[str, Any]]] = {"HGG": [], "LGG": []}
    train_tumours = []
    for i in range(len(store)):
        img, mask, _, _ = store[i]
        grade = store.rows[i].get("grade")
        if bool(store.has_mask[i]):
            train_tumours.append(mask.numpy() > 0)
        if grade in real and bool(store.has_mask[i]):
            real[grade].append(judge(img.numpy(), mask.numpy()))
    report["real"] = {
        **rates(real),
        "n_HGG": len(real["HGG"]),
        "n_LGG": len(real["LGG"]),
        # how alike two different real tumours get: the yardstick for the samples' figure
        "nearest_train_dice_median": float(
            np.median(nearest_dice(train_tumours, train_tumours, exclude_self=True))
        ),
    }
    print(f"real training cases: {report['real']}")

    if not args.resume:
        data = TrainingData(store, cfg, str(store_path))
        torch.manual_seed(cfg.train.seed)
        G0 = build_generator(cfg, data.schema, data.size, data.n_modalities).eval()
        report["untrained"] = rates(judge_generator(G0, data.schema, args.samples, args.seed + 1))
        print(f"untrained: {report['untrained']}")

    run = work / "run"
    chunk = args.minutes / args.evals
    t_start = time.time()
    for k in range(args.evals):
        train(cfg, store, run, resume=k > 0 or args.resume, max_minutes=chunk, progress=False)
        G, schema, _, meta = load_generator(run)
        ck_path = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
        ck = load_checkpoint(ck_path)
        kept = work / "evaluated" / ck_path.name  # the run keeps its last few; these stay
        kept.parent.mkdir(exist_ok=True)
        shutil.copy2(ck_path, kept)
        by_psi, tumours = {}, []
        for psi in args.psi:
            by_psi[str(psi)] = rates(
                judge_generator(
                    G, schema, args.samples, args.seed + 1, psi=psi, w_avg=meta.get("w_avg"),
                    tumours=tumours if psi == args.psi[0] else None,
                )
            )  # fmt: skip
        near = nearest_dice(tumours, train_tumours)
        r = by_psi[str(args.psi[0])]
        entry = {
            "train_minutes": ck["train_state"]["elapsed_s"] / 60,
            "step": int(ck["step"]),
            "psi": args.psi[0],
            "latent_prior": "fitted" if G.mapping.prior_is_fitted else "normal",
            **r,
            "by_psi": by_psi,
            # each sample's tumour against its closest training tumour (copies score ~1)
            "nearest_train_dice_median": float(np.median(near)),
            "nearest_train_dice_p90": float(np.percentile(near, 90)),
            "wall_minutes": (time.time() - t_start) / 60,
            "checkpoint": str(kept),
        }
        if G.mapping.prior_is_fitted:  # the same generator sampled from N(0, I), for comparison
            G.mapping.reset_prior()
            entry["normal_prior"] = rates(judge_generator(G, schema, args.samples, args.seed + 1))
            by_psi["1.0 N(0,I)"] = entry["normal_prior"]
        report["evals"].append(entry)
        for psi, rp in by_psi.items():
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
            f"{report['real']['nearest_train_dice_median']:.2f})",
            flush=True,
        )
        report["validation"] = [
            {"step": rec["step"], "metric": rec["metric"], "improved": rec["improved"],
             **{k: rec["metrics"].get(k) for k in ("fd", "kid", "fidelity", "mask")}}
            for rec in read_records(run)
        ]  # fmt: skip
        _write_report(args.out, report, run)  # after every evaluation: a stopped run keeps them
    best_path = run / "checkpoints" / "best.pt"
    if best_path.is_file():  # the checkpoint validation chose (train.val_metric), judged alike
        G, schema, _, meta = load_generator(best_path)
        ck = load_checkpoint(best_path)
        r = rates(judge_generator(G, schema, args.samples, args.seed + 1, psi=args.psi[0],
                                  w_avg=meta.get("w_avg")))  # fmt: skip
        report["best_checkpoint"] = {
            "step": int(ck["step"]),
            "train_minutes": ck["train_state"]["elapsed_s"] / 60,
            "val_metric": ck["validation"]["metric"],
            "val_value": ck["validation"]["value"],
            "psi": args.psi[0],
            **r,
        }
        print(
            f"best.pt (validation's choice by {ck['validation']['metric']}): step {int(ck['step'])}"
            f" ({report['best_checkpoint']['train_minutes']:.1f} min)  faithful HGG "
            f"{r['faithful_HGG']:.2f}  LGG {r['faithful_LGG']:.2f}",
            flush=True,
        )
        _write_report(args.out, report, run)
    if args.out:
        print(f"wrote {args.out}")


def _write_report(out: Path | None, report: dict[str, Any], run: Path) -> None:
    """Write the JSON report atomically (a temp file, then a rename)."""
    if out is None:
        return
    report["run"] = str(run)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out)


if __name__ == "__main__":
    main()
