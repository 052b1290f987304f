"""Refit a checkpoint's latent prior with other numbers of mixture components and judge each.

``model.latent_prior_components`` changes only how ``G_ema`` draws ``z`` (see
:mod:`gliomagen.training.latent_prior`), so its effect can be measured on a trained checkpoint
without training again: for each checkpoint and each ``K``, ``G_ema``'s prior is refitted from its
own encoder on the store's training split with ``K`` components and the samples are judged as
``benchmarks/conditioning.py`` judges them (the same seeds: ``--seed`` + 1 as there).

Usage:
    python benchmarks/refit_prior.py --store STORE --checkpoints W/evaluated/step-0008000.pt \\
        --components 1 4 16 --samples 100 --out refit.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from gliomagen.data import open_store
from gliomagen.evaluation.conditioning import JudgeThresholds, judge_generator, rates
from gliomagen.io.atomic import write_json
from gliomagen.training import load_generator
from gliomagen.training.batches import TrainingData
from gliomagen.training.latent_prior import fit_latent_prior


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--store", type=Path, required=True, help="the store the run trained on")
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    ap.add_argument("--components", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--samples", type=int, default=100, help="samples per grade")
    ap.add_argument("--seed", type=int, default=0, help="as conditioning.py's --seed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="JSON output")
    args = ap.parse_args()
    for k in args.components:
        if k < 1:
            ap.error(f"--components {k}: must be >= 1")
    for p in args.checkpoints:
        if not p.is_file():
            ap.error(f"--checkpoints {p}: no such file")
    torch.set_num_threads(args.threads)
    store = open_store(args.store, split="train")
    rows: list[dict[str, Any]] = []
    for path in args.checkpoints:
        G, schema, cfg, _ = load_generator(path)
        if G.encoder is None:
            ap.error(f"--checkpoints {path}: no encoder, so no prior to fit (model.encoder=false)")
        data = TrainingData(store, cfg, str(args.store))
        for k in args.components:
            fit = fit_latent_prior(G, data, torch.device("cpu"), components=k)
            th = JudgeThresholds.for_grid(data.size)  # as conditioning.py: scaled to the grid
            r = rates(judge_generator(G, schema, args.samples, args.seed + 1, thresholds=th))
            row = {"checkpoint": str(path), "components": k, **fit, **r}
            rows.append(row)
            print(
                f"{path.name}  K={k:<3d} smallest weight {fit['prior_min_weight']:.3f}  "
                f"faithful HGG {r['faithful_HGG']:.2f}  LGG {r['faithful_LGG']:.2f}  "
                f"(tumour present {r['tumour_HGG']:.2f} / {r['tumour_LGG']:.2f})",
                flush=True,
            )
    if args.out:
        doc = {"store": str(args.store), "samples_per_grade": args.samples, "rows": rows}
        write_json(args.out, doc)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
