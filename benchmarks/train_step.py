"""Throughput of a full training step (G phase + D phase) and peak memory, per preset and grid.

Each (preset, size) runs in its own subprocess (so the peak RSS is its own) through the real
training loop on an in-memory random store: a few warm-up steps, then timed steps.

CPU: every preset at 32^3 and 64^3 with the preset's widths. GPU (when available): also 128^3 with
bf16, batch 4, for ``origin`` and ``small-data``, plus peak GPU memory.

Usage:
    python benchmarks/train_step.py --out bench-train-step.json
    python benchmarks/train_step.py --presets demo-cpu --sizes 32 --set model.g_channels=8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen import MODALITIES
from gliomagen.config import Config, resolve_config
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.training import train


class RandomStore(torch.utils.data.Dataset):
    """An in-memory store of random volumes with blob masks (the StoreDataset attributes)."""

    def __init__(self, n: int, size: tuple[int, int, int]) -> None:
        rng = np.random.default_rng(0)
        self.schema = ConditionSchema(
            [ConditionField("grade", "categorical", categories=["HGG", "LGG"])]
        )
        self.size, self.modalities, self.spacing_mm = size, list(MODALITIES), [1.0, 1.0, 1.0]
        self.case_ids = [f"R{i}" for i in range(n)]
        self.rows = [{"grade": ["HGG", "LGG"][i % 2]} for i in range(n)]
        self.cond_cat = np.array([[i % 2] for i in range(n)], dtype=np.int64)  # grade code per case
        self.cond_cont = np.zeros((n, 0), np.float32)
        self.has_mask = np.ones(n, bool)
        self.meta = {
            "size": list(size),
            "modalities": self.modalities,
            "spacing_mm": self.spacing_mm,
            "template_geometry": {},
        }
        self.images = rng.uniform(-1, 1, (n, 4, *size)).astype(np.float16)
        self.masks = rng.integers(0, 4, (n, *size)).astype(np.uint8)

    def __len__(self) -> int:
        return len(self.case_ids)

    def __getitem__(
        self, i: int
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], str]:
        cond = {
            "cat": torch.from_numpy(self.cond_cat[i]),
            "cont": torch.from_numpy(self.cond_cont[i]),
        }
        return (
            torch.from_numpy(self.images[i].astype(np.float32)),
            torch.from_numpy(self.masks[i].astype(np.int64)),
            cond,
            self.case_ids[i],
        )


def step_config(
    preset: str, device: str, precision: str, steps: int, overrides: list[str]
) -> Config:
    """The preset for timing: ``steps`` steps, no checkpoints, samples, logs or mean ``w``."""
    return resolve_config(
        preset,
        overrides=[
            "data.size=null",
            f"train.steps={steps}",
            f"train.device={device}",
            f"train.precision={precision}",
            "train.checkpoint_every=100000",
            "train.sample_every=100000",
            "train.log_every=100000",
            "train.w_avg_samples=0",
            *overrides,
        ],
    )


def run_one(
    preset: str,
    size: int,
    device: str,
    precision: str,
    warmup: int,
    steps: int,
    overrides: list[str],
) -> dict[str, Any]:
    """Time ``steps`` training steps after ``warmup`` of one preset at one cubic grid."""
    cfg = step_config(preset, device, precision, warmup + steps, overrides)
    stamps: list[float] = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def tick(step: int) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(
            cfg,
            RandomStore(8, (size, size, size)),
            Path(tmp) / "run",
            callback=tick,
            progress=False,
        )
    timed = stamps[warmup - 1 :] if warmup else [t0, *stamps]  # from the end of the warm-up
    dt = (timed[-1] - timed[0]) / max(len(timed) - 1, 1)
    out = {
        "preset": preset,
        "size": size,
        "device": device,
        "precision": "bf16" if device == "cuda" and precision != "fp32" else "fp32",
        "batch": cfg.train.batch_size,
        "threads": torch.get_num_threads(),
        "overrides": overrides,
        "s_per_step": dt,
        "volumes_per_s": cfg.train.batch_size / dt,
        "steps_per_s": 1.0 / dt,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def parse_args() -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--presets", nargs="+", default=["demo-cpu", "small-data", "origin"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[32, 64])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--big-steps", type=int, default=2, help="timed steps at 64^3 and more on CPU")
    ap.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override (repeatable)"
    )
    ap.add_argument("--no-gpu", action="store_true", help="skip the 128^3 bf16 GPU runs")
    ap.add_argument("--out", type=Path, default=None, help="JSON output file")
    ap.add_argument(
        "--one", nargs=4, metavar=("PRESET", "SIZE", "DEVICE", "PRECISION"), help=argparse.SUPPRESS
    )
    return ap.parse_args()


def run_job(args: argparse.Namespace, p: str, s: int, d: str, prec: str) -> dict[str, Any]:
    """One (preset, size, device, precision) in its own subprocess: its result or its error."""
    cmd = [
        sys.executable,
        __file__,
        "--one",
        p,
        str(s),
        d,
        prec,
        "--warmup",
        str(args.warmup),
        "--steps",
        str(args.big_steps if (s >= 64 and d == "cpu") else args.steps),
    ]
    for o in args.overrides:
        cmd += ["--set", o]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        return {"preset": p, "size": s, "device": d, "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_result(res: dict[str, Any], p: str, s: int, d: str) -> None:
    """One line: throughput and peak memory, or the error."""
    if "error" in res:
        print(f"{p:>10} {s:>4}^3 {d:>4}: error {res['error']}")
    else:
        gpu = f"  peak GPU {res['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in res else ""
        print(
            f"{p:>10} {s:>4}^3 {d:>4} {res['precision']}: {res['volumes_per_s']:.2f} volumes/s "
            f"({res['steps_per_s']:.2f} steps/s, batch {res['batch']}), peak RSS {res['peak_rss_mb']:.0f} MB{gpu}"
        )


def main() -> None:
    """Every preset and grid in its own subprocess (``--one``), a line each, then the JSON file."""
    args = parse_args()
    if args.one:
        p, s, d, prec = args.one
        print(json.dumps(run_one(p, int(s), d, prec, args.warmup, args.steps, args.overrides)))
        return
    jobs = [(p, s, "cpu", "fp32") for p in args.presets for s in args.sizes]
    if torch.cuda.is_available() and not args.no_gpu:
        jobs += [(p, 128, "cuda", "bf16") for p in ("origin", "small-data") if p in args.presets]
    results = []
    for p, s, d, prec in jobs:
        res = run_job(args, p, s, d, prec)
        results.append(res)
        print_result(res, p, s, d)
    if args.out:
        args.out.write_text(
            json.dumps(
                {"results": results, "cpu_count": os.cpu_count(), "torch": torch.__version__},
                indent=1,
            )
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
