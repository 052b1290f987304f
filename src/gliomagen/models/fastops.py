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
from typing import Any

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
        if not torch.compiler.is_compiling():
            tune_cpu_allocator()
        if x.ndim == 5:
            return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def can_write(t: torch.Tensor) -> bool:
    """Whether an in-place op on ``t`` is cheap: ``t`` is not a view, or autograd is off.

    (An in-place op on a view makes autograd rebuild the whole base tensor's gradient with a
    zero-fill and strided copies in the backward pass: slower than the allocation it saved.)
    """
    return t._base is None or not torch.is_grad_enabled()


def add_(acc: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``acc + y``, written into ``acc`` when its dtype holds the result (``acc`` must be a fresh
    tensor that no backward pass needs, e.g. an upsampled one)."""
    if torch.promote_types(acc.dtype, y.dtype) == acc.dtype and acc.shape == y.shape and can_write(acc):
        return acc.add_(y)
    return acc + y


def pointwise(
    parts: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    bias: torch.Tensor | None = None,
    channels_last_out: bool = False,
) -> torch.Tensor:
    """A 1x1 convolution of the channel concatenation of ``parts``, without concatenating them.

    ``sum_k W_k @ x_k (+ bias)`` as batched matrix products over the voxels (no im2col, no copy
    of channels-last inputs). With a channels-last first part under autograd the products run
    voxel-major (``[N, S, I] @ [N, I, O]``), so the gradient reaching that part is channels-last
    too (a contiguous gradient meeting channels-last activations made the leaky-ReLU backward 10x
    slower); without autograd they run channel-major and write a contiguous result directly.

    Args:
        parts: ``[N, I_k, *S]`` tensors (any of contiguous or channels-last layout).
        weights: per part ``[O, I_k]`` (shared) or ``[N, O, I_k]`` (per sample, e.g. modulated).
        bias: ``[O]`` or ``None``.
        channels_last_out: return a channels-last result (no copy when the first part is
            channels-last); otherwise the result is contiguous.

    Returns:
        ``[N, O, *S]``.
    """
    if len(parts) != len(weights) or not parts:
        raise ValueError("pointwise needs one weight per part")
    x0 = parts[0]
    n, spatial = x0.shape[0], tuple(x0.shape[2:])
    # voxel-major products when the result should be channels-last, or when autograd will need
    # the channels-last gradient; otherwise channel-major (a contiguous result with no copy)
    voxel_major = is_channels_last(x0) and (channels_last_out or torch.is_grad_enabled())
    out: torch.Tensor | None = None
    for x, w in zip(parts, weights, strict=True):
        if x.shape[0] != n or tuple(x.shape[2:]) != spatial or w.shape[-1] != x.shape[1]:
            raise ValueError(
                f"pointwise: part {list(x.shape)} does not fit weight {list(w.shape)} / {list(x0.shape)}"
            )
        c = x.shape[1]
        wk = (w if w.ndim == 3 else w.unsqueeze(0).expand(n, -1, -1)).to(x.dtype)  # [N, O, I]
        if voxel_major:  # [N, S, I] @ [N, I, O]
            xm = (
                x.movedim(1, -1).reshape(n, -1, c)
                if is_channels_last(x)
                else x.reshape(n, c, -1).transpose(1, 2)
            )
            wk = wk.transpose(1, 2)
            out = torch.bmm(xm, wk) if out is None else out.baddbmm_(xm, wk)
        else:  # [N, O, I] @ [N, I, S]
            xm = x.movedim(1, -1).reshape(n, -1, c).transpose(1, 2) if is_channels_last(x) else x.reshape(n, c, -1)
            out = torch.bmm(wk, xm) if out is None else out.baddbmm_(wk, xm)
    assert out is not None
    o = out.shape[2] if voxel_major else out.shape[1]
    if bias is not None:  # in place: a broadcast bias as baddbmm's input costs a strided copy
        b = bias.to(out.dtype)
        out = out.add_(b if voxel_major else b.reshape(1, -1, 1))
    if not voxel_major:
        y = out.reshape(n, o, *spatial)
        return y.contiguous(memory_format=torch.channels_last_3d) if channels_last_out and y.ndim == 5 else y
    y = out.reshape(n, *spatial, o).movedim(-1, 1)  # channels-last view
    return y if channels_last_out else y.contiguous()


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


class _AvgPool2ChannelsLast(torch.autograd.Function):
    """2x2x2 average pooling of a channels-last ``[N, C, D, H, W]`` tensor, channels-last out.

    ``F.avg_pool3d`` has no channels-last CPU kernel: it returns contiguous tensors (and
    contiguous gradients), which breaks the layout of everything after it. Here: pairwise sums
    along each axis of the ``[N, D, H, W, C]`` view, and a nearest-neighbour upsampling backward.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        v = x.movedim(1, -1)  # [N, D, H, W, C], contiguous
        for axis in (1, 2, 3):
            v = v.narrow(axis, 0, v.shape[axis] // 2 * 2)
            even = v.unflatten(axis, (-1, 2)).select(axis + 1, 0)
            odd = v.unflatten(axis, (-1, 2)).select(axis + 1, 1)
            v = even + odd
        return v.mul_(0.125).movedim(-1, 1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        # every input voxel gets 1/8 of its block's gradient: a nearest-neighbour x2 upsampling
        # (which keeps channels-last; twice as fast as a broadcast copy here)
        g = grad.contiguous(memory_format=torch.channels_last_3d) * 0.125
        return torch.nn.functional.interpolate(g, scale_factor=2.0, mode="nearest")


def avg_pool2(x: torch.Tensor) -> torch.Tensor:
    """2x average pooling that keeps a channels-last 3D tensor (and its gradient) channels-last;
    ``F.avg_pool2d``/``F.avg_pool3d`` otherwise. ``[N, C, *S] -> [N, C, *S/2]``."""
    if is_channels_last(x) and all(s % 2 == 0 for s in x.shape[2:]):
        out: torch.Tensor = _AvgPool2ChannelsLast.apply(x)
        return out
    return torch.nn.functional.avg_pool3d(x, 2) if x.ndim == 5 else torch.nn.functional.avg_pool2d(x, 2)


class _InstanceNormAffine(torch.autograd.Function):
    """``(x - mean) / sqrt(var + eps) * scale + shift`` over the spatial dims, with a hand-written
    backward: autograd's own (mean, pow, sub backward) made contiguous gradients that met
    channels-last activations and ran 5-10x slower; this one keeps the layout and reuses buffers."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float
    ) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))
        mean = x.mean(dim=dims, keepdim=True)
        centred = x - mean
        rstd = (centred.square().mean(dim=dims, keepdim=True) + eps).rsqrt()
        ctx.save_for_backward(x, mean, rstd, scale)
        return centred.mul_(rstd * scale).add_(shift)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, mean, rstd, scale = ctx.saved_tensors
        dims = tuple(range(2, x.ndim))
        xhat = torch.sub(x, mean).mul_(rstd)
        prod = gy * xhat
        g_scale = prod.sum(dim=dims, keepdim=True)
        g_shift = gy.sum(dim=dims, keepdim=True)
        count = float(x[0, 0].numel())
        a = rstd * scale
        # d/dx of the normalisation: a * (gy - mean(gy) - xhat * mean(gy * xhat)), in xhat's buffer
        gx = xhat.mul_(-(a * g_scale / count)).addcmul_(gy, a).sub_(a * g_shift / count)
        return gx, g_scale, g_shift, None


def instance_norm_affine(
    x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """AdaIN's normalisation: ``(x - mean) * rsqrt(var + eps) * scale + shift`` per sample and
    channel (biased variance over the spatial dims); ``scale``, ``shift``: ``[N, C, 1, ...]``.

    In float32 (``x`` is converted); one affine pass without autograd, a layout-keeping custom
    backward with it (no double backward: the generator never needs one)."""
    xf = x.float()
    if not torch.is_grad_enabled():
        dims = tuple(range(2, x.ndim))
        centred = xf - xf.mean(dim=dims, keepdim=True)
        a = (centred.square().mean(dim=dims, keepdim=True) + eps).rsqrt() * scale
        if torch.compiler.is_compiling():  # no out= into a channels-last tensor under dynamo
            return centred.mul_(a).add_(shift)
        return torch.addcmul(shift, centred, a, out=centred)
    out: torch.Tensor = _InstanceNormAffine.apply(xf, scale.float(), shift.float(), eps)
    return out


def upsample2_linear(x: torch.Tensor) -> torch.Tensor:
    """x2 (tri/bi)linear upsampling (``align_corners=False``), one axis at a time, no autograd.

    Equal to ``F.interpolate(x, scale_factor=2, mode="trilinear")`` up to float rounding: along an
    axis, output ``2i`` is ``0.75 x[i] + 0.25 x[i-1]`` and ``2i+1`` is ``0.75 x[i] + 0.25 x[i+1]``
    (edges clamped). Written straight into the strided halves of the output; on the CPU this ran
    2x faster than the interpolation kernel for the heads' few-channel contiguous tensors.
    """
    for dim in range(2, x.ndim):
        n = x.shape[dim]
        shape = list(x.shape)
        shape[dim : dim + 1] = [n, 2]
        out = x.new_empty(shape)
        even, odd = out.select(dim + 1, 0), out.select(dim + 1, 1)
        if n > 1:
            torch.lerp(x.narrow(dim, 1, n - 1), x.narrow(dim, 0, n - 1), 0.25,
                       out=even.narrow(dim, 1, n - 1))  # fmt: skip
            torch.lerp(x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1), 0.25,
                       out=odd.narrow(dim, 0, n - 1))  # fmt: skip
        even.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
        odd.narrow(dim, n - 1, 1).copy_(x.narrow(dim, n - 1, 1))
        x = out.flatten(dim, dim + 1)
    return x
