"""One resolution level of the synthesis network: the styled layer and the output heads.

A :class:`StyledLayer` is a 3x3 convolution with the style injected (modulated or AdaIN), an
optional upsampling, noise and the leaky ReLU; :class:`OutputHeads` are the 1x1 mask and image
heads whose outputs the synthesis network sums across resolutions. :func:`draw_noises` and
:func:`noise_generators` draw every layer's per-sample noise outside ``torch.compile`` graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from gliomagen.models.fastops import add_, can_write, fast_layout
from gliomagen.models.layers import (
    LRELU_GAIN,
    AdaIN,
    EqualConv,
    ModulatedConv,
    upsample,
)
from gliomagen.models.mask_head import to_logits
from gliomagen.models.noise import NoiseInjection


@torch.compiler.disable
def draw_noises(
    layers: Sequence[Any],
    n: int,
    noise_mode: str,
    gens: Sequence[torch.Generator],
    device: torch.device,
) -> list[torch.Tensor | None]:
    """Every styled layer's per-sample noise, in layer order (the order the layers draw it in, so
    the values are the same), in one call outside torch.compile graphs (no graph break per layer)."""
    return [
        None
        if layer.noise is None
        else layer.noise.draw((n, 1, *layer.noise.noise_const.shape[2:]), noise_mode, gens, device)
        for layer in layers
    ]


@torch.compiler.disable
def noise_generators(seeds: Sequence[int] | torch.Tensor, device: torch.device) -> list[torch.Generator]:
    """One generator per sample (outside torch.compile graphs: no guards on the seed values)."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


class StyledLayer(nn.Module):
    """3x3 conv -> (upsample) -> noise -> lrelu, with the style injected by modulation or AdaIN.

    ``checkpoint_activations`` (set by :func:`gliomagen.models.fastops.set_activation_checkpointing`,
    ``train.activation_checkpointing``): keep only the layer's input and recompute the rest in the
    backward pass (same gradients, less memory, about one more forward pass of compute).
    """

    checkpoint_activations: bool = False

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        w_dim: int,
        shape: Sequence[int],
        *,
        style: str,
        up: bool,
        noise: bool,
        fused: bool,
        seed: int,
    ) -> None:
        super().__init__()
        sd = len(shape)
        self.style, self.up = style, up
        if style == "modulated":
            self.conv: nn.Module = ModulatedConv(
                in_ch, out_ch, 3, w_dim, sd, demodulate=True, fused=fused
            )
        elif style == "adain":
            self.conv = EqualConv(in_ch, out_ch, 3, sd)
            self.adain = AdaIN(out_ch, w_dim, sd)
        else:
            raise ValueError(f"style must be adain or modulated, got {style!r}")
        self.noise = NoiseInjection(out_ch, shape, seed=seed) if noise else None

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str,
        gens: Sequence[torch.Generator] | None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x [N, in, *S_in]``, ``w [N, w_dim]`` -> ``[N, out, *S]`` (``S = 2 S_in`` when ``up``).

        ``noise``: this layer's noise ``[N, 1, *S]`` drawn beforehand (see :meth:`NoiseInjection.draw`).
        """
        if not (self.checkpoint_activations and torch.is_grad_enabled()):
            return self._forward(x, w, noise_mode, gens, noise)
        # recomputed in the backward pass: draw the noise now (the per-sample generators are
        # stateful, a second draw would differ), keep only x, w and the noise
        if noise is None and self.noise is not None:
            side = [s * 2 if self.up else s for s in x.shape[2:]]
            noise = self.noise.draw((x.shape[0], 1, *side), noise_mode, gens, x.device)
        out: torch.Tensor = checkpoint(
            self._forward, x, w, noise_mode, None, noise, use_reentrant=False
        )
        return out

    def _forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str,
        gens: Sequence[torch.Generator] | None,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        # lrelu(conv + noise) * sqrt(2) with the gain folded into the conv weights and the noise
        # strength (lrelu(g z) = g lrelu(z)); the conv output is fresh, so the rest runs in place
        g = LRELU_GAIN
        x = fast_layout(x)  # oneDNN returns small single-sample outputs contiguous: re-assert
        x = self.conv(x, w, gain=g) if self.style == "modulated" else self.conv(x, gain=g)
        if self.up:  # convolve at the coarse grid, then interpolate: 1/8 of the cost in 3D
            x = upsample(x)
        inplace = can_write(x)  # not on a view (e.g. a batched grouped conv's output) under autograd
        if self.noise is not None:
            x = self.noise(x, noise_mode, gens, gain=g, inplace=inplace, noise=noise)
        lrelu = torch.nn.functional.leaky_relu_ if inplace else torch.nn.functional.leaky_relu
        x = lrelu(x, 0.2)
        if self.style == "adain":
            x = self.adain(x, w)
        return x


class OutputHeads(nn.Module):
    """1x1 heads of one resolution: mask logits, then images from features (+ mask softmax)."""

    def __init__(
        self,
        in_ch: int,
        w_dim: int,
        sd: int,
        *,
        style: str,
        n_img: int,
        n_cls: int,
        mask_first: bool,
        fused: bool,
        mask_head: str = "softmax",
    ) -> None:
        super().__init__()
        self.mask_first, self.modulated = mask_first, style == "modulated"
        self.mask_head = mask_head
        img_in = in_ch + (n_cls if mask_first else 0)
        if self.modulated:
            self.to_mask: nn.Module = ModulatedConv(
                in_ch, n_cls, 1, w_dim, sd, demodulate=False, fused=fused
            )
            self.to_img: nn.Module = ModulatedConv(
                img_in, n_img, 1, w_dim, sd, demodulate=False, fused=fused
            )
        else:
            self.to_mask = EqualConv(in_ch, n_cls, 1, sd)
            self.to_img = EqualConv(img_in, n_img, 1, sd)

    def _run(self, head: nn.Module, parts: list[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
        # the 1x1 head of the channel concatenation of ``parts``, without concatenating them
        assert isinstance(head, (ModulatedConv, EqualConv))
        if isinstance(head, ModulatedConv):
            return head.forward_parts(parts, w)
        return head.forward_parts(parts)

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        img: torch.Tensor | None,
        logits: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add this level's contribution to the upsampled running ``(img, raw mask)``.

        The running mask is raw (see :mod:`gliomagen.models.mask_head`); for the default
        ``softmax`` head it is the logits themselves.
        """
        m = self._run(self.to_mask, [x], w)  # [N, n_cls, *S]
        logits = m if logits is None else add_(upsample(logits), m)
        parts = [x]
        if self.mask_first:  # image head reads [features, mask probabilities]
            probs = torch.softmax(to_logits(logits.float(), self.mask_head), dim=1)
            parts.append(probs.to(x.dtype))
        y = self._run(self.to_img, parts, w)  # [N, n_img, *S]
        img = y if img is None else add_(upsample(img), y)
        return img, logits


__all__ = ["OutputHeads", "StyledLayer", "draw_noises", "noise_generators"]
