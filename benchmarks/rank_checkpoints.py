"""Rank saved checkpoints by the validation metrics of the current code, beside the judge's rates.

Training keeps ``best.pt`` by ``train.val_metric`` as it goes; this script asks the same question
after the fact, with the validation code as it is now, of checkpoints kept by
``benchmarks/conditioning.py`` (``WORKDIR/evaluated/``): which would validation choose, and does
the choice agree with the conditioning judge? Each checkpoint's G_ema is measured by
:class:`gliomagen.training.validation.Validator` (its own fixed latents and the store's val
conditions, as in training); with ``--report`` (a ``conditioning.py`` JSON) each row also carries
that checkpoint's faithful HGG / LGG rates.

Usage:
    python benchmarks/rank_checkpoints.py --store STORE --report cond.json \\
        --checkpoints W/evaluated/*.pt --metric mask --val-samples 64 --out rank.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from gliomagen.data import open_store
from gliomagen.io.atomic import write_json
from gliomagen.training import load_generator
from gliomagen.training.batches import TrainingData
from gliomagen.training.monitor import RunMonitor
from gliomagen.training.validation import HIGHER_IS_BETTER, Validator


def parse_args() -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--store", type=Path, required=True, help="the store the run trained on")
    ap.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    ap.add_argument("--metric", default="mask", choices=sorted(HIGHER_IS_BETTER))
    ap.add_argument("--val-samples", type=int, default=64)
    ap.add_argument("--report", type=Path, help="conditioning.py JSON: join its rates by file name")
    ap.add_argument("--out", type=Path, help="JSON output")
    return ap.parse_args()


def judged_rates(report: Path | None) -> dict[str, dict[str, Any]]:
    """The conditioning report's entries by checkpoint file name (``best.pt`` included)."""
    if report is None:
        return {}
    rep = json.loads(report.read_text())
    judged = {Path(e["checkpoint"]).name: e for e in rep.get("evals", [])}
    if rep.get("best_checkpoint"):  # the run's best.pt, judged at the end
        judged["best.pt"] = rep["best_checkpoint"]
    return judged


def main() -> None:
    """Measure every checkpoint with one validator, print a row each and validation's choice."""
    args = parse_args()
    judged = judged_rates(args.report)
    store = open_store(args.store, split="train")
    cache = Path(tempfile.mkdtemp(prefix="gliomagen-rank-"))
    validator = None
    rows = []
    for path in args.checkpoints:
        G, _, cfg, _ = load_generator(path)
        cfg = dataclasses.replace(
            cfg,
            train=dataclasses.replace(
                cfg.train, val_samples=args.val_samples, val_metric=args.metric, val_every=1
            ),
        )
        if validator is None:  # one validator: the same latents and real side for every checkpoint
            data = TrainingData(store, cfg, str(args.store))
            quiet = RunMonitor(cache, enabled=False)  # the script prints its own table
            validator = Validator(cfg, data, cache, torch.device("cpu"), quiet)
        m = validator.measure(G)
        e = judged.get(path.name, {})
        row = {
            "checkpoint": str(path),
            "step": int(torch.load(path, map_location="cpu", weights_only=True)["step"]),
            **{k: m.get(k) for k in ("mask", "fd", "kid", "fidelity", "diversity", "memorised")},
            "faithful_HGG": e.get("faithful_HGG"),
            "faithful_LGG": e.get("faithful_LGG"),
        }
        rows.append(row)
        print(
            f"{path.name}: step {row['step']}  {args.metric} {row[args.metric]}  "
            f"faithful HGG {row['faithful_HGG']}  LGG {row['faithful_LGG']}",
            flush=True,
        )
    ranked = [r for r in rows if r[args.metric] is not None]
    sign = -1 if HIGHER_IS_BETTER[args.metric] else 1
    best = min(ranked, key=lambda r: sign * r[args.metric]) if ranked else None
    print(f"validation would choose: {best}")
    if args.out:
        write_json(args.out, {"metric": args.metric, "rows": rows, "choice": best})


if __name__ == "__main__":
    main()
