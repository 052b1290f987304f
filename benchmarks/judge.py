"""Judge one trained checkpoint's conditioning, per cohort: faithful HGG / LGG rates.

The conditioning judge (:mod:`gliomagen.evaluation.conditioning`) applied to ``--samples``
samples per grade and per value of ``--by`` (a categorical condition, ``cohort`` by default),
the other conditions given as ``gliomagen generate`` gives them (``--unset drawn``: from a
training case drawn given the set ones) and, for comparison, as the unknown slot / training mean
(``--unset unknown``). The real cases of ``--store`` (its training split) are judged too, per
value, as the calibration. Prints a table and writes ``--out`` (JSON).

Usage::

    python benchmarks/judge.py --checkpoint RUN/checkpoints/step-0016000.pt --store STORE \\
        --samples 100 --out judge.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from gliomagen.data import open_store
from gliomagen.evaluation.conditioning import JudgeThresholds, judge, judge_generator, rates
from gliomagen.io.atomic import write_json
from gliomagen.training import load_generator

TARGETS = {"HGG": 0.8, "LGG": 0.9}


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file or run folder")
    ap.add_argument("--store", type=Path, required=True, help="the store it trained on")
    ap.add_argument("--by", default="cohort", help="categorical condition to judge per value")
    ap.add_argument("--samples", type=int, default=100, help="samples per grade and value")
    ap.add_argument("--unset", nargs="+", default=["drawn", "unknown"], choices=["drawn", "unknown"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="JSON output")
    return ap.parse_args()


def calibration(store: Any, by: str, th: JudgeThresholds) -> dict[str, dict[str, float]]:
    """The judge on the store's real training cases, per value of ``by``."""
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for i in range(len(store)):
        row = store.rows[i]
        if not bool(store.has_mask[i]) or row.get("grade") not in TARGETS:
            continue
        img, mask, _, _ = store[i]
        per = found.setdefault(str(row.get(by)), {"HGG": [], "LGG": []})
        per[row["grade"]].append(judge(img.numpy(), mask.numpy(), th))
    return {v: {**rates(r), "n_HGG": len(r["HGG"]), "n_LGG": len(r["LGG"])} for v, r in found.items()}


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)
    G, schema, cfg, meta = load_generator(args.checkpoint)
    store = open_store(args.store, split="train")
    th = JudgeThresholds.for_grid([int(s) for s in meta["size"]])
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "checkpoint": str(args.checkpoint), "store": str(args.store), "by": args.by,
        "samples_per_grade": args.samples, "seed": args.seed, "targets": TARGETS,
        "conditions": schema.names, "real": calibration(store, args.by, th), "generated": {},
    }  # fmt: skip
    print(f"{'value':8s} {'unset':8s} {'HGG':>6s} {'LGG':>6s}  (targets 0.80 / 0.90; real cases in brackets)")
    for value in schema[args.by].categories:
        real = report["real"].get(value, {})
        for unset in args.unset:
            r = rates(judge_generator(G, schema, args.samples, args.seed, thresholds=th,
                                      conditions={args.by: value}, unset=unset))  # fmt: skip
            report["generated"].setdefault(value, {})[unset] = r
            print(f"{value:8s} {unset:8s} {r['faithful_HGG']:6.2f} {r['faithful_LGG']:6.2f}  "
                  f"[{real.get('faithful_HGG', float('nan')):.2f} / {real.get('faithful_LGG', float('nan')):.2f}]")  # fmt: skip
    report["seconds"] = time.perf_counter() - t0
    if args.out:
        write_json(args.out, report)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
