"""What validation inside training costs: the one-off set-up (probe + real features) and each evaluation.

Trains a preset on a phantom store for ``--steps`` steps with ``train.val_every=--every`` (no early
stopping) through the public API and reads ``RUN/validation.jsonl``: the first evaluation's
``setup_seconds`` (probe network training, features of the val and training cases, the val cases'
nearest training cases), the seconds of every evaluation, and, for scale, the training seconds per
step measured in the same run. Figures go to stdout and ``--out`` (JSON).

Usage:
    python benchmarks/validation.py --out benchmarks/results/validation-cpu2.json
    python benchmarks/validation.py --store STORE --preset small-data --set data.size=null
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gliomagen.config import resolve_config
from gliomagen.data.phantoms import generate_cohort
from gliomagen.data.store import build_store
from gliomagen.training import train
from gliomagen.training.validation import read_records


def phantom_store(root: Path, cohorts: dict[str, int], size: int) -> Path:
    """Build a phantom store under ``root`` (about 0.7 s per case at 32^3 on 2 cores)."""
    generate_cohort(root / "cases", cohorts, resolution=2, seed=0, progress=False)
    build_store([root / "cases"], root / "store", labels_csv=root / "cases" / "clinical.csv",
                size=size, progress=False, qc_cases=0)  # fmt: skip
    return root / "store"


def run(store: Path, preset: str, steps: int, every: int, overrides: list[str]) -> dict[str, Any]:
    """Train with validation every ``every`` steps and collect the timings."""
    cfg = resolve_config(
        preset,
        overrides=[f"train.steps={steps}", f"train.val_every={every}", "train.val_patience=0",
                   "train.stop_on_memorisation=false", "train.checkpoint_every=100000",
                   "train.sample_every=100000", "train.log_every=100000", *overrides],
    )  # fmt: skip
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        train(cfg, str(store), run_dir, callback=lambda s: stamps.append(time.perf_counter()),
              progress=False)  # fmt: skip
        total = time.perf_counter() - t0
        records = read_records(run_dir)
    evals = [r["seconds"] for r in records]
    per_step = [b - a for a, b in zip([t0, *stamps], stamps, strict=False)]
    # a step's interval holds the evaluation of the step before it: keep steps after no evaluation
    plain = [d for i, d in enumerate(per_step) if i == 0 or (i % every) != 0]
    t = cfg.train
    return {
        "preset": preset, "grid": json.loads((store / "meta.json").read_text())["size"],
        "steps": steps, "val_every": every, "overrides": overrides,
        "val_samples": t.val_samples, "val_batch_size": t.val_batch_size,
        "val_probe_steps": t.val_probe_steps, "val_pairs": t.val_pairs,
        "n_val": records[0]["metrics"]["n_val"], "threads": torch.get_num_threads(),
        "setup_s": records[0]["setup_seconds"],
        "first_eval_s": evals[0], "eval_s": evals[1:],
        "eval_s_mean": sum(evals[1:]) / max(1, len(evals) - 1),
        "train_s_per_step": sorted(plain)[len(plain) // 2], "total_s": total,
        "metrics_last": records[-1]["metrics"],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="store folder (default: 32 phantoms at 32^3)")
    ap.add_argument("--preset", action="append", help="preset(s) (default: demo-cpu, small-data)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    presets = args.preset or ["demo-cpu", "small-data"]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or phantom_store(Path(tmp), {"GLI": 24, "SSA": 8}, 32)
        for name in presets:
            extra = [] if name == "demo-cpu" else ["data.size=null"]
            r = run(store, name, args.steps, args.every, [*extra, *args.overrides])
            results.append(r)
            print(f"{name}: set-up {r['setup_s']:.1f} s once (probe {r['val_probe_steps']} steps), "
                  f"then {r['eval_s_mean']:.1f} s per evaluation of {r['val_samples']} samples "
                  f"vs {r['n_val']} val cases; training {r['train_s_per_step']:.2f} s/step",
                  flush=True)  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
