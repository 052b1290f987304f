"""Benchmark ``gliomagen prepare``: cases per second and peak memory on BraTS-sized inputs.

Writes N synthetic BraTS-2023-layout cases of 240x240x155 int16 (.nii.gz, 1 mm, LPS like real
BraTS; a brain-shaped ellipsoid with texture and a tumour mask), then times
:func:`gliomagen.data.store.build_store` on them and samples the memory of the whole process
tree (this process + workers) every 100 ms (PSS once a second): the sum of RSS (counts pages shared after fork once
per process, so it over-states) and the sum of PSS (shared pages split between processes: the
memory really used).

Usage::

    python benchmarks/prepare.py --cases 20 --size 128 --workers 2 --out prepare.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (240, 240, 155)
LPS = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])


def write_case(folder: Path, case_id: str, seed: int) -> None:
    """One synthetic BraTS-like case (four int16 images and a {0,1,2,3} mask)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    c = np.array([120, 120, 75]) + rng.integers(-6, 7, 3)
    r = np.array([68, 82, 62]) + rng.integers(-5, 6, 3)
    d2 = ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2
    brain = d2 <= 1.0
    t = c + rng.integers(-30, 31, 3)
    dt = np.sqrt((x - t[0]) ** 2 + (y - t[1]) ** 2 + (z - t[2]) ** 2)
    seg = np.zeros(SHAPE, np.uint8)
    seg[(dt < 22) & brain] = 2
    seg[(dt < 12) & brain] = 3
    seg[(dt < 7) & brain] = 1
    texture = (
        rng.normal(0, 1, (60, 60, 39))
        .astype(np.float32)
        .repeat(4, 0)
        .repeat(4, 1)
        .repeat(4, 2)[:, :, :155]
    )
    (folder / case_id).mkdir(parents=True, exist_ok=True)
    for k, m in enumerate(("t1n", "t1c", "t2w", "t2f")):
        vol = (400 + 60 * k) * (1.2 - 0.4 * d2) + 40 * texture + 150 * (seg == 2) - 100 * (seg == 1)
        vol = np.where(brain, np.clip(vol, 1, 32000), 0).astype(np.int16)
        nib.save(
            nib.Nifti1Image(vol[::-1, ::-1], LPS), str(folder / case_id / f"{case_id}-{m}.nii.gz")
        )
    nib.save(nib.Nifti1Image(seg[::-1, ::-1], LPS), str(folder / case_id / f"{case_id}-seg.nii.gz"))


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    pids, i = [root], 0
    while i < len(pids):
        try:
            for tid in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{tid}/children") as fh:
                    pids += [int(p) for p in fh.read().split()]
        except OSError:
            pass
        i += 1
    return pids


def _kb(path: str, key: str) -> int:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Peak of the summed RSS and PSS of this process tree, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval, self.stop_event = interval, threading.Event()
        self.peak_rss_kb = self.peak_pss_kb = self.peak_main_kb = self.peak_worker_kb = 0
        self.max_procs = 0

    def run(self) -> None:
        tick = 0
        while not self.stop_event.is_set():
            pids = _tree(os.getpid())
            rss = [_kb(f"/proc/{p}/status", "VmRSS:") for p in pids]
            # PSS walks page tables (costly, and it competes with the workers): once a second
            pss = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids) if tick % 10 == 0 else 0
            tick += 1
            self.peak_rss_kb = max(self.peak_rss_kb, sum(rss))
            self.peak_pss_kb = max(self.peak_pss_kb, pss)
            self.peak_main_kb = max(self.peak_main_kb, rss[0])
            self.peak_worker_kb = max([self.peak_worker_kb, *rss[1:]])
            self.max_procs = max(self.max_procs, len(pids))
            self.stop_event.wait(self.interval)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--size", default="128")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--qc", type=int, default=8, help="QC montages (prepare's default is 8)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep inputs here (default: a temp folder)"
    )
    parser.add_argument("--out", type=Path, default=Path("prepare-benchmark.json"))
    return parser.parse_args()


def timed_build(
    args: argparse.Namespace, src: Path, store: Path
) -> tuple[float, float, float, MemorySampler, tuple[float, float, float]]:
    """Build the store while sampling memory.

    Returns:
        Wall seconds, CPU seconds of this process and of its children, the sampler, and the
        load average before.
    """
    # here, not at the top: workers started by "spawn" (off Linux) re-import this script and
    # need no torch
    from gliomagen.data.store import build_store

    sampler = MemorySampler()
    sampler.start()
    load_before = os.getloadavg()
    t0, c0 = time.perf_counter(), os.times()
    build_store(
        [src], store, size=args.size, workers=args.workers, progress=False, qc_cases=args.qc
    )
    wall = time.perf_counter() - t0
    c1 = os.times()
    sampler.stop_event.set()
    sampler.join()
    cpu_parent = c1.user - c0.user + c1.system - c0.system
    cpu_children = c1.children_user - c0.children_user + c1.children_system - c0.children_system
    return wall, cpu_parent, cpu_children, sampler, load_before


def main() -> None:
    """Write the inputs (kept in ``--workdir``), time one store build, print and write figures."""
    args = parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gliomagen-bench-"))
    src = work / "src"
    t0 = time.perf_counter()
    for i in range(args.cases):
        cid = f"BraTS-GLI-{i:05d}-000"
        if not (src / cid / f"{cid}-seg.nii.gz").exists():
            write_case(src, cid, seed=i)
    t_inputs = time.perf_counter() - t0
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    wall, cpu_parent, cpu_children, sampler, load_before = timed_build(args, src, store)
    result = {
        "benchmark": "prepare",
        "cases": args.cases,
        "input_shape": list(SHAPE),
        "size": args.size,
        "workers": args.workers,
        "qc_montages": args.qc,
        "wall_s": round(wall, 2),
        "cases_per_s": round(args.cases / wall, 3),
        "cpu_s_parent": round(cpu_parent, 2),
        "cpu_s_children": round(cpu_children, 2),
        "peak_rss_tree_mb": round(sampler.peak_rss_kb / 1024),
        "peak_pss_tree_mb": round(sampler.peak_pss_kb / 1024),
        "peak_rss_main_mb": round(sampler.peak_main_kb / 1024),
        "peak_rss_worker_mb": round(sampler.peak_worker_kb / 1024),
        "processes": sampler.max_procs,
        "cpus": os.cpu_count(),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "input_write_s": round(t_inputs, 1),
        "python": platform.python_version(),
    }
    for key, value in result.items():
        print(f"{key:20s} {value}")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
