"""``gliomagen bench``: run the measurements, each in its own process, and collect them.

Every measurement (one preset at one grid, training or generation; the naive reference; the LDM)
runs in a fresh ``python -m gliomagen.bench.runner --job JSON`` process, so its peak resident
memory is its own; all of them use the same thread count as the peak measurement (made first, in
this process). Results are one JSON document (:func:`run_bench`) that
:mod:`gliomagen.bench.report` prints and writes as markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from gliomagen.bench.ldm import time_ldm
from gliomagen.bench.memory import estimate_training_memory
from gliomagen.bench.naive import NaiveGanStep, NaiveGeneration, NaiveGenerator
from gliomagen.bench.peak import measure_peaks
from gliomagen.bench.timing import count_flops, machine_info, peak_memory, reset_peak, timed_calls
from gliomagen.bench.workloads import SCHEMA, GanStep, Generation, bench_config
from gliomagen.config import PRESETS, preset
from gliomagen.config.grid import plan_grid
from gliomagen.errors import GliomagenError
from gliomagen.io import atomic
from gliomagen.io.device import resolve_device

DEFAULT_PRESETS = ("origin", "small-data")
DEFAULT_SIZES = (32, 64, 128)


@dataclass
class BenchOptions:
    """What ``gliomagen bench`` measures (see ``gliomagen bench --help``)."""

    presets: list[str] = field(default_factory=lambda: list(DEFAULT_PRESETS))
    sizes: list[int] = field(default_factory=lambda: list(DEFAULT_SIZES))
    device: str = "auto"
    batch_size: int | None = None  # training batch (None: the preset's)
    steps: int | None = None  # timed training steps (None: 2 on the CPU, 10 on a GPU)
    repeats: int | None = None  # timed generated volumes (None: 2 on the CPU, 16 on a GPU)
    threads: int = 0  # CPU threads (0: torch's default, all cores)
    max_train_size: int | None = None  # largest grid trained (None: 64 on the CPU, 256 on a GPU)
    skip_ldm: bool = False
    skip_naive: bool = False
    skip_memory: bool = False
    overrides: list[str] = field(default_factory=list)
    job_timeout_s: float = 3600.0
    in_process: bool = False  # every job in this process (faster start; peak RSS then accumulates)

    def resolved(self) -> BenchOptions:
        """A copy with the device-dependent defaults filled in and every value checked."""
        o = BenchOptions(**asdict(self))
        if o.device == "auto":
            o.device = "cuda" if torch.cuda.is_available() else "cpu"
        o.device = str(resolve_device(o.device))  # cpu, cuda or cuda:N; one error line otherwise
        gpu = o.device.startswith("cuda")
        for p in o.presets:
            if p not in PRESETS:
                raise GliomagenError(f"--presets {p!r}: unknown preset; choose from {', '.join(PRESETS)}")
        if not o.presets or not o.sizes:
            raise GliomagenError("--presets and --sizes need at least one value each")
        for s in o.sizes:
            try:
                plan_grid((int(s),) * 3)
            except ValueError as exc:
                raise GliomagenError(f"--sizes {s}: {exc}") from None
        for name in ("batch_size", "steps", "repeats"):
            v = getattr(o, name)
            if v is not None and v < 1:
                raise GliomagenError(f"--{name.replace('_', '-')} {v}: must be >= 1")
        if o.threads < 0:
            raise GliomagenError(f"--threads {o.threads}: must be >= 0")
        o.steps = o.steps or (10 if gpu else 2)
        o.repeats = o.repeats or (16 if gpu else 2)
        o.max_train_size = o.max_train_size or (256 if gpu else 64)
        o.threads = o.threads or torch.get_num_threads()
        return o


# -- jobs (run in a child process) ---------------------------------------------------------------
def _train_job(job: dict[str, Any], device: torch.device) -> dict[str, Any]:
    over = list(job["overrides"])
    if job.get("checkpointing"):
        over.append("train.activation_checkpointing=true")
    cfg = bench_config(job["preset"], job["size"], job["batch"], over)
    reset_peak(device)
    step = GanStep(cfg, device, job["precision"])
    out: dict[str, Any] = {"batch": cfg.train.batch_size}
    out["flops_per_step"] = count_flops(step)  # counted on the (untimed) warm-up step
    if step.has_r1:  # one step in r1_interval carries the lazy R1 term
        out["r1_step_s"] = timed_calls(lambda: step(r1=True), device, 1, warmup=0)["mean_s"]
    t = timed_calls(step, device, job["steps"], warmup=0)
    out.update(step_s=t["mean_s"], step_min_s=t["min_s"], steps=int(t["n"]))
    out["volumes_per_s"] = cfg.train.batch_size / t["mean_s"]
    out.update(peak_memory(device))
    out["flop_per_s"] = out["flops_per_step"] / t["mean_s"]
    out["params_G"] = sum(p.numel() for p in step.G.parameters())
    out["params_D"] = sum(p.numel() for p in step.D.parameters())
    return out


def _generate_job(job: dict[str, Any], device: torch.device) -> dict[str, Any]:
    cfg = bench_config(job["preset"], job["size"], job["batch"], job["overrides"])
    reset_peak(device)
    gen = Generation(cfg, device, job["repeats"] if device.type == "cpu" else job["batch"])
    flops = count_flops(lambda: gen(1))  # on the (untimed) warm-up volume
    n = job["repeats"]
    calls = 1 if device.type == "cpu" else max(1, n // job["batch"])
    t = timed_calls(gen, device, calls, warmup=0)
    volumes = gen.batch * calls
    out: dict[str, Any] = {"volumes": volumes, "s_per_volume": t["mean_s"] * calls / volumes}
    out["volumes_per_s"] = 1.0 / out["s_per_volume"]
    out.update(peak_memory(device))
    out["flops_per_volume"] = flops
    out["flop_per_s"] = flops / out["s_per_volume"]
    out["params_G"] = sum(p.numel() for p in gen.G.parameters())
    return out


def _naive_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    m = bench_config(job["preset"], job["size"], job["batch"], job["overrides"]).model
    return {"g_channels": m.g_channels, "g_max_channels": m.g_max_channels,
            "d_channels": m.d_channels, "d_max_channels": m.d_max_channels, "z_dim": m.z_dim,
            "w_dim": m.w_dim, "mapping_layers": m.mapping_layers,
            "n_cat_embeddings": [f.num_embeddings for f in SCHEMA.categorical]}  # fmt: skip


def _naive_train_job(job: dict[str, Any], device: torch.device) -> dict[str, Any]:
    reset_peak(device)
    step = NaiveGanStep(job["size"], job["batch"], device=device, **_naive_kwargs(job))
    flops = count_flops(step)  # on the (untimed) warm-up step
    t = timed_calls(step, device, job["steps"], warmup=0)
    out: dict[str, Any] = {"batch": job["batch"], "step_s": t["mean_s"], "step_min_s": t["min_s"]}
    out["volumes_per_s"] = job["batch"] / t["mean_s"]
    out.update(peak_memory(device))
    out["flops_per_step"] = flops
    out["flop_per_s"] = out["flops_per_step"] / t["mean_s"]
    out["widths_G"] = step.G.widths
    return out


def _naive_generate_job(job: dict[str, Any], device: torch.device) -> dict[str, Any]:
    kw = _naive_kwargs(job)
    reset_peak(device)
    torch.manual_seed(0)
    G = NaiveGenerator(job["size"], kw["g_channels"], kw["g_max_channels"], kw["z_dim"],
                       kw["w_dim"], kw["n_cat_embeddings"], kw["mapping_layers"]).to(device)  # fmt: skip
    n = job["repeats"] if device.type == "cpu" else job["batch"]
    gen = NaiveGeneration(G, n, device)
    flops = count_flops(NaiveGeneration(G, 1, device))  # on the (untimed) warm-up volume
    calls = 1 if device.type == "cpu" else max(1, job["repeats"] // job["batch"])
    t = timed_calls(gen, device, calls, warmup=0)
    out: dict[str, Any] = {"volumes": n * calls, "s_per_volume": t["mean_s"] / n}
    out["volumes_per_s"] = 1.0 / out["s_per_volume"]
    out.update(peak_memory(device))
    out["flops_per_volume"] = flops
    return out


def _ldm_job(job: dict[str, Any], device: torch.device) -> dict[str, Any]:
    reset_peak(device)
    out = time_ldm(job["size"], device)
    out.update(peak_memory(device))
    return out


def _memory_job(job: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return estimate_training_memory("origin")


JOBS = {"train": _train_job, "generate": _generate_job, "naive_train": _naive_train_job,
        "naive_generate": _naive_generate_job, "ldm": _ldm_job, "memory": _memory_job}  # fmt: skip


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this process; returns the job with its results (or ``error``)."""
    torch.set_num_threads(int(job["threads"]))
    device = torch.device(job["device"])
    t0 = time.perf_counter()
    try:
        res = JOBS[job["kind"]](job, device)
    except Exception as exc:  # reported in the results, the other jobs go on
        res = {"error": f"{type(exc).__name__}: {exc}"}
    res["wall_s"] = time.perf_counter() - t0
    return {**job, **res}


def _spawn(job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "gliomagen.bench.runner", "--job", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              env=dict(os.environ))  # fmt: skip
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout_s:.0f} s"}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**job, "error": f"exit {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def plan_jobs(o: BenchOptions) -> list[dict[str, Any]]:
    """The measurements of a resolved :class:`BenchOptions`, in running order."""
    assert o.max_train_size is not None
    gpu = o.device.startswith("cuda")
    base = {"device": o.device, "threads": o.threads, "precision": "bf16" if gpu else "fp32",
            "steps": o.steps, "repeats": o.repeats, "overrides": list(o.overrides)}  # fmt: skip
    jobs: list[dict[str, Any]] = []
    naive_done: set[tuple[Any, ...]] = set()
    for size in o.sizes:
        for p in o.presets:
            batch = o.batch_size or preset(p).train.batch_size
            common = {**base, "preset": p, "size": size, "batch": batch}
            train = size <= o.max_train_size
            if train:
                jobs.append({**common, "kind": "train"})
                if gpu and p == "origin" and size >= 128:
                    jobs.append({**common, "kind": "train", "checkpointing": True})
            jobs.append({**common, "kind": "generate"})
            m = preset(p).model
            key = (size, batch, m.g_channels, m.g_max_channels, m.d_channels, m.d_max_channels,
                   m.z_dim, m.w_dim, m.mapping_layers)  # fmt: skip
            if not o.skip_naive and key not in naive_done:
                naive_done.add(key)
                if train:
                    jobs.append({**common, "kind": "naive_train"})
                jobs.append({**common, "kind": "naive_generate"})
        if not o.skip_ldm:
            jobs.append({**base, "kind": "ldm", "size": size, "preset": None, "batch": 1})
    if not o.skip_memory:
        jobs.append({**base, "kind": "memory", "device": "cpu", "size": None, "preset": "origin",
                     "batch": None})  # fmt: skip
    return jobs


def run_bench(options: BenchOptions, echo: Any = print) -> dict[str, Any]:
    """Measure everything :class:`BenchOptions` asks for; returns the results document."""
    o = options.resolved()
    torch.set_num_threads(o.threads)
    device = torch.device(o.device)
    t0 = time.perf_counter()
    doc: dict[str, Any] = {"format_version": 1, "options": asdict(o),
                           "machine": machine_info(device, o.threads)}  # fmt: skip
    echo(f"measuring peaks on {doc['machine']['cpu'] if o.device != 'cuda' else doc['machine']['gpu']} "
         f"({o.threads} threads) ...")  # fmt: skip
    doc["peaks"] = measure_peaks(device)
    for k, v in doc["peaks"].items():
        echo(f"  peak {k}: {v['flop_per_s'] / 1e9:.1f} GFLOP/s")
    results = []
    for job in plan_jobs(o):
        label = f"{job['kind']} {job.get('preset') or ''} {job.get('size') or ''}".strip()
        if job.get("checkpointing"):
            label += " (activation checkpointing)"
        echo(f"running {label} ...")
        res = run_job(job) if o.in_process else _spawn(job, o.job_timeout_s)
        if "error" in res:
            echo(f"  error: {res['error']}")
        results.append(res)
    doc["results"] = results
    doc["total_s"] = time.perf_counter() - t0
    doc["machine"]["load_average_1min_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return doc


def write_json(doc: dict[str, Any], path: Path) -> Path:
    """Write ``doc`` as indented JSON atomically (:func:`gliomagen.io.atomic.write_json`)."""
    return atomic.write_json(path, doc)


def main(argv: list[str] | None = None) -> None:
    """Child-process entry: ``python -m gliomagen.bench.runner --job JSON`` prints one JSON line."""
    ap = argparse.ArgumentParser(description="run one gliomagen bench measurement")
    ap.add_argument("--job", required=True)
    args = ap.parse_args(argv)
    print(json.dumps(run_job(json.loads(args.job))), flush=True)


if __name__ == "__main__":
    main()
