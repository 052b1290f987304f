"""The latent encoder of the VAE-GAN option: a real volume (images + mask) to ``q(z | x)``.

With ``model.encoder`` the generator carries this encoder, and the generator's step adds a
reconstruction term (Larsen et al. 2016, VAE-GAN; Zhu et al. 2017, BicycleGAN's cVAE-GAN): a real
case is encoded to ``z ~ N(mu, sigma)``, generated back under its own conditions, and compared
voxel by voxel (cross-entropy of the mask, L1 of the images), while a KL term keeps ``q(z | x)``
close to the ``N(0, I)`` prior that sampling draws from. The adversarial loss still judges samples
from the prior. On a few dozen cases this dense supervision teaches the generator the inner
structure of tumours (an enhancing rim around a necrotic core) in far fewer steps than the
adversarial signal alone, whose view of a tumour a few percent of the volume is faint.

Sampling never uses the encoder; it only adds parameters to the generator's checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gliomagen.models.discriminator import DBlock, space_to_depth
from gliomagen.models.grid import level_channels, low_view, plan_grid
from gliomagen.models.layers import EqualConv, EqualLinear


class LatentEncoder(nn.Module):
    """``(images [N, n_img, *S], mask [N, n_cls, *S]) -> (mu [N, z_dim], logvar [N, z_dim])``.

    The trunk is the discriminator's (residual down-blocks to the start grid, then a dense layer).

    Args:
        size: input grid.
        z_dim: latent width.
        n_img: image channels.
        n_cls: mask classes.
        channels: channels at the input resolution (doubling per halving).
        max_channels: channel cap.
        stem: ``"conv"`` or ``"space_to_depth"`` (as :class:`~gliomagen.models.discriminator.Discriminator`).
    """

    def __init__(
        self,
        size: Sequence[int],
        z_dim: int,
        n_img: int = 4,
        n_cls: int = 4,
        channels: int = 16,
        max_channels: int = 256,
        stem: str = "conv",
    ) -> None:
        super().__init__()
        self.size = tuple(int(s) for s in size)
        start, k = plan_grid(self.size)
        sd = len(self.size)
        chans = [level_channels(i, k + 1, channels, max_channels) for i in range(k + 1)]
        self.stem = stem
        top = k - 1 if stem == "space_to_depth" else k
        in_ch = (n_img + n_cls) * (2**sd if stem == "space_to_depth" else 1)
        self.from_input = EqualConv(in_ch, chans[top], 1, sd, activation="lrelu")
        self.blocks = nn.Sequential(
            *[DBlock(chans[i], chans[i - 1], sd, True) for i in range(top, 0, -1)]
        )
        c = chans[0]
        self.fc = EqualLinear(c * math.prod(start), c, activation="lrelu")
        self.mu = EqualLinear(c, z_dim)
        self.logvar = EqualLinear(c, z_dim)

    def forward(
        self, images: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of ``z`` (log-variance clamped to [-10, 4]).

        Cases on a grid ``f`` times the encoder's (a hierarchical model's full grid, its encoder
        at the low resolution) are first seen at its grid: block averages of the images, the
        one-hot of each block's largest mask class (:func:`gliomagen.models.grid.low_view`).
        """
        images, mask = self._at_grid(images, mask)
        x = torch.cat([images, mask.to(images.dtype)], dim=1)
        if self.stem == "space_to_depth":
            x = space_to_depth(x)
        h = self.fc(self.blocks(self.from_input(x)).flatten(1))
        return self.mu(h).float(), self.logvar(h).float().clamp(-10.0, 4.0)

    def _at_grid(
        self, images: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        grid = tuple(int(s) for s in images.shape[2:])
        if grid == self.size:
            return images, mask
        factor = grid[0] // self.size[0]
        if factor < 2 or grid != tuple(s * factor for s in self.size):
            raise ValueError(
                f"the encoder reads {list(self.size)} grids or a multiple, got {list(grid)}"
            )
        return low_view(images, mask, factor, hard=True)


def reparameterise(
    mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None
) -> torch.Tensor:
    """A draw ``mu + eps * exp(logvar / 2)`` of ``q(z | x)``.

    ``eps`` is standard-normal noise ``[N, z_dim]`` drawn by the caller from its own generator
    (training: the step plan's, so a resumed run draws what an uninterrupted one does); ``None``
    draws it from the global generator.
    """
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + eps.to(mu.device, mu.dtype) * (0.5 * logvar).exp()


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample ``KL(N(mu, exp(logvar)) || N(0, I))`` ``[N]`` (nats, summed over dimensions)."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)
