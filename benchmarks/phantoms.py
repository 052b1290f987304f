"""Benchmark: phantom cases per second (``gliomagen phantoms``) at 2 mm and 1 mm.

Times :func:`gliomagen.data.phantoms.generate_cohort` end to end (files written), after loading
the template once (its one-off cost is reported apart), for each resolution and worker count.
On a shared machine wall-clock rates understate the generator; the CPU seconds per case of the
one-worker run (in-process) do not, and ``workers / cpu_s_per_case`` bounds the rate on free cores.

Usage:
    .venv/bin/python benchmarks/phantoms.py [--cases-2mm 40] [--cases-1mm 6] [--workers 1 2] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from gliomagen.data.phantoms import PhantomParams, generate_cohort
from gliomagen.data.phantoms.anatomy import load_template


def bench(resolution: int, n_cases: int, workers: int, root: Path) -> dict[str, float]:
    """Generate ``n_cases`` (GLI and SSA in 3:1) and time it."""
    out = root / f"r{resolution}-w{workers}"
    sizes = {"GLI": n_cases - n_cases // 4, "SSA": n_cases // 4}
    t0, c0 = time.perf_counter(), time.process_time()
    generate_cohort(out, sizes, resolution=resolution, seed=0, workers=workers, progress=False)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    shutil.rmtree(out)
    return {
        "resolution_mm": resolution,
        "workers": workers,
        "cases": n_cases,
        "seconds": round(dt, 2),
        "cases_per_s": round(n_cases / dt, 3),
        "mb_per_case": round(size_mb / n_cases, 2),
        # With one worker the cases run in this process: its CPU time per case is what one free
        # core needs, whatever else the machine is doing.
        "cpu_s_per_case": round(cpu / n_cases, 3) if workers == 1 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases-2mm", type=int, default=40)
    parser.add_argument("--cases-1mm", type=int, default=6)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    template_s = {}
    for r in (2, 1):
        t0 = time.perf_counter()
        load_template(r, PhantomParams().anatomy)
        template_s[r] = round(time.perf_counter() - t0, 2)
        print(f"template load at {r} mm: {template_s[r]:.2f} s (once per run)")
    results = []
    with tempfile.TemporaryDirectory(prefix="phantom-bench-") as tmp:
        for r, n in ((2, args.cases_2mm), (1, args.cases_1mm)):
            for w in args.workers:
                res = bench(r, n, w, Path(tmp))
                results.append(res)
                cpu = f", {res['cpu_s_per_case']:.2f} CPU s/case" if res["cpu_s_per_case"] else ""
                print(
                    f"{r} mm, {w} worker(s): {res['cases']} cases in {res['seconds']:.1f} s = "
                    f"{res['cases_per_s']:.2f} cases/s ({res['mb_per_case']:.1f} MB/case{cpu})"
                )
    print(f"load average (1 min) now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    report = {
        "benchmark": "phantoms",
        "cpu_count": os.cpu_count(),
        "load_avg_1min_at_end": os.getloadavg()[0],
        "platform": platform.platform(),
        "template_load_s": template_s,
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
