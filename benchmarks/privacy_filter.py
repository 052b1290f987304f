"""Would a privacy filter at generation pass the privacy targets? (issue 20; a measured "no")

A filter that rejects synthetic cases closer to a training case than held-out real cases usually
are: candidates are ``--multiple`` x n synthetic SSA cases of a checkpoint (the utility benchmark's
cohort, seed 1000 on); the thresholds are, per voxel space (images, masks, both), the
``--percentiles`` of the SSA *val* cases' closest-training distances; the first 4 x n candidates
at or above every threshold are kept, and the utility benchmark's privacy section scores them
against the SSA *test* cases (closest-training 5th percentiles and the membership attack on the n
SSA training cases). Percentile 0 keeps the first candidates as they come (no filter). Prints a line
per percentile and writes ``--out`` (JSON).

Usage (after ``benchmarks/utility.py --out OUT`` has built ``OUT/work``)::

    .venv/bin/python benchmarks/privacy_filter.py --work OUT/work \\
        --checkpoint RUN/checkpoints/step-0010989.pt --out privacy-filter.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen.evaluation import privacy
from gliomagen.evaluation.utility_arms import largest_pool
from gliomagen.evaluation.utility_data import load_benchmark_data
from gliomagen.evaluation.utility_privacy import group_cases
from gliomagen.io.atomic import write_json
from utility import synthetic_cohort  # benchmarks/utility.py (this script's folder is on sys.path)


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--work", type=Path, required=True, help="the utility benchmark's OUT/work folder"
    )
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--n", type=int, default=16, help="real SSA training cases")
    p.add_argument("--multiple", type=int, default=16, help="candidates per real case")
    p.add_argument("--keep", type=int, default=4, help="kept cases per real case")
    p.add_argument("--percentiles", default="0,5,10,25,50")
    p.add_argument("--out", type=Path)
    return p.parse_args()


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    store = next(args.work.glob("store-phantoms-*"))
    order = [
        ln.strip() for ln in (args.work / "ssa-order.txt").read_text().splitlines() if ln.strip()
    ]
    opts = argparse.Namespace(multiples=[args.multiple], device="cpu", anatomy_from=[])
    folder = synthetic_cohort(
        args.work, args.checkpoint, args.work / f"generator-store-n{args.n}", order, args.n, opts
    )
    data = load_benchmark_data(store, folder, "SSA", cache_dir=args.work, real_cases=order[: args.n],
                               multiples=(args.multiple,), needs_val=True)  # fmt: skip
    assert data.bank is not None
    train, val, held = group_cases(data, "real+large"), group_cases(data, "val"), group_cases(data, "heldout")
    pool = group_cases(data, largest_pool(data.index, "synthetic"))
    members = [data.bank.ids[i] for i in data.index["real"]]
    ref = privacy.privacy_report(train, val, pool)  # every candidate's distances; val the reference
    results: dict[str, Any] = {}
    for pct in (float(x) for x in args.percentiles.split(",")):
        keep, thresholds = np.ones(len(pool), bool), {}
        for space, s in ref["spaces"].items():
            held_d = np.array([r["distance"] for r in s["heldout"]])
            thresholds[space] = float(np.percentile(held_d, pct)) if pct > 0 else 0.0
            dist = {r["id"]: r["distance"] for r in s["synthetic"]}
            keep &= np.array([dist[i] >= thresholds[space] for i in pool.ids])
        idx = np.flatnonzero(keep)[: args.keep * args.n]
        kept = privacy.Cases([pool.ids[i] for i in idx], pool.images[idx], pool.masks[idx])
        rep = privacy.privacy_report(train, held, kept, members=members)
        m = rep["membership"]
        results[f"{pct:g}"] = row = {
            "thresholds": thresholds, "accepted": int(keep.sum()), "candidates": len(pool), "kept": len(idx),
            "membership_auc": {k: a["auc"] for k, a in m["attacks"].items()}, "max_auc": m["max_auc"],
            "p5_passes": {k: v["passes"] for k, v in rep["spaces"].items()},
            "flagged": {k: v["n_flagged"] for k, v in rep["spaces"].items()},
        }  # fmt: skip
        aucs = ", ".join(f"{k} {v:.2f}" for k, v in row["membership_auc"].items())
        print(f"val p{pct:g}: {row['accepted']}/{len(pool)} accepted, {len(idx)} kept; membership AUC {aucs}; "
              f"p5 passes {row['p5_passes']}; flagged {row['flagged']}", flush=True)  # fmt: skip
    if args.out:
        write_json(
            args.out,
            {"checkpoint": str(args.checkpoint), "work": str(args.work), "results": results},
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
