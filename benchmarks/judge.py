"""Judge one trained checkpoint's conditioning, per cohort: faithful HGG / LGG rates.

The conditioning judge (:mod:`gliomagen.evaluation.conditioning`) applied to ``--samples``
samples per grade and per value of ``--by`` (a categorical condition, ``cohort`` by default),
the other conditions given as ``gliomagen generate`` gives them (``--unset drawn``: from a
training case drawn given the set ones; ``--unset blended``: each number between two such
cases') and, for comparison, as the unknown slot / training mean (``--unset unknown``). The
real cases of ``--store`` (its training split) are judged too, per value, as the calibration
(:func:`gliomagen.evaluation.judge_section.judge_cases`, what ``gliomagen evaluate --judge N``
runs too, with ``--unset drawn`` alone). Prints a table and writes ``--out`` (JSON).

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

from gliomagen.evaluation.conditioning import JudgeThresholds, judge_generator, rates
from gliomagen.evaluation.inputs import from_store
from gliomagen.evaluation.judge_section import TARGETS, judge_cases
from gliomagen.generation.plan import split_assignments
from gliomagen.io.atomic import write_json
from gliomagen.training import load_generator


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file or run folder")
    ap.add_argument("--store", type=Path, required=True, help="the store it trained on")
    ap.add_argument("--by", default="cohort", help="categorical condition to judge per value")
    ap.add_argument("--samples", type=int, default=100, help="samples per grade and value")
    ap.add_argument(
        "--unset",
        nargs="+",
        default=["drawn", "unknown"],
        choices=["drawn", "blended", "unknown"],
        help="how the other conditions are given (as `gliomagen generate --unset`)",
    )
    ap.add_argument("--anatomy-from", action="append", default=[],
                    help="name=value: coarse styles under these values (as `gliomagen generate --anatomy-from`)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="JSON output")
    return ap.parse_args()


def calibration(store: Path, by: str, th: JudgeThresholds) -> dict[str, dict[str, float]]:
    """The judge on the store's real training cases, per value of ``by``."""
    found = judge_cases(from_store(store, "train", "--store"), by, th)
    return {
        v: {**rates(r), "n_HGG": len(r["HGG"]), "n_LGG": len(r["LGG"])} for v, r in found.items()
    }


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the synthesis noise (the latents have their own seeded generator)
    G, schema, cfg, meta = load_generator(args.checkpoint)
    anatomy = split_assignments(args.anatomy_from, "--anatomy-from") if args.anatomy_from else None
    th = JudgeThresholds.for_grid([int(s) for s in meta["size"]])
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "checkpoint": str(args.checkpoint), "store": str(args.store), "by": args.by,
        "samples_per_grade": args.samples, "seed": args.seed, "targets": TARGETS, "anatomy_from": anatomy,
        "conditions": schema.names, "real": calibration(args.store, args.by, th), "generated": {},
    }  # fmt: skip
    print(
        f"{'value':8s} {'unset':8s} {'HGG':>6s} {'LGG':>6s}  (targets 0.80 / 0.90; real cases in brackets)"
    )
    for value in schema[args.by].categories:
        real = report["real"].get(value, {})
        for unset in args.unset:
            r = rates(judge_generator(G, schema, args.samples, args.seed, thresholds=th,
                                      conditions={args.by: value}, unset=unset, anatomy=anatomy))  # fmt: skip
            report["generated"].setdefault(value, {})[unset] = r
            print(f"{value:8s} {unset:8s} {r['faithful_HGG']:6.2f} {r['faithful_LGG']:6.2f}  "
                  f"[{real.get('faithful_HGG', float('nan')):.2f} / {real.get('faithful_LGG', float('nan')):.2f}]")  # fmt: skip
    report["seconds"] = time.perf_counter() - t0
    if args.out:
        write_json(args.out, report)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
