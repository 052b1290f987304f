"""Seams of a hierarchical checkpoint on ``--samples`` generated cases (issue 23).

Each case (seed ``--seed + i``, the conditions of training case ``i`` of the model's table, cycled;
the model's own latent prior) is rendered twice: whole (one box, what ``gliomagen generate`` does up
to 128^3) and in abutting tiles of ``--tile`` voxels (default: the training sub-volume; what larger
grids get). In the brain of each case (:func:`gliomagen.generation.intensity.brain_mask`), the mean
absolute intensity step across the tile-border planes is compared with the step across every other
interior plane and across the planes near a border (:func:`gliomagen.evaluation.seams.cohort_seams`).
The whole rendering is measured at the same planes as the control, and the largest difference
between the two renderings is reported. Prints a table and writes ``--out`` (JSON).

Usage::

    python benchmarks/seams.py --checkpoint RUN/checkpoints/step-0009000.pt --samples 100 \\
        --out benchmarks/results/seams-64.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from gliomagen.evaluation.seams import case_seams, seam_summary, tile_border_planes
from gliomagen.generation.fill import case_table
from gliomagen.generation.intensity import brain_mask
from gliomagen.generation.sampling import case_ws
from gliomagen.generation.source import load_source
from gliomagen.generation.synthesis import noise_seed
from gliomagen.io.atomic import write_json
from gliomagen.models.hierarchical import HierarchicalSynthesis, tile_corners


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file or run folder")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--tile", type=int, help="tile side (default: the training sub-volume)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="JSON output")
    return ap.parse_args()


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    args = _parse()
    torch.set_num_threads(args.threads)
    source = load_source(args.checkpoint)
    G = source.G
    syn = G.synthesis
    if not isinstance(syn, HierarchicalSynthesis):
        _fail(
            f"{args.checkpoint}: not a hierarchical model (a full-volume model renders one box: no tiles)"
        )
    side, tile = syn.size[0], int(args.tile or syn.sub_volume)
    if tile % syn.factor or not syn.factor <= tile < side:
        _fail(f"--tile {tile}: must be a multiple of {syn.factor} below the grid side {side}")
    table = case_table(G, source.schema)
    if table is None:
        _fail(f"{args.checkpoint}: the checkpoint holds no training conditions")
    cat, cont = table.cat.numpy(), table.cont.numpy()
    planes = tile_border_planes(tile_corners(side, tile, 0, syn.factor), tile, side)
    borders = [planes] * 3
    largest = 0.0
    t0 = time.perf_counter()

    per: dict[str, list[tuple[float, float, float]]] = {"tiled": [], "whole": []}
    for i in range(args.samples):  # one rendering of each kind per case; memory stays flat
        seed, row = args.seed + i, i % len(cat)
        ws = case_ws(G, [seed], cat[row : row + 1], cont[row : row + 1])
        with torch.no_grad():
            whole = syn(ws, "random", [noise_seed(seed)])[0][0].numpy()
            tiled = syn(ws, "random", [noise_seed(seed)], tile=tile)[0][0].numpy()
        largest = max(largest, float(np.abs(tiled - whole).max()))
        brain = brain_mask(whole)
        per["tiled"].append(case_seams(tiled, borders, brain))
        per["whole"].append(case_seams(whole, borders, brain))
    tiled_r, whole_r = (seam_summary(per[k]) for k in ("tiled", "whole"))
    report: dict[str, Any] = {
        "checkpoint": str(args.checkpoint), "grid": side, "tile": tile, "border_planes": planes,
        "samples": args.samples, "seed": args.seed, "tiled": tiled_r, "whole": whole_r,
        "max_abs_difference_tiled_vs_whole": largest, "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    print(
        f"{side}^3, tiles of {tile} (border planes {planes}), {args.samples} samples, in the brain:"
    )
    print(
        f"{'render':8s} {'border':>8s} {'other':>8s} {'near':>8s} {'ratio':>6s} {'near':>6s} pass"
    )
    for name, r in (("tiled", tiled_r), ("whole", whole_r)):
        print(f"{name:8s} {r['border']:8.4f} {r['other']:8.4f} {r['near']:8.4f} "
              f"{r['ratio']:6.3f} {r['ratio_near']:6.3f} {r['passes']}")  # fmt: skip
    print(f"largest |tiled - whole|: {largest:.2e}")
    if args.out:
        write_json(args.out, report)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
