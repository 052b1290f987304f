"""The conditional StyleGAN generator: every modality and the tumour mask of a volume at once.

Reads bottom-up: grid planning, one styled layer, the output heads, the synthesis network, the
generator (mapping + synthesis).

The synthesis network starts from a learned constant of shape ``size / 2**k`` (4^3 for powers of
two, 6x7x6 for 96x112x96) and doubles the grid ``k`` times. At every resolution two heads read the
features: the *mask head* adds 4-class logits to the upsampled logits of the level below, and the
*image head* reads the features together with the softmax of those logits (``mask_first``), so
the images are drawn from the mask (enhancing tissue can be made bright on T1Gd wherever the mask
says "enhancing"). Both heads are summed across resolutions (StyleGAN2's skip architecture).

Style injection is ``modulated`` (StyleGAN2 weight demodulation) or ``adain`` (StyleGAN's adaptive
instance normalisation, the origin design); each layer has noise injection with learned strength.
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
    EqualLinear,
    ModulatedConv,
    NoiseInjection,
    check_spatial_dims,
    upsample,
)
from gliomagen.models.mapping import MappingNetwork
from gliomagen.models.mask_head import MASK_HEADS, to_logits

MIN_SIDE, MAX_SIDE = 16, 256


def plan_grid(size: Sequence[int]) -> tuple[tuple[int, ...], int]:
    """Plan the resolutions of a network for an output grid.

    Args:
        size: output grid, 2 or 3 sides, each in [16, 256].

    Returns:
        ``(start_shape, n_doublings)``: the largest ``k`` with every side divisible by ``2**k`` and
        every side of ``size / 2**k`` at least 4.

    Raises:
        ValueError: a side outside [16, 256], or a grid that does not reduce to a start of sides
            4..8 by halving (e.g. 100 = 4 x 25).
    """
    size = tuple(int(s) for s in size)
    check_spatial_dims(len(size))
    if any(s < MIN_SIDE or s > MAX_SIDE for s in size):
        raise ValueError(
            f"every side must be in [{MIN_SIDE}, {MAX_SIDE}], got {'x'.join(map(str, size))}"
        )
    k = 0
    while all(s % 2 ** (k + 1) == 0 and s // 2 ** (k + 1) >= 4 for s in size):
        k += 1
    start = tuple(s // 2**k for s in size)
    if k < 2 or max(start) > 8:
        raise ValueError(
            f"grid {'x'.join(map(str, size))} does not halve to a start grid of sides 4..8 "
            f"(got {'x'.join(map(str, start))}); use sides such as 32, 64, 128 or 96x112x96"
        )
    return start, k


@torch.compiler.disable
def _draw_noises(
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
def _generators(seeds: Sequence[int] | torch.Tensor, device: torch.device) -> list[torch.Generator]:
    """One generator per sample (outside torch.compile graphs: no guards on the seed values)."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def level_channels(level: int, n_levels: int, base: int, max_channels: int) -> int:
    """Channels at ``level`` (0 = coarsest): ``base`` at the finest, doubling per halving, capped."""
    return int(min(max_channels, base * 2 ** (n_levels - 1 - level)))


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


class SynthesisNetwork(nn.Module):
    """``ws [N, num_ws, w_dim]`` -> ``(images [N, n_img, *size] in [-1, 1], mask_logits [N, n_cls, *size])``.

    Args:
        size: output grid (2 or 3 sides, see :func:`plan_grid`).
        w_dim: width of ``w``.
        channels: channels at the output resolution (doubling per halving).
        max_channels: channel cap.
        style: ``"modulated"`` or ``"adain"``.
        n_img: image channels (modalities).
        n_cls: mask classes.
        noise: per-layer noise injection.
        mask_first: the image heads read the mask softmax.
        fused_modconv: grouped-convolution modulated convs.
        mask_head: ``"softmax"`` or ``"nested"`` (see :mod:`gliomagen.models.mask_head`).
    """

    def __init__(
        self,
        size: Sequence[int],
        w_dim: int,
        channels: int = 16,
        max_channels: int = 256,
        style: str = "modulated",
        n_img: int = 4,
        n_cls: int = 4,
        noise: bool = True,
        mask_first: bool = True,
        fused_modconv: bool = True,
        mask_head: str = "softmax",
    ) -> None:
        super().__init__()
        if mask_head not in MASK_HEADS:
            raise ValueError(f"unknown mask head {mask_head!r}; expected one of {MASK_HEADS}")
        if mask_head == "nested" and n_cls != 4:
            raise ValueError(f"the nested mask head needs 4 mask classes, got {n_cls}")
        self.mask_head = mask_head
        self.size = tuple(int(s) for s in size)
        self.start, k = plan_grid(self.size)
        self.spatial_dims = sd = len(self.size)
        self.w_dim, self.n_img, self.n_cls = w_dim, n_img, n_cls
        n_levels = k + 1
        chans = [level_channels(i, n_levels, channels, max_channels) for i in range(n_levels)]
        self.const = nn.Parameter(torch.randn(chans[0], *self.start))
        self.start_fc: EqualLinear | None = None  # see add_latent_start
        self.layers = nn.ModuleList()
        self.heads = nn.ModuleList()
        self.layer_w_index: list[int] = []
        self.head_w_index: list[int] = []
        kw: dict[str, Any] = {"style": style, "noise": noise, "fused": fused_modconv}
        head_kw: dict[str, Any] = {"mask_first": mask_first, "mask_head": mask_head}
        for i in range(n_levels):
            shape = tuple(s * 2**i for s in self.start)
            if i == 0:
                self.layers.append(
                    StyledLayer(chans[0], chans[0], w_dim, shape, up=False, seed=0, **kw)
                )
                self.layer_w_index.append(0)
            else:
                self.layers.append(
                    StyledLayer(chans[i - 1], chans[i], w_dim, shape, up=True, seed=2 * i - 1, **kw)
                )
                self.layers.append(
                    StyledLayer(chans[i], chans[i], w_dim, shape, up=False, seed=2 * i, **kw)
                )
                self.layer_w_index += [2 * i - 1, 2 * i]
            self.heads.append(
                OutputHeads(
                    chans[i],
                    w_dim,
                    sd,
                    style=style,
                    n_img=n_img,
                    n_cls=n_cls,
                    fused=fused_modconv,
                    **head_kw,
                )
            )
            self.head_w_index.append(2 * i + 1)
        self.num_ws = 2 * k + 2
        self.level_of_layer = [0] + [i for i in range(1, n_levels) for _ in range(2)]

    def add_latent_start(self) -> None:
        """Add ``dense(w)`` to the learned constant (``model.start=latent``).

        StyleGAN starts every sample from the same constant and can place structures only
        through styles and noise, which on a few dozen cases learns the position of a tumour
        slowly; a dense layer from ``w`` to the start grid (ProGAN's and DCGAN's input layer)
        lets the latent and the conditions set the coarse layout directly.
        """
        self.start_fc = EqualLinear(self.w_dim, self.const.numel())

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        noise_seeds: Sequence[int] | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthesise from per-layer latents.

        Args:
            ws: ``[N, num_ws, w_dim]``.
            noise_mode: ``"random"``, ``"const"`` or ``"none"``.
            noise_seeds: one seed per sample for ``"random"`` noise, so a sample's noise does not
                depend on its batch (exact data-parallel equivalence); ``None`` uses the global RNG.

        Returns:
            ``(images [N, n_img, *size] in [-1, 1], mask_logits [N, n_cls, *size])``.
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        gens = None
        if noise_seeds is not None and noise_mode == "random":
            if len(noise_seeds) != ws.shape[0]:
                raise ValueError(f"need {ws.shape[0]} noise seeds, got {len(noise_seeds)}")
            gens = _generators(noise_seeds, ws.device)
        noises: list[torch.Tensor | None] = [None] * len(self.layers)
        if gens is not None:
            noises = _draw_noises(self.layers, ws.shape[0], noise_mode, gens, ws.device)
        x = fast_layout(
            self.const.unsqueeze(0).expand(ws.shape[0], *self.const.shape).to(ws.dtype)
        )  # [N, C0, *start] (channels-last on the CPU)
        if self.start_fc is not None:
            x = x + fast_layout(self.start_fc(ws[:, 0]).reshape(x.shape).to(x.dtype))
        img: torch.Tensor | None = None
        logits: torch.Tensor | None = None
        li = 0
        for level, head in enumerate(self.heads):
            n_layers = 1 if level == 0 else 2
            for _ in range(n_layers):
                x = self.layers[li](
                    x, ws[:, self.layer_w_index[li]], noise_mode, gens, noises[li]
                )
                li += 1
            img, logits = head(x, ws[:, self.head_w_index[level]], img, logits)
        assert img is not None and logits is not None
        img = img.float()  # a fresh tensor (an upsampled sum): tanh in place
        img = torch.tanh_(img) if can_write(img) else torch.tanh(img)
        return img, to_logits(logits.float(), self.mask_head)


class Generator(nn.Module):
    """Conditional generator: :class:`MappingNetwork` + :class:`SynthesisNetwork`.

    Build it with :func:`gliomagen.models.build_generator`.

    Example:
        >>> G = Generator(size=(16, 16, 16), cat_sizes=[3], n_cont=0, z_dim=8, w_dim=8, channels=4, max_channels=8)
        >>> imgs, logits = G(torch.randn(2, 8), torch.tensor([[0], [1]]), torch.zeros(2, 0))
        >>> imgs.shape, logits.shape
        (torch.Size([2, 4, 16, 16, 16]), torch.Size([2, 4, 16, 16, 16]))
    """

    def __init__(
        self,
        *,
        size: Sequence[int],
        cat_sizes: Sequence[int],
        n_cont: int,
        n_img: int = 4,
        n_cls: int = 4,
        z_dim: int = 128,
        w_dim: int = 128,
        mapping_layers: int = 4,
        mapping_lr_mul: float = 0.01,
        embed_dim: int = 32,
        style: str = "modulated",
        channels: int = 16,
        max_channels: int = 256,
        noise: bool = True,
        mask_first: bool = True,
        fused_modconv: bool = True,
        mask_head: str = "softmax",
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        self.mapping = MappingNetwork(
            z_dim, w_dim, cat_sizes, n_cont, embed_dim, mapping_layers, mapping_lr_mul
        )
        self.synthesis = SynthesisNetwork(
            size,
            w_dim,
            channels,
            max_channels,
            style,
            n_img,
            n_cls,
            noise,
            mask_first,
            fused_modconv,
            mask_head,
        )
        self.num_ws = self.synthesis.num_ws
        self.size = self.synthesis.size
        self.encoder: nn.Module | None = None  # VAE-GAN option, set by build_generator

    def forward(
        self,
        z: torch.Tensor,
        cat: torch.Tensor,
        cont: torch.Tensor,
        truncation_psi: float = 1.0,
        w_avg: torch.Tensor | None = None,
        noise_mode: str = "random",
        noise_seeds: Sequence[int] | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Generate volumes.

        Args:
            z: ``[N, z_dim]`` latents.
            cat: ``[N, n_cat]`` long, categorical condition codes.
            cont: ``[N, n_cont]`` float, standardised continuous conditions.
            truncation_psi: ``w = w_avg + psi * (w - w_avg)``; 1 = no truncation.
            w_avg: ``[w_dim]`` or ``[N, w_dim]`` centre of truncation (e.g. a per-condition mean);
                defaults to the running mean tracked in training.
            noise_mode: ``"random"``, ``"const"`` or ``"none"``.
            noise_seeds: per-sample noise seeds (see :meth:`SynthesisNetwork.forward`).

        Returns:
            ``(images [N, n_img, *size] in [-1, 1], mask_logits [N, n_cls, *size])``.
        """
        w = self.mapping(z, cat, cont)  # [N, w_dim]
        if truncation_psi != 1.0:
            centre = self.mapping.w_avg if w_avg is None else w_avg.to(w.device, w.dtype)
            w = centre + truncation_psi * (w - centre)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        return self.synthesis(ws, noise_mode=noise_mode, noise_seeds=noise_seeds)
