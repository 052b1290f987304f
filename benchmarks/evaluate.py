"""Time and peak memory of ``evaluate``: 200 synthetic against 200 held-out real cases at 64^3 on CPU.

The cases are synthetic arrays (ellipsoidal brains with tissue contrast, a tumour with a mask,
smooth bias and noise; background exactly -1) written as float16/uint8 memory maps, as a store
holds them; a third set of 200 is the training split (the probe trains on it; the floor and the
memorisation audit use it). The evaluation (metrics, montages and ``index.html``:
:func:`gliomagen.report.html.evaluate_report`, what ``gliomagen evaluate`` runs) runs twice: cold
(the probe and the real side of the metrics are computed and cached) and warm (both come from the
cache). Stage times come from ``evaluate``'s progress messages.
Memory: a sampler thread reads ``/proc/self/status`` every 0.1 s during each run and keeps the
peak of ``RssAnon`` (memory the evaluation allocated: arrays, tensors, Python) and of ``VmRSS``
(which also counts the memory-mapped case files' pages, reclaimable page cache); ``getrusage``'s
lifetime maximum is reported too.

Usage:
    python benchmarks/evaluate.py --out evaluate.json
    python benchmarks/evaluate.py --n 40 --size 32 --threads 2 --out small.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gliomagen.evaluation.cases import CaseSet
from gliomagen.report.html import evaluate_report

CONTRAST = torch.tensor(  # tissue (wm, gm, csf, tumour core, edema) x modality (t1n, t1c, t2w, t2f)
    [
        [0.55, 0.5, -0.45, -0.2],
        [0.15, 0.1, 0.05, 0.15],
        [-0.7, -0.7, 0.85, -0.75],
        [0.1, 0.9, 0.2, 0.4],
        [-0.1, -0.15, 0.55, 0.75],
    ]
)


def make_cases(n: int, size: int, seed: int, folder: Path, prefix: str) -> CaseSet:
    """``n`` synthetic cases as memory-mapped float16 images ``[n, 4, S, S, S]`` and uint8 masks."""
    g = torch.Generator().manual_seed(seed)
    images = np.lib.format.open_memmap(
        folder / f"{prefix}-images.npy", "w+", np.float16, (n, 4, size, size, size)
    )
    masks = np.lib.format.open_memmap(
        folder / f"{prefix}-masks.npy", "w+", np.uint8, (n, size, size, size)
    )
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"))  # [3, S, S, S]
    labels = []
    for i in range(n):
        radii = torch.tensor([0.72, 0.85, 0.75]) * (0.9 + 0.2 * torch.rand(3, generator=g))
        r = ((grid / radii.view(3, 1, 1, 1)) ** 2).sum(0).sqrt()
        centre = (torch.rand(3, generator=g) - 0.5) * 0.6
        d = ((grid - centre.view(3, 1, 1, 1)) ** 2).sum(0).sqrt()
        grade = "HGG" if i % 2 == 0 else "LGG"
        rad = float(0.15 + 0.12 * torch.rand(1, generator=g)) * (1.4 if grade == "HGG" else 1.0)
        tissue = torch.where(r > 0.75, 1, 0)
        tissue = torch.where((grid[0].abs() < 0.15) & (r < 0.35), 2, tissue)
        mask = torch.zeros(size, size, size, dtype=torch.uint8)
        mask[(d < rad * 1.6) & (r < 1)] = 2
        mask[(d < rad) & (r < 1)] = 3 if grade == "HGG" else 1
        tissue = torch.where(mask == 2, 4, torch.where(mask > 0, 3, tissue))
        img = CONTRAST[tissue].permute(3, 0, 1, 2)  # [4, S, S, S]
        field = F.interpolate(
            torch.randn(1, 4, 4, 4, 4, generator=g), size=(size,) * 3, mode="trilinear"
        )[0]
        img = img * (1 + 0.05 * field) + 0.04 * torch.randn(img.shape, generator=g)
        brain = (r < 1).expand_as(img)
        images[i] = (
            torch.where(brain, img.clamp(-0.97, 1), torch.tensor(-1.0)).numpy().astype(np.float16)
        )
        mask[r >= 1] = 0
        masks[i] = mask.numpy()
        labels.append({"cohort": "GLI" if i % 3 else "SSA", "grade": grade})
    images.flush()
    masks.flush()
    ids = [f"{prefix}-{i:05d}" for i in range(n)]
    mm_images = np.load(folder / f"{prefix}-images.npy", mmap_mode="r")
    mm_masks = np.load(folder / f"{prefix}-masks.npy", mmap_mode="r")
    return CaseSet.from_arrays(
        mm_images, mm_masks, case_ids=ids, labels=labels, name=prefix, spacing_mm=(2.5, 2.5, 2.5)
    )


def peak_rss_mb() -> float:
    """Maximum resident set size of this process so far, in MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _status_kib(key: str) -> int:
    """A ``/proc/self/status`` field in KiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """Peak ``RssAnon`` and ``VmRSS`` of this process while the context is open."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval, self.peak_anon, self.peak_rss = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_anon = max(self.peak_anon, _status_kib("RssAnon"))
            self.peak_rss = max(self.peak_rss, _status_kib("VmRSS"))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed_run(
    real: CaseSet, syn: CaseSet, train: CaseSet, out: Path, cache: Path, args: argparse.Namespace
) -> dict[str, Any]:
    stages: list[tuple[str, float]] = []
    t0 = time.perf_counter()

    def log(message: str) -> None:
        stages.append((message, time.perf_counter() - t0))
        print(f"  {time.perf_counter() - t0:8.1f} s  {message}", flush=True)

    with MemorySampler() as mem:
        evaluate_report(
            real, syn, out, train=train, n_boot=args.bootstrap, n_pairs=args.pairs, seed=0,
            cache_dir=cache, log=log,
        )  # fmt: skip
    total = time.perf_counter() - t0
    ends = [t for _, t in stages[1:]] + [total]
    return {
        "total_s": round(total, 2),
        "stages_s": {
            name: round(end - start, 2) for (name, start), end in zip(stages, ends, strict=True)
        },
        "peak_anon_rss_mib": round(mem.peak_anon / 1024, 1),
        "peak_rss_incl_mapped_files_mib": round(mem.peak_rss / 1024, 1),
        "lifetime_max_rss_mib": round(peak_rss_mb(), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="cases per set (real, synthetic, train)")
    ap.add_argument("--size", type=int, default=64, help="grid side")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        real, syn, train = (
            make_cases(args.n, args.size, s, folder, p)
            for s, p in ((1, "real"), (2, "syn"), (3, "train"))
        )
        print(
            f"made 3 x {args.n} cases at {args.size}^3 in {time.perf_counter() - t:.1f} s; RSS {peak_rss_mb():.0f} MiB"
        )
        base_rss = peak_rss_mb()
        print("cold run (probe trained):")
        cold = timed_run(real, syn, train, folder / "report-cold", folder / "cache", args)
        print("warm run (probe cached):")
        warm = timed_run(real, syn, train, folder / "report-warm", folder / "cache", args)
    result = {
        "benchmark": "evaluate",
        "n_real": args.n, "n_synthetic": args.n, "n_train": args.n, "grid": [args.size] * 3,
        "bootstrap": args.bootstrap, "pairs": args.pairs, "extractor": "probe (default options)",
        "torch_threads": args.threads, "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "rss_after_making_cases_mib": round(base_rss, 1),
        "cold": cold, "warm": warm,
    }  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
