"""Timing, memory and FLOP-counting helpers shared by the benchmark workloads."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils import flop_counter


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak(device: torch.device) -> None:
    """Restart the GPU's max-allocated counter (the CPU's peak RSS cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, float]:
    """``peak_rss_mb`` always; ``peak_gpu_mb`` (``torch.cuda.max_memory_allocated``) on a GPU."""
    out = {"peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _conv_backward_flop(*args: Any, **kwargs: Any) -> int:
    """torch's formula for ``convolution_backward`` with the weight gradient of a *grouped*
    convolution divided by ``groups`` (torch 2.13 counts it ``groups`` times: a grouped conv's
    forward + backward came out at 6x its forward for 4 groups instead of 3x)."""
    conv_backward_flop: Any = flop_counter.conv_backward_flop  # shape-wrapped at import

    (grad_out, x, w, bias, stride, padding, dilation, transposed, out_pad, groups,
     mask) = args[:11]  # fmt: skip
    common = (grad_out, x, w, bias, stride, padding, dilation, transposed, out_pad, groups)
    out = kwargs.get("out_shape")  # (torch's formula is shape-wrapped: it takes out_val)
    flops = conv_backward_flop(*common, [mask[0], False, False], out_val=out)
    if mask[1]:
        flops += conv_backward_flop(*common, [False, True, False], out_val=out) // max(groups, 1)
    return int(flops)


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call of ``fn`` as :class:`torch.utils.flop_counter.FlopCounterMode` counts them
    (matrix products and convolutions, forward and backward; element-wise work is not counted),
    with the weight gradient of grouped convolutions counted once (:func:`_conv_backward_flop`)."""
    counter = flop_counter.FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}
    )
    with counter:
        fn()
    return float(counter.get_total_flops())


def timed_calls(
    fn: Callable[[], Any], device: torch.device, n: int, warmup: int = 1
) -> dict[str, float]:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then ``n`` timed ones.

    Returns:
        ``{"mean_s", "min_s", "n"}``.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(max(1, n)):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return {"mean_s": sum(times) / len(times), "min_s": min(times), "n": float(len(times))}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device, threads: int) -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads": threads,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": device.type,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
