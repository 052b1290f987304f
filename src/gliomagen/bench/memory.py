"""Training memory at sizes this machine cannot run: ESTIMATED from measured activation bytes.

The question (issue 9): does the ``origin`` preset train at 128^3 with batch 4 within 24 GB, and at
256^3 with batch 1 within 80 GB, with ``train.activation_checkpointing``? Without such a GPU the
answer is an estimate, built from measurements:

1. the bytes autograd keeps for the backward pass (``torch.autograd.graph.saved_tensors_hooks``,
   deduplicated by storage, parameters excluded) in one G phase and one D phase of the real loss
   code, with and without activation checkpointing, at two small grids (fp32, CPU);
2. with checkpointing, the inputs a checkpointed layer keeps (its saved tensors are then recomputed)
   and the largest single layer's activations (live again while that layer is recomputed);
3. the ratio of bf16-autocast to fp32 saved bytes at the smaller grid (CPU autocast standing in for
   CUDA's; the training loop runs bf16 autocast on a GPU);
4. a fit ``bytes = a + b * voxels`` per phase, extrapolated to the target grid and scaled by batch.

Estimated peak = parameters, gradients and Adam moments (16 B per parameter of G and D) + the larger
phase's saved activations + twice its largest saved tensor (gradient buffers alive during backward)
+ 10% for the caching allocator. Not modelled: cuDNN workspaces, fragmentation beyond that 10%, the
CUDA context (~0.5 GB). Treat a margin under ~15% as "not known".
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch

from gliomagen.bench.workloads import SCHEMA, GanStep, bench_config
from gliomagen.models import build_discriminator, build_generator
from gliomagen.models.discriminator import Discriminator
from gliomagen.models.levels import StyledLayer

TARGETS = ({"size": 128, "batch": 4, "budget_gb": 24.0}, {"size": 256, "batch": 1, "budget_gb": 80.0})
ALLOCATOR_SLACK = 1.10


class _Meter:
    """Bytes of tensors saved for backward, deduplicated by storage, parameters excluded."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.seen: set[int] = set()
        self.total = 0
        self.largest = 0

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.exclude and ptr not in self.seen and storage.nbytes():
            self.seen.add(ptr)
            self.total += storage.nbytes()
            self.largest = max(self.largest, storage.nbytes())
        return t


@contextlib.contextmanager
def _metered(step: GanStep) -> Iterator[_Meter]:
    """Count saved tensors, and the inputs checkpointed modules keep (their saved tensors are
    recomputed instead): a styled layer's input and its pre-drawn noise, a D block's input."""
    params = {p.untyped_storage().data_ptr() for m in (step.G, step.D) for p in m.parameters()}
    meter = _Meter(params)

    def styled(m: Any, args: tuple[Any, ...]) -> None:
        x = args[0]
        if m.checkpoint_activations and torch.is_grad_enabled():
            meter.pack(x)
            if m.noise is not None:  # [N, 1, *S_out] fp32, drawn before the checkpoint
                meter.total += 4 * x.shape[0] * math.prod(x.shape[2:]) * (8 if m.up else 1)

    def block(m: Any, args: tuple[Any, ...]) -> None:
        if torch.is_grad_enabled():
            meter.pack(args[0])

    handles = [m.register_forward_pre_hook(styled) for m in step.G.modules() if isinstance(m, StyledLayer)]
    for d in step.D.modules():
        if isinstance(d, Discriminator) and d.checkpoint_activations:
            handles += [blk.register_forward_pre_hook(block) for blk in d.blocks]
    try:
        with torch.autograd.graph.saved_tensors_hooks(meter.pack, lambda t: t):
            yield meter
    finally:
        for h in handles:
            h.remove()


def measure_phases(
    preset: str, size: int, checkpointing: bool, bf16: bool = False, batch: int = 1
) -> dict[str, Any]:
    """Saved-activation bytes of one G phase and one D phase (CPU), and the static bytes."""
    cfg = bench_config(
        preset, size, batch, [f"train.activation_checkpointing={str(checkpointing).lower()}"]
    )
    step = GanStep(cfg, torch.device("cpu"))
    n_params = sum(p.numel() for m in (step.G, step.D) for p in m.parameters())
    ctx = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if bf16
        else contextlib.nullcontext
    )
    step.loss.autocast = ctx
    out: dict[str, Any] = {"preset": preset, "size": size, "batch": batch,
                           "checkpointing": checkpointing, "bf16": bf16, "params": n_params}  # fmt: skip
    for phase in ("G", "D"):
        with _metered(step) as meter:
            step._phase(phase, False)
        out[f"{phase}_saved_bytes"] = meter.total
        out[f"{phase}_largest_bytes"] = meter.largest
    return out


def estimate_training_memory(preset: str = "origin", sizes: tuple[int, int] = (32, 64)) -> dict[str, Any]:
    """ESTIMATED peak GPU memory of training ``preset`` at the :data:`TARGETS`, with and without
    activation checkpointing (see the module docstring for the model). Runs on the CPU."""
    small, big = sizes
    result: dict[str, Any] = {"preset": preset, "estimated": True, "measured_at": list(sizes),
                              "method": __doc__.split("\n\n")[1].strip() if __doc__ else "", "rows": []}  # fmt: skip
    for ckpt in (False, True):
        a = measure_phases(preset, small, ckpt)
        b = measure_phases(preset, big, ckpt)
        half = measure_phases(preset, small, ckpt, bf16=True)
        ratio = {p: half[f"{p}_saved_bytes"] / max(a[f"{p}_saved_bytes"], 1) for p in ("G", "D")}
        for target in TARGETS:
            side, batch = int(target["size"]), int(target["batch"])
            cfg = bench_config(preset, side, batch)
            with torch.device("meta"):
                n_params = sum(
                    p.numel()
                    for m in (build_generator(cfg, SCHEMA, (side,) * 3),
                              build_discriminator(cfg, SCHEMA, (side,) * 3))
                    for p in m.parameters()
                )  # fmt: skip
            static = 16 * n_params
            phases = {}
            for p in ("G", "D"):
                slope = (b[f"{p}_saved_bytes"] - a[f"{p}_saved_bytes"]) / (big**3 - small**3)
                saved = (a[f"{p}_saved_bytes"] + slope * (side**3 - small**3)) * batch * ratio[p]
                largest = b[f"{p}_largest_bytes"] * (side / big) ** 3 * batch * ratio[p]
                phases[p] = saved + 2 * largest
            peak = (static + max(phases.values())) * ALLOCATOR_SLACK
            result["rows"].append({
                "size": side, "batch": batch, "checkpointing": ckpt, "budget_gb": target["budget_gb"],
                "params": n_params, "estimated_peak_gb": peak / 1e9,
                "G_phase_gb": phases["G"] / 1e9, "D_phase_gb": phases["D"] / 1e9,
                "bf16_ratio": ratio, "fits": peak / 1e9 <= float(target["budget_gb"]),
            })  # fmt: skip
    return result
