"""The conditional StyleGAN generator: every modality and the tumour mask of a volume at once.

The grid planning is :mod:`gliomagen.models.grid`, one resolution level (styled layer, output
heads) :mod:`gliomagen.models.levels`; this module assembles the synthesis network and the
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

from gliomagen.models.fastops import can_write, fast_layout
from gliomagen.models.grid import MAX_SIDE, MIN_SIDE, level_channels, plan_grid
from gliomagen.models.layers import EqualLinear
from gliomagen.models.levels import OutputHeads, StyledLayer, draw_noises, noise_generators
from gliomagen.models.mapping import MappingNetwork
from gliomagen.models.mask_head import MASK_HEADS, to_logits


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
        self.spatial_dims = len(self.size)
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
            self._add_level(i, chans, kw, head_kw)
        self.num_ws = 2 * k + 2
        self.level_of_layer = [0] + [i for i in range(1, n_levels) for _ in range(2)]

    def _add_level(
        self, i: int, chans: list[int], kw: dict[str, Any], head_kw: dict[str, Any]
    ) -> None:
        """Append level ``i``'s styled layers (one at the start grid, else an upsampling one and
        a plain one) and its output heads, with the indices of the ``w`` each reads."""
        shape = tuple(s * 2**i for s in self.start)
        if i == 0:
            self.layers.append(
                StyledLayer(chans[0], chans[0], self.w_dim, shape, up=False, seed=0, **kw)
            )
            self.layer_w_index.append(0)
        else:
            self.layers.append(
                StyledLayer(
                    chans[i - 1], chans[i], self.w_dim, shape, up=True, seed=2 * i - 1, **kw
                )
            )
            self.layers.append(
                StyledLayer(chans[i], chans[i], self.w_dim, shape, up=False, seed=2 * i, **kw)
            )
            self.layer_w_index += [2 * i - 1, 2 * i]
        self.heads.append(
            OutputHeads(
                chans[i],
                self.w_dim,
                self.spatial_dims,
                style=kw["style"],
                n_img=self.n_img,
                n_cls=self.n_cls,
                fused=kw["fused"],
                **head_kw,
            )
        )
        self.head_w_index.append(2 * i + 1)

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
        _x, img, logits = self.features(ws, noise_mode, noise_seeds)
        return finish_outputs(img, logits, self.mask_head)

    def features(
        self,
        ws: torch.Tensor,
        noise_mode: str = "random",
        noise_seeds: Sequence[int] | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last level's features and the raw head sums, before :func:`finish_outputs`.

        Returns:
            ``(features [N, C, *size], raw images [N, n_img, *size], raw mask [N, n_cls, *size])``
            (the hierarchical generator continues from these, :mod:`gliomagen.models.hierarchical`).
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        gens = None
        if noise_seeds is not None and noise_mode == "random":
            if len(noise_seeds) != ws.shape[0]:
                raise ValueError(f"need {ws.shape[0]} noise seeds, got {len(noise_seeds)}")
            gens = noise_generators(noise_seeds, ws.device)
        noises: list[torch.Tensor | None] = [None] * len(self.layers)
        if gens is not None:
            noises = draw_noises(self.layers, ws.shape[0], noise_mode, gens, ws.device)
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
                x = self.layers[li](x, ws[:, self.layer_w_index[li]], noise_mode, gens, noises[li])
                li += 1
            img, logits = head(x, ws[:, self.head_w_index[level]], img, logits)
        assert img is not None and logits is not None
        return x, img, logits


def finish_outputs(
    img: torch.Tensor, raw_mask: torch.Tensor, mask_head: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw head sums -> ``(images in [-1, 1] (tanh), mask logits)``, both float32."""
    img = img.float()  # a fresh tensor (an upsampled sum): tanh in place
    img = torch.tanh_(img) if can_write(img) else torch.tanh(img)
    return img, to_logits(raw_mask.float(), mask_head)


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
        synthesis: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        self.mapping = MappingNetwork(
            z_dim, w_dim, cat_sizes, n_cont, embed_dim, mapping_layers, mapping_lr_mul
        )
        self.synthesis: Any = (
            synthesis
            if synthesis is not None
            else SynthesisNetwork(
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
        )
        self.num_ws: int = getattr(self.synthesis, "num_ws")  # noqa: B009 (typed as int for mypy)
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


__all__ = [  # the grid and level names stay importable from here
    "MAX_SIDE",
    "MIN_SIDE",
    "Generator",
    "OutputHeads",
    "StyledLayer",
    "SynthesisNetwork",
    "finish_outputs",
    "level_channels",
    "plan_grid",
]
