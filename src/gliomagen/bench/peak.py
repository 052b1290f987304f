"""The machine's own peak: FLOP/s of a large matrix product and of a large 3D convolution.

Both are measured in the same process and with the same threads as the workloads they are compared
with, so "fraction of peak" means "of what this machine did, in this run, on the best-case kernel".

CPU: fp32; the convolution is ``[4, 64, 32^3] x [64, 64, 3^3]`` ('same' padding), timed in both
contiguous and channels-last layouts and the faster one kept. GPU: fp32 (TF32 off) and bf16 matrix
products, and a bf16 channels-last convolution ``[4, 128, 64^3] x [128, 128, 3^3]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from gliomagen.bench.timing import sync


def time_best(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Fastest wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> dict[str, Any]:
    """FLOP/s of ``[n, n] @ [n, n]`` (n = 2048 on the CPU, 8192 on a GPU)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    dt = time_best(lambda: a @ b, device, repeats)
    return {"kind": "matmul", "shape": [n, n, n], "dtype": str(dtype).split(".")[-1],
            "seconds": dt, "flops": 2.0 * n**3, "flop_per_s": 2.0 * n**3 / dt}  # fmt: skip


def conv3d_peak(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> dict[str, Any]:
    """FLOP/s of a large 3x3x3 'same' convolution, best of the contiguous and channels-last layouts."""
    if device.type == "cuda":
        n, c, s = 4, 128, 64
    else:
        n, c, s = 4, 64, 32
    x = torch.randn(n, c, s, s, s, device=device, dtype=dtype)
    w = torch.randn(c, c, 3, 3, 3, device=device, dtype=dtype)
    flops = 2.0 * n * c * c * 27 * s**3
    best: dict[str, Any] = {}
    for layout, fmt in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last_3d)):
        xi, wi = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
        def conv(xi: torch.Tensor = xi, wi: torch.Tensor = wi) -> torch.Tensor:
            return F.conv3d(xi, wi, padding=1)

        dt = time_best(conv, device, repeats)
        if not best or dt < best["seconds"]:
            best = {"kind": "conv3d", "shape": [n, c, s, c, 3], "dtype": str(dtype).split(".")[-1],
                    "layout": layout, "seconds": dt, "flops": flops, "flop_per_s": flops / dt}  # fmt: skip
    return best


def measure_peaks(device: torch.device, repeats: int = 5) -> dict[str, Any]:
    """Peaks of this machine: ``{"matmul": ..., "conv3d": ...}`` (plus bf16 variants on a GPU)."""
    out: dict[str, Any] = {}
    if device.type == "cuda":
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            out["matmul"] = matmul_peak(device, torch.float32, repeats)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
        out["matmul_bf16"] = matmul_peak(device, torch.bfloat16, repeats)
        out["conv3d"] = conv3d_peak(device, torch.bfloat16, repeats)
    else:
        out["matmul"] = matmul_peak(device, torch.float32, repeats)
        out["conv3d"] = conv3d_peak(device, torch.float32, repeats)
    return out
