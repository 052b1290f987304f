"""The conditional discriminator: judges the images and the tumour mask of a volume together.

Input: images ``[N, n_img, *S]`` concatenated with the mask as class probabilities
``[N, n_cls, *S]`` (one-hot for real volumes, softmax of the logits for generated ones). Residual
down-blocks (StyleGAN2's resnet D) bring the grid to the generator's start grid; a minibatch
standard-deviation feature, a conv and a dense layer give the feature ``h``. The score is
``out(h) + <embed(c), h> / sqrt(C)`` (projection conditioning, Miyato & Koyama 2018); an optional
auxiliary classifier predicts every condition from ``h`` (AC-GAN, Odena et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrizations

from gliomagen.models.fastops import fast_layout, run_blocks
from gliomagen.models.grid import level_channels, plan_grid
from gliomagen.models.layers import EqualConv, EqualLinear, downsample


class DOutput(NamedTuple):
    """What the discriminator returns.

    Attributes:
        score: ``[N]`` realness logits.
        cat_logits: one ``[N, n_categories]`` tensor per categorical condition (empty without the
            auxiliary classifier).
        cont_pred: ``[N, n_cont]`` predicted continuous conditions, or ``None``.
    """

    score: torch.Tensor
    cat_logits: tuple[torch.Tensor, ...]
    cont_pred: torch.Tensor | None


def minibatch_std(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Append the mean per-group standard deviation as one feature map (StyleGAN's mbstd).

    Groups are *contiguous* runs of ``group_size`` samples (the largest divisor of ``N`` not above
    ``group_size``), so a batch split across data-parallel workers forms the same groups.

    Args:
        x: ``[N, C, *S]``.
        group_size: wanted group size.

    Returns:
        ``[N, C + 1, *S]``.
    """
    n = x.shape[0]
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.float().reshape(n // g, g, *x.shape[1:])  # [M, G, C, *S]
    y = (y.var(dim=1, unbiased=False) + 1e-8).sqrt()  # [M, C, *S]
    y = y.mean(dim=tuple(range(1, y.ndim)))  # [M]
    y = y.repeat_interleave(g).reshape(n, 1, *(1,) * (x.ndim - 2)).expand(n, 1, *x.shape[2:])
    return torch.cat([x, y.to(x.dtype)], dim=1)


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """Fold every 2x2(x2) block of voxels into channels: ``[N, C, *S] -> [N, C * 2^d, *S/2]``."""
    n, c, *s = x.shape
    sd = len(s)
    shape = [n, c] + [v for side in s for v in (side // 2, 2)]
    y = x.reshape(shape)  # [N, C, S1/2, 2, S2/2, 2, ...]
    order = [0, 1] + [3 + 2 * i for i in range(sd)] + [2 + 2 * i for i in range(sd)]
    return y.permute(order).reshape(n, c * 2**sd, *[side // 2 for side in s])


class DBlock(nn.Module):
    """Residual down-block: ``lrelu(conv) -> down -> lrelu(conv)`` plus a 1x1 skip, over sqrt(2).

    The second conv runs on the halved grid (as StyleGAN2's strided conv), 1/8 of the cost in 3D.
    """

    def __init__(self, in_ch: int, out_ch: int, sd: int, equalized: bool) -> None:
        super().__init__()
        self.conv0 = EqualConv(in_ch, in_ch, 3, sd, activation="lrelu", equalized=equalized)
        self.conv1 = EqualConv(in_ch, out_ch, 3, sd, activation="lrelu", equalized=equalized)
        self.skip = EqualConv(in_ch, out_ch, 1, sd, bias=False, equalized=equalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in, *S] -> [N, out, *S/2]``."""
        y = self.conv1(downsample(self.conv0(x)))
        return (y + self.skip(downsample(x))) * (1.0 / math.sqrt(2.0))


class Discriminator(nn.Module):
    """Conditional residual discriminator.

    Args:
        size: input grid (as the generator's).
        cat_sizes: embedding table sizes of the categorical conditions (categories + 1 unknown).
        n_cont: number of continuous conditions.
        n_img: image channels.
        n_cls: mask classes.
        channels: channels at the input resolution (doubling per halving).
        max_channels: channel cap.
        mbstd_group: minibatch-std group size (0 disables).
        aux_classifier: add the auxiliary classifier head.
        spectral_norm: spectral normalisation of every conv and dense weight.
        dropout: dropout probability on the flattened epilogue features (before ``fc``) and on
            ``h`` (before the score, projection and auxiliary heads); active in train mode only.
        stem: ``"conv"`` (a 1x1 conv at the input grid, then residual blocks from there) or
            ``"space_to_depth"`` (fold each 2^d block of voxels into channels first, losslessly,
            and start the blocks at half the grid: about a quarter of the compute at 32^3).

    ``checkpoint_activations`` (:func:`gliomagen.models.fastops.set_activation_checkpointing`,
    ``train.activation_checkpointing``): recompute each residual block's activations in the
    backward pass instead of storing them.
    """

    checkpoint_activations: bool = False

    def __init__(
        self,
        *,
        size: Sequence[int],
        cat_sizes: Sequence[int],
        n_cont: int,
        n_img: int = 4,
        n_cls: int = 4,
        channels: int = 16,
        max_channels: int = 256,
        mbstd_group: int = 4,
        aux_classifier: bool = False,
        spectral_norm: bool = False,
        stem: str = "conv",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.size = tuple(int(s) for s in size)
        start, k = plan_grid(self.size)
        sd = len(self.size)
        self.n_img, self.n_cls, self.mbstd_group = n_img, n_cls, mbstd_group
        self.cat_sizes, self.n_cont = [int(s) for s in cat_sizes], int(n_cont)
        n_levels = k + 1
        chans = [level_channels(i, n_levels, channels, max_channels) for i in range(n_levels)]
        eq = not spectral_norm
        if stem not in ("conv", "space_to_depth"):
            raise ValueError(f"stem must be conv or space_to_depth, got {stem!r}")
        self.stem = stem
        top = k - 1 if stem == "space_to_depth" else k  # level the residual blocks start from
        in_ch = (n_img + n_cls) * (2**sd if stem == "space_to_depth" else 1)
        self.from_input = EqualConv(in_ch, chans[top], 1, sd, activation="lrelu", equalized=eq)
        self.blocks = nn.Sequential(
            *[DBlock(chans[i], chans[i - 1], sd, eq) for i in range(top, 0, -1)]
        )
        c = chans[0]
        self.epilogue_conv = EqualConv(
            c + (1 if mbstd_group else 0), c, 3, sd, activation="lrelu", equalized=eq
        )
        self.fc = EqualLinear(c * math.prod(start), c, activation="lrelu", equalized=eq)
        self.out = EqualLinear(c, 1, equalized=eq)
        self.embed = nn.ModuleList([nn.Embedding(s, c) for s in self.cat_sizes])
        self.embed_cont = EqualLinear(self.n_cont, c, equalized=eq) if self.n_cont else None
        self.aux_cat = nn.ModuleList()
        self.aux_cont: EqualLinear | None = None
        if aux_classifier:
            self.aux_cat = nn.ModuleList(
                [EqualLinear(c, s - 1, equalized=eq) for s in self.cat_sizes]
            )
            self.aux_cont = EqualLinear(c, self.n_cont, equalized=eq) if self.n_cont else None
        self.feature_dim = c
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if spectral_norm:
            for m in self.modules():
                if isinstance(m, (EqualConv, EqualLinear)):
                    parametrizations.spectral_norm(m, name="weight")

    def forward(
        self, images: torch.Tensor, mask: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor
    ) -> DOutput:
        """Judge ``images [N, n_img, *S]`` with ``mask [N, n_cls, *S]`` (probabilities) under conditions.

        Args:
            images: intensities in [-1, 1].
            mask: class probabilities (one-hot for real volumes).
            cat: ``[N, n_cat]`` long.
            cont: ``[N, n_cont]`` float.

        Returns:
            :class:`DOutput`.
        """
        n = images.shape[0]
        if tuple(images.shape[1:]) != (self.n_img, *self.size) or tuple(mask.shape) != (
            n,
            self.n_cls,
            *self.size,
        ):
            raise ValueError(
                f"D expects images [N, {self.n_img}, {self.size}] and mask [N, {self.n_cls}, {self.size}], "
                f"got {list(images.shape)} and {list(mask.shape)}"
            )
        if cat.shape != (n, len(self.cat_sizes)) or cont.shape != (n, self.n_cont):
            raise ValueError(
                f"D conditions must be [N, {len(self.cat_sizes)}] and [N, {self.n_cont}]"
            )
        x = torch.cat([images, mask.to(images.dtype)], dim=1)  # [N, n_img + n_cls, *S]
        if self.stem == "space_to_depth":
            x = space_to_depth(x)  # [N, 2^d (n_img + n_cls), *S/2]
        x = self.from_input(fast_layout(x))  # [N, C_top, *S_top] (channels-last on the CPU)
        x = run_blocks(self.blocks, x, self.checkpoint_activations)  # [N, C_0, *start]
        if self.mbstd_group:
            x = minibatch_std(x, self.mbstd_group)
        h = self.fc(self.dropout(self.epilogue_conv(x).flatten(1))).float()  # [N, C]
        h = self.dropout(h)
        score = self.out(h).squeeze(1)  # [N]
        cmap = [table(cat[:, i]) for i, table in enumerate(self.embed)]  # [N, C] each
        if self.embed_cont is not None:
            cmap.append(self.embed_cont(cont.float()))
        if cmap:
            score = score + (h * torch.stack(cmap).sum(0)).sum(1) / math.sqrt(self.feature_dim)
        cat_logits = tuple(head(h) for head in self.aux_cat)
        cont_pred = self.aux_cont(h) if self.aux_cont is not None else None
        return DOutput(score.float(), cat_logits, cont_pred)
