"""The summary step of ``benchmarks/gpu_check.sh`` (issue 23): bf16 vs fp32 loss parity, model
FLOP/s as a share of the GPU's dense bf16 peak, the cost ratio and targets, one JSON.

Reads the ``bench-results.json`` files the shell script wrote under ``OUT/{full,base,base-wide,
hier,hier-big,full-big}`` and ``OUT/smoke/torchrun.rc``; writes ``OUT/gpu-check.json`` and prints a table.

- Parity: two identical ``small-data`` training steps (same weights, batch and draws), one in fp32
  and one under bf16 autocast (on the CPU both are fp32: the figure is then 0 by construction);
  the relative difference of G's and D's losses.
- Peak share: ``flop_per_s`` of each training row over the dense bf16 peak of the GPU's model
  (datasheet figures, :data:`DENSE_BF16_TFLOPS`; ``None`` for a GPU not in the table or the CPU).
- Targets (issue 23): origin at 128^3 >= 35% of that peak; origin >= 2x the naive reference's
  throughput; a hierarchical 128^3 step <= 3x a full-volume 32^3 step, against two baselines:
  ``base`` (small-data's own widths at 32^3, 16 channels at the finest level) and ``base-wide`` (the
  widths the hierarchical model's 32^3 network has: ``g_channels x size / low_res``, since each
  level of a 128^3 network keeps the channels it has in the full network).

Usage::

    python benchmarks/gpu_check.py --out OUT --device cuda --size 128
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from gliomagen.bench.workloads import GanStep, bench_config
from gliomagen.io.atomic import write_json

DENSE_BF16_TFLOPS = {"H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.4,
                     "H200": 989.4, "A100": 312.0, "L40S": 362.1, "A10": 125.0}  # fmt: skip
"""Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, by model-name substring
(checked in order; a plain "H100" is taken as the SXM part)."""

PARTS = ("full", "base", "base-wide", "hier", "hier-big", "full-big")


def gpu_peak(device: str) -> tuple[str | None, float | None]:
    """``(device name, dense bf16 peak FLOP/s)`` of a CUDA device, ``(None, None)`` on the CPU."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None, None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, tflops in DENSE_BF16_TFLOPS.items():
        if key.replace(" ", "").lower() in name.replace(" ", "").lower():
            return name, tflops * 1e12
    return name, None


def parity(device: str, size: int) -> dict[str, Any]:
    """Relative difference of G's and D's losses between an fp32 and a bf16 step (same draws)."""
    cfg = bench_config("small-data", size, 2)
    dev = torch.device(device)
    losses = {}
    for precision in ("fp32", "bf16"):
        step = GanStep(cfg, dev, precision, seed=0)  # same seed: same weights, reals and draws
        mb = step._micro()
        g = step.loss._g_loss(mb)[0]
        d = step.loss._d_loss(mb, False)[0]
        losses[precision] = (float(g.detach()), float(d.detach()))
    out: dict[str, Any] = {"size": size, "losses": losses}
    for i, name in enumerate(("G", "D")):
        a, b = losses["fp32"][i], losses["bf16"][i]
        out[f"rel_diff_{name}"] = abs(a - b) / max(abs(a), 1e-12)
    return out


def _rows(out: Path) -> dict[str, list[dict[str, Any]]]:
    rows = {}
    for part in PARTS:
        f = out / part / "bench-results.json"
        rows[part] = json.loads(f.read_text())["results"] if f.is_file() else []
    return rows


def _pick(rows: list[dict[str, Any]], kind: str, preset: str | None = None) -> dict[str, Any] | None:
    for r in rows:
        if r.get("kind") == kind and (preset is None or r.get("preset") == preset) and "error" not in r:
            return r
    return None


def summarise(out: Path, device: str, size: int, tiny: bool) -> dict[str, Any]:
    rows = _rows(out)
    name, peak = gpu_peak(device)
    table = []
    for part, rs in rows.items():
        for r in rs:
            if r.get("kind") not in ("train", "generate", "naive_train", "naive_generate"):
                continue
            share = r.get("flop_per_s", math.nan) / peak if peak and r.get("kind") == "train" else None
            table.append({"part": part, "kind": r["kind"], "preset": r.get("preset"), "size": r.get("size"),
                          "batch": r.get("batch"), "step_s": r.get("step_s"), "s_per_volume": r.get("s_per_volume"),
                          "volumes_per_s": r.get("volumes_per_s"), "flop_per_s": r.get("flop_per_s"),
                          "peak_share_dense_bf16": share, "peak_gpu_mb": r.get("peak_gpu_mb"),
                          "peak_rss_mb": r.get("peak_rss_mb"), "error": r.get("error")})  # fmt: skip
    origin = _pick(rows["full"], "train", "origin")
    naive = _pick(rows["full"], "naive_train")
    hier, base = _pick(rows["hier"], "train", "small-data"), _pick(rows["base"], "train")
    wide = _pick(rows.get("base-wide", []), "train")
    rc_file = out / "smoke" / "torchrun.rc"
    checks = {
        "origin_peak_share": (origin["flop_per_s"] / peak) if origin and peak else None,
        "origin_vs_naive": (origin["volumes_per_s"] / naive["volumes_per_s"]) if origin and naive else None,
        "hier_vs_full_base_step": (hier["step_s"] / base["step_s"]) if hier and base else None,
        "hier_vs_full_same_widths_step": (hier["step_s"] / wide["step_s"]) if hier and wide else None,
    }
    result = {
        "device": device, "gpu": name, "dense_bf16_peak_flop_per_s": peak, "size": size, "tiny": tiny,
        "rows": table, "parity": parity(device, 16 if tiny else 64), "checks": checks,
        "targets": {"origin_peak_share": 0.35, "origin_vs_naive": 2.0, "hier_vs_full_base_step": 3.0,
                    "hier_vs_full_same_widths_step": 3.0},
        "torchrun_rc": int(rc_file.read_text()) if rc_file.is_file() else None,
        "backend": "nccl" if device.startswith("cuda") else "gloo",
    }  # fmt: skip
    result["passed"] = {
        "origin_peak_share": None if checks["origin_peak_share"] is None else checks["origin_peak_share"] >= 0.35,
        "origin_vs_naive": None if checks["origin_vs_naive"] is None else checks["origin_vs_naive"] >= 2.0,
        "hier_vs_full_base_step": None if checks["hier_vs_full_base_step"] is None else checks["hier_vs_full_base_step"] <= 3.0,
        "hier_vs_full_same_widths_step": (None if checks["hier_vs_full_same_widths_step"] is None
                                          else checks["hier_vs_full_same_widths_step"] <= 3.0),
        "torchrun": result["torchrun_rc"] == 0,
    }  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the folder gpu_check.sh wrote")
    p.add_argument("--device", default="cuda")
    p.add_argument("--size", type=int, default=128, help="the grid of the full and hierarchical rows")
    p.add_argument("--tiny", action="store_true", help="CPU test run")
    a = p.parse_args(argv)
    res = summarise(a.out, a.device, a.size, a.tiny)
    write_json(a.out / "gpu-check.json", res)
    print(f"{'part':9} {'kind':15} {'preset':11} {'grid':>5} {'batch':>5} {'step s':>8} {'s/vol':>8} "
          f"{'%peak':>6} {'GPU MB':>8}  error")  # fmt: skip
    for r in res["rows"]:
        share = "-" if r["peak_share_dense_bf16"] is None else f"{100 * r['peak_share_dense_bf16']:.1f}"
        def f(v: Any) -> str:
            return "-" if v is None else f"{v:.3f}"
        print(f"{r['part']:9} {r['kind']:15} {str(r['preset']):11} {str(r['size']):>5} {str(r['batch']):>5} "
              f"{f(r['step_s']):>8} {f(r['s_per_volume']):>8} {share:>6} {f(r['peak_gpu_mb']):>8}  {r['error'] or ''}")  # fmt: skip
    print("parity (relative loss difference bf16 vs fp32):", {k: v for k, v in res["parity"].items() if k.startswith("rel")})
    print("checks:", res["checks"], "passed:", res["passed"])
    print("wrote", a.out / "gpu-check.json")


if __name__ == "__main__":
    main()
