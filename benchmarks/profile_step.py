"""Where the time of one training step goes: operators, convolution shapes, conv kernels alone.

Profiles one full G+D step of a preset (the ``gliomagen bench`` training workload,
:class:`gliomagen.bench.workloads.GanStep`) with ``torch.profiler``, prints the operators by self
time and the convolutions by input shape, then times the forward, input-gradient and
weight-gradient kernels of the step's costliest convolution shape alone, channels-last and
contiguous. Writes everything as JSON with ``--out``.

Usage:
    python benchmarks/profile_step.py --preset origin --size 64 --threads 1 --out profile.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from gliomagen.bench.peak import time_best
from gliomagen.bench.workloads import GanStep, bench_config

CPU = torch.device("cpu")
CONV_OPS = ("aten::convolution_backward", "aten::mkldnn_convolution", "aten::convolution")


def best_of(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Fastest of ``repeats`` timed CPU calls after one warm-up, in seconds."""
    return time_best(fn, CPU, repeats)


def _kernel_seconds(x: torch.Tensor, w: torch.Tensor, go: torch.Tensor) -> dict[str, float]:
    """Seconds of a stride-1, padding-1 conv's forward, input gradient and weight gradient."""
    args = ([1] * 3, [1] * 3, [1] * 3, False, [0] * 3, 1)
    conv, back = torch.ops.aten.convolution, torch.ops.aten.convolution_backward
    return {
        "forward": best_of(lambda: conv(x, w, None, *args)),
        "input_grad": best_of(lambda: back(go, x, w, None, *args, [True, False, False])),
        "weight_grad": best_of(lambda: back(go, x, w, None, *args, [False, True, False])),
    }


def conv_kernels(batch: int, c_in: int, c_out: int, side: int) -> dict[str, dict[str, float]]:
    """GFLOP/s of a 3x3x3 conv's forward, input gradient and weight gradient, per memory format."""
    flop = 2.0 * batch * side**3 * c_in * c_out * 27
    out: dict[str, dict[str, float]] = {}
    for name, fmt in (
        ("channels_last", torch.channels_last_3d),
        ("contiguous", torch.contiguous_format),
    ):
        x = torch.randn(batch, c_in, side, side, side).to(memory_format=fmt)
        w = torch.randn(c_out, c_in, 3, 3, 3).to(memory_format=fmt)
        go = torch.randn(batch, c_out, side, side, side).to(memory_format=fmt)
        out[name] = {k: flop / v / 1e9 for k, v in _kernel_seconds(x, w, go).items()}
    return out


def parse_args() -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="origin")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--top", type=int, default=20, help="rows per table")
    ap.add_argument("--out", type=Path, help="JSON output")
    return ap.parse_args()


def profile_step(step: GanStep) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Profile one step: operators by self time, and the convolutions by input shape."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    ops = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ops) or 1.0
    op_rows = sorted(
        (
            {"op": e.key, "ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total}
            for e in ops
        ),
        key=lambda r: -r["ms"],
    )
    conv_rows = sorted(
        (
            {
                "op": e.key,
                "shapes": [list(s) for s in e.input_shapes[:2]],
                "calls": e.count,
                "ms": e.self_cpu_time_total / 1e3,
                "share": e.self_cpu_time_total / total,
            }
            for e in prof.key_averages(group_by_input_shape=True)
            if e.key in CONV_OPS
        ),
        key=lambda r: -r["ms"],
    )
    return op_rows, conv_rows


def costliest_conv_kernels(conv_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The costliest 3D convolution shape's kernels timed alone (printed); {} without one."""
    top = next((r for r in conv_rows if r["op"] == "aten::mkldnn_convolution"), None)
    if top is None or len(top["shapes"]) != 2 or len(top["shapes"][0]) != 5:
        return {}
    n, c_in, side = top["shapes"][0][0], top["shapes"][0][1], top["shapes"][0][2]
    c_out = top["shapes"][1][0]
    kernels = {"shape": [n, c_in, c_out, side], **conv_kernels(n, c_in, c_out, side)}
    print(f"costliest conv alone ({c_in}->{c_out} channels, {side}^3, batch {n}), GFLOP/s:")
    for fmt in ("channels_last", "contiguous"):
        k = kernels[fmt]
        print(f"  {fmt:14s} forward {k['forward']:.0f}  input grad {k['input_grad']:.0f}  "
              f"weight grad {k['weight_grad']:.0f}")  # fmt: skip
    return kernels


def main() -> None:
    """Time and profile one step, print the tables, time the costliest conv; write JSON."""
    args = parse_args()
    torch.set_num_threads(args.threads)

    step = GanStep(bench_config(args.preset, args.size, args.batch), CPU)
    step()
    step_s = best_of(step, repeats=2)
    op_rows, conv_rows = profile_step(step)
    print(f"{args.preset} {args.size}^3 batch {args.batch}, {args.threads} thread(s): "
          f"step {step_s:.2f} s")  # fmt: skip
    print(f"conv share of the step: {sum(r['share'] for r in op_rows if r['op'] in CONV_OPS):.0%}")
    for r in op_rows[: args.top]:
        print(f"  {r['op']:45s} {r['ms']:9.1f} ms {r['share']:6.1%}")
    print("convolutions by input shape:")
    for r in conv_rows[: args.top]:
        print(f"  {r['op']:30s} {r['ms']:9.1f} ms {r['share']:6.1%} x{r['calls']} {r['shapes']}")
    kernels = costliest_conv_kernels(conv_rows)
    if args.out:
        report = {
            "preset": args.preset,
            "size": args.size,
            "batch": args.batch,
            "threads": args.threads,
            "step_s": step_s,
            "ops": op_rows[:50],
            "convs": conv_rows[:50],
            "conv_kernels": kernels,
        }
        args.out.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
