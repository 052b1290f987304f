"""Privacy of a generator's synthetic scarce-cohort cases, as the utility benchmark measures it.

For each checkpoint (and each ``--anatomy-from`` setting, ``none`` = the cases' own conditions),
generate the synthetic SSA cohort the utility benchmark would (one condition row per real SSA
training case, ``--multiple`` x n cases, seed 1000; cached beside the benchmark's own cohorts),
then run the benchmark's privacy section: closest-training distances against the held-out SSA test
cases' (images, masks, both) and the membership attack on the n SSA training cases; with
``--d-score`` also the attack through the checkpoint's discriminator (its score of each member and
held-out case, each paired with 4 of the large cohort's training cases; full-volume models). ``--folder``
adds already generated cohorts (e.g. the stand-in). Prints one line per cohort and writes JSON.

Usage (after ``benchmarks/utility.py --out OUT`` has built ``OUT/work``)::

    .venv/bin/python benchmarks/privacy.py --work OUT/work --checkpoint RUN/checkpoints/step-0010000.pt \\
        --anatomy none,cohort=GLI --out benchmarks/results/privacy.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from gliomagen.evaluation.utility_data import load_benchmark_data
from gliomagen.evaluation.utility_privacy import discriminator_attack_scores, privacy_section
from gliomagen.io.atomic import write_text
from gliomagen.io.checkpoint import resolve_checkpoint
from utility import synthetic_cohort  # benchmarks/utility.py (this script's folder is on sys.path)


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="the utility benchmark's OUT/work folder")
    p.add_argument("--n", type=int, default=16, help="real SSA training cases")
    p.add_argument("--multiple", type=int, default=4, help="synthetic cases per real case")
    p.add_argument("--checkpoint", action="append", default=[], help="generator checkpoint (repeatable)")
    p.add_argument("--anatomy", default="none", help="comma list: none, or name=value[;name=value] per setting")
    p.add_argument("--folder", action="append", default=[], help="an already generated cohort (repeatable)")
    p.add_argument("--unset", choices=("drawn", "blended"), default="drawn",
                   help="how the synthetic rows' unset conditions are drawn (`gliomagen generate --unset`)")
    p.add_argument("--d-score", action="store_true", help="add the attack through D's score (full-volume models)")
    p.add_argument("--out", type=Path, default=None, help="JSON file of every figure")
    return p.parse_args()


def _cohort(work: Path, ckpt: str, anatomy: list[str], n: int, k: int, unset: str = "drawn") -> Path:
    """The cohort ``benchmarks/utility.py`` draws (its own function, so its cache is shared)."""
    order = [ln.strip() for ln in (work / "ssa-order.txt").read_text().splitlines() if ln.strip()]
    opts = argparse.Namespace(multiples=[k], device="cpu", anatomy_from=anatomy, unset=unset)
    return synthetic_cohort(work, Path(ckpt), work / f"generator-store-n{n}", order, n, opts)


def _summary(rep: dict[str, Any]) -> dict[str, Any]:
    spaces = {
        s: {"flagged": v["n_flagged"], "synthetic_p5": v["synthetic_percentile"],
            "heldout_p5": v["heldout_percentile"], "passes": v["passes"], "uncertain": v["uncertain"]}
        for s, v in rep["spaces"].items()
    }  # fmt: skip
    attacks = {k: {"auc": a["auc"], "ci": a["ci"], "n_members": a["n_members"]}
               for k, a in rep["membership"]["attacks"].items()}  # fmt: skip
    return {"spaces": spaces, "membership": attacks, "passes": rep["passes"]}


def main() -> None:
    args = _parse()
    torch.set_num_threads(1)
    store = next(args.work.glob("store-phantoms-*"))
    order = [ln.strip() for ln in (args.work / "ssa-order.txt").read_text().splitlines() if ln.strip()][: args.n]
    cohorts: list[tuple[str, Path, str | None]] = [(f"folder {f}", Path(f), None) for f in args.folder]
    for ckpt in args.checkpoint:
        for setting in args.anatomy.split(","):
            anatomy = [] if setting == "none" else setting.split(";")
            cohorts.append((f"{ckpt} anatomy={setting}", _cohort(args.work, ckpt, anatomy, args.n, args.multiple, args.unset), ckpt))
    results = {}
    scored: dict[str, dict[str, float]] = {}
    for name, folder, ckpt in cohorts:
        data = load_benchmark_data(store, folder, "SSA", cache_dir=args.work, real_cases=order,
                                   multiples=(args.multiple,))  # fmt: skip
        d_scores = None
        if args.d_score and ckpt is not None:
            if ckpt not in scored:
                scored[ckpt] = discriminator_attack_scores(data, resolve_checkpoint(Path(ckpt)))
            d_scores = {"synthetic": scored[ckpt]}
        rep = privacy_section(data, ["synthetic"], d_scores)["sources"]["synthetic"]["report"]
        results[name] = s = _summary(rep)
        m = s["membership"]
        print(f"{name}\n  flagged image/mask/both {s['spaces']['voxel_image']['flagged']}/"
              f"{s['spaces']['voxel_mask']['flagged']}/{s['spaces']['voxel']['flagged']} of {args.multiple * args.n}; "
              f"membership AUC image {m['voxel_image']['auc']:.3f}, mask {m['voxel_mask']['auc']:.3f} "
              f"[{m['voxel_mask']['ci'][0]:.2f}, {m['voxel_mask']['ci'][1]:.2f}], both {m['voxel']['auc']:.3f}"
              + (f", D's score {m['d_score']['auc']:.3f} [{m['d_score']['ci'][0]:.2f}, {m['d_score']['ci'][1]:.2f}]"
                 if "d_score" in m else ""),
              flush=True)  # fmt: skip
    if args.out is not None:
        write_text(args.out, json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                        indent=1) + "\n")  # fmt: skip
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
