"""Layout and fusion helpers that make the networks fast without changing what they compute.

Measured on a 2-core EPYC (``gliomagen bench``, docs/performance.md): oneDNN's 3D convolutions and
trilinear upsampling run 1.5-3x faster on channels-last CPU tensors; a freshly allocated 128^3
tensor costs more in page faults than the arithmetic written into it, so sums go into tensors that
already exist where no backward pass needs the old values; a 1x1 convolution of concatenated
channel groups is a sum of batched matrix products, one per group, with no concatenation.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Iterable, Sequence

import torch
import torch.utils.checkpoint

_ALLOCATOR_TUNED: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process heap for reuse (glibc ``mallopt``); once per process.

    glibc serves every allocation above 32 MB with a fresh ``mmap`` and unmaps it on free, so each
    large tensor a network makes pays one page fault per 4 KiB on first touch: at 128^3 that cost
    more than the arithmetic (a trilinear upsample of 16 x 128^3 went from 116 ms to 34 ms on one
    core). With ``mmap`` off and no trimming, freed blocks are reused without faults; the cost is a
    resident size that stays at its peak. Called by :func:`fast_layout`, i.e. the first time a
    network runs on the CPU. ``GLIOMAGEN_MALLOC_TUNING=0`` turns it off; no-op outside glibc.

    Returns:
        Whether the allocator is tuned.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is None:
        _ALLOCATOR_TUNED = False
        if os.environ.get("GLIOMAGEN_MALLOC_TUNING", "1") != "0" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL("libc.so.6")
                m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
                ok = libc.mallopt(m_mmap_max, 0) == 1
                ok = libc.mallopt(m_trim_threshold, 2**31 - 1) == 1 and ok
                _ALLOCATOR_TUNED = ok
            except OSError:
                pass
    return _ALLOCATOR_TUNED


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory layout the networks run fastest in: channels-last for 3D CPU tensors.

    oneDNN's CPU 3D convolutions (forward and input gradient) and trilinear upsampling ran 1.5-3x
    faster on channels-last tensors on a 2-core EPYC (``gliomagen bench``); other devices and 2D
    tensors are returned unchanged. Values are unchanged (a layout, not a computation). On the CPU
    this also calls :func:`tune_cpu_allocator`.
    """
    if x.device.type == "cpu":
        tune_cpu_allocator()
        if x.ndim == 5:
            return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def add_(acc: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``acc + y``, written into ``acc`` when its dtype holds the result (``acc`` must be a fresh
    tensor that no backward pass needs, e.g. an upsampled one)."""
    if torch.promote_types(acc.dtype, y.dtype) == acc.dtype and acc.shape == y.shape:
        return acc.add_(y)
    return acc + y


def _as_matrix(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, *S]`` as an ``[N, C, prod(S)]`` view (no copy for contiguous or channels-last)."""
    n, c = x.shape[:2]
    if x.is_contiguous():
        return x.reshape(n, c, -1)
    cl = torch.channels_last_3d if x.ndim == 5 else torch.channels_last
    if x.ndim in (4, 5) and x.is_contiguous(memory_format=cl):
        return x.movedim(1, -1).reshape(n, -1, c).transpose(1, 2)
    return x.reshape(n, c, -1)


def pointwise(
    parts: Sequence[torch.Tensor], weights: Sequence[torch.Tensor], bias: torch.Tensor | None = None
) -> torch.Tensor:
    """A 1x1 convolution of the channel concatenation of ``parts``, without concatenating them.

    ``sum_k W_k @ x_k (+ bias)`` as batched matrix products over the voxels (no im2col, no copy
    of channels-last inputs).

    Args:
        parts: ``[N, I_k, *S]`` tensors (any of contiguous or channels-last layout).
        weights: per part ``[O, I_k]`` (shared) or ``[N, O, I_k]`` (per sample, e.g. modulated).
        bias: ``[O]`` or ``None``.

    Returns:
        ``[N, O, *S]``, contiguous.
    """
    if len(parts) != len(weights) or not parts:
        raise ValueError("pointwise needs one weight per part")
    x0 = parts[0]
    n, spatial = x0.shape[0], x0.shape[2:]
    out: torch.Tensor | None = None
    for x, w in zip(parts, weights, strict=True):
        if x.shape[0] != n or x.shape[2:] != spatial or w.shape[-1] != x.shape[1]:
            raise ValueError(
                f"pointwise: part {list(x.shape)} does not fit weight {list(w.shape)} / {list(x0.shape)}"
            )
        xm = _as_matrix(x)  # [N, I_k, S]
        wk = (w if w.ndim == 3 else w.unsqueeze(0).expand(n, -1, -1)).to(xm.dtype)
        out = torch.bmm(wk, xm) if out is None else out.baddbmm_(wk, xm)
    assert out is not None
    if bias is not None:  # in place: a broadcast bias as baddbmm's input costs a strided copy
        out = out.add_(bias.to(out.dtype).reshape(1, -1, 1))
    return out.reshape(n, out.shape[1], *spatial)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 5-D tensor is channels-last (and not also plain contiguous)."""
    return (
        x.ndim == 5
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last_3d)
    )


def set_activation_checkpointing(module: torch.nn.Module, enabled: bool) -> int:
    """Turn activation checkpointing on or off in every submodule that supports it.

    A module supports it by declaring a ``checkpoint_activations`` class attribute (the
    generator's styled layers, the discriminator); it then recomputes its blocks' activations in
    the backward pass instead of keeping them (``torch.utils.checkpoint``, non-reentrant).

    Returns:
        How many modules were set.
    """
    n = 0
    for m in module.modules():
        if hasattr(type(m), "checkpoint_activations"):
            m.checkpoint_activations = bool(enabled)  # type: ignore[assignment]
            n += 1
    return n


def run_blocks(
    blocks: Iterable[torch.nn.Module], x: torch.Tensor, checkpoint: bool = False
) -> torch.Tensor:
    """``x`` through ``blocks`` in turn; with ``checkpoint`` (and autograd on) each block's
    activations are recomputed in the backward pass rather than stored."""
    for block in blocks:
        if checkpoint and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
    return x
