"""A naive implementation of the origin design, the reference ``gliomagen bench`` compares against.

"Naive" means what a straightforward PyTorch implementation of the origin proposal would do, at the
same grid and the same widths as the preset it is compared with, in fp32, with no tricks:

- generator: mapping MLP (``nn.Linear``) from ``z`` and a condition embedding to ``w``; a learned
  constant; per level *nearest-neighbour upsampling, then* a 3x3x3 ``nn.Conv3d`` at the fine grid,
  noise, leaky ReLU and AdaIN as ``nn.InstanceNorm3d`` plus a style affine, then a second such conv
  block; one pair of 1x1 heads at the output grid (mask logits, then images from the features and
  the mask softmax); ``tanh``;
- discriminator: a plain VGG-style stack per level (two 3x3x3 convs at the level's grid, leaky ReLU,
  2x average pooling), a dense layer, a score with projection conditioning;
- loss: the same LSGAN functions as gliomagen's training (:mod:`gliomagen.training.losses`);
- contiguous memory layout, no fused or in-place operations, no gain folding, no custom kernels.

What gliomagen does differently: convolves before upsampling (1/8 of the FLOPs of the up-convs),
runs D's second conv of each block at the halved grid, channels-last layout on the CPU, folded
gains and in-place epilogues, skip heads as batched products (see :mod:`gliomagen.models.fastops`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gliomagen.bench.workloads import conditions, random_reals
from gliomagen.models.grid import level_channels, plan_grid
from gliomagen.training.losses import d_adv_loss, g_adv_loss


def naive_widths(size: int, channels: int, max_channels: int) -> list[int]:
    """Channels per level (coarsest first), as gliomagen's networks: ``channels`` at the output grid."""
    _, k = plan_grid((size,) * 3)
    return [level_channels(i, k + 1, channels, max_channels) for i in range(k + 1)]


class NaiveAdaIN(nn.Module):
    """``InstanceNorm3d(x) * (1 + scale(w)) + shift(w)``."""

    def __init__(self, channels: int, w_dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm3d(channels, affine=False)
        self.style = nn.Linear(w_dim, 2 * channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scale, shift = self.style(w).chunk(2, dim=1)
        return self.norm(x) * (1 + scale[:, :, None, None, None]) + shift[:, :, None, None, None]


class NaiveBlock(nn.Module):
    """(nearest x2 upsample) -> conv3x3 -> + noise -> leaky ReLU -> AdaIN."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, up: bool) -> None:
        super().__init__()
        self.up = up
        self.conv = nn.Conv3d(in_ch, out_ch, 3, padding=1)
        self.noise_strength = nn.Parameter(torch.zeros(1, out_ch, 1, 1, 1))
        self.act = nn.LeakyReLU(0.2)
        self.adain = NaiveAdaIN(out_ch, w_dim)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.conv(x)
        noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device)
        x = self.act(x + self.noise_strength * noise)
        return self.adain(x, w)


class NaiveGenerator(nn.Module):
    """The origin design, plainly: ``(z, cat) -> (images [N, 4, *S] in [-1, 1], logits [N, 4, *S])``."""

    def __init__(
        self,
        size: int,
        channels: int,
        max_channels: int,
        z_dim: int,
        w_dim: int,
        n_cat_embeddings: list[int],
        mapping_layers: int = 4,
        n_img: int = 4,
        n_cls: int = 4,
    ) -> None:
        super().__init__()
        start, _ = plan_grid((size,) * 3)
        self.widths = widths = naive_widths(size, channels, max_channels)
        self.z_dim = z_dim
        self.embed = nn.ModuleList([nn.Embedding(n, z_dim) for n in n_cat_embeddings])
        layers: list[nn.Module] = []
        d = z_dim * (1 + len(n_cat_embeddings))
        for _ in range(mapping_layers):
            layers += [nn.Linear(d, w_dim), nn.LeakyReLU(0.2)]
            d = w_dim
        self.mapping = nn.Sequential(*layers)
        self.const = nn.Parameter(torch.randn(1, widths[0], *start))
        self.blocks = nn.ModuleList([NaiveBlock(widths[0], widths[0], w_dim, up=False)])
        for i in range(1, len(widths)):
            self.blocks.append(NaiveBlock(widths[i - 1], widths[i], w_dim, up=True))
            self.blocks.append(NaiveBlock(widths[i], widths[i], w_dim, up=False))
        self.to_mask = nn.Conv3d(widths[-1], n_cls, 1)
        self.to_img = nn.Conv3d(widths[-1] + n_cls, n_img, 1)

    def mapping_w(self, z: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """``w [N, w_dim]``."""
        parts = [z] + [table(cat[:, i]) for i, table in enumerate(self.embed)]
        return self.mapping(torch.cat(parts, dim=1))

    def forward(self, z: torch.Tensor, cat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.mapping_w(z, cat)
        x = self.const.expand(z.shape[0], *self.const.shape[1:])
        for block in self.blocks:
            x = block(x, w)
        logits = self.to_mask(x)
        img = self.to_img(torch.cat([x, torch.softmax(logits, dim=1)], dim=1))
        return torch.tanh(img), logits


class NaiveDiscriminator(nn.Module):
    """Plain VGG-style conditional discriminator on ``[images, mask probabilities]``."""

    def __init__(
        self,
        size: int,
        channels: int,
        max_channels: int,
        n_cat_embeddings: list[int],
        n_in: int = 8,
    ) -> None:
        super().__init__()
        start, _ = plan_grid((size,) * 3)
        widths = naive_widths(size, channels, max_channels)[::-1]  # finest first
        self.widths = widths
        self.from_input = nn.Conv3d(n_in, widths[0], 1)
        blocks: list[nn.Module] = []
        for i in range(len(widths) - 1):
            blocks += [
                nn.Conv3d(widths[i], widths[i], 3, padding=1),
                nn.LeakyReLU(0.2),
                nn.Conv3d(widths[i], widths[i + 1], 3, padding=1),
                nn.LeakyReLU(0.2),
                nn.AvgPool3d(2),
            ]
        self.blocks = nn.Sequential(*blocks)
        c = widths[-1]
        self.fc = nn.Linear(c * math.prod(start), c)
        self.out = nn.Linear(c, 1)
        self.embed = nn.ModuleList([nn.Embedding(n, c) for n in n_cat_embeddings])

    def forward(self, img: torch.Tensor, mask: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.from_input(torch.cat([img, mask], dim=1)), 0.2)
        h = F.leaky_relu(self.fc(self.blocks(x).flatten(1)), 0.2)
        score = self.out(h).squeeze(1)
        for i, table in enumerate(self.embed):
            score = score + (table(cat[:, i]) * h).sum(1) / math.sqrt(h.shape[1])
        return score


class NaiveGanStep:
    """One naive training step (G phase + D phase, LSGAN, Adam) at a preset's grid and widths.

    Args:
        size: cube side.
        batch: batch size.
        g_channels / g_max_channels / d_channels / d_max_channels: the preset's widths.
        z_dim / w_dim / mapping_layers: the preset's latent sizes.
        n_cat_embeddings: embedding sizes of the categorical conditions.
        device: where to run.
        seed: weights and data seed.
    """

    def __init__(
        self,
        size: int,
        batch: int,
        *,
        g_channels: int,
        g_max_channels: int,
        d_channels: int,
        d_max_channels: int,
        z_dim: int,
        w_dim: int,
        mapping_layers: int,
        n_cat_embeddings: list[int],
        device: torch.device,
        seed: int = 0,
    ) -> None:
        torch.manual_seed(seed)
        self.G = NaiveGenerator(
            size, g_channels, g_max_channels, z_dim, w_dim, n_cat_embeddings, mapping_layers
        ).to(device)
        self.D = NaiveDiscriminator(size, d_channels, d_max_channels, n_cat_embeddings).to(device)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=4e-4, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=1e-4, betas=(0.5, 0.999))
        self.real_img, self.real_mask = random_reals(batch, size, device, seed)
        self.cat = conditions(batch)[0].to(device)
        self.batch, self.z_dim, self.device = batch, z_dim, device

    def __call__(self) -> None:
        z = torch.randn(self.batch, self.z_dim, device=self.device)
        # G phase
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        self.opt_G.zero_grad(set_to_none=True)
        img, logits = self.G(z, self.cat)
        score = self.D(img, torch.softmax(logits, dim=1), self.cat)
        g_adv_loss("lsgan", score).mean().backward()
        self.opt_G.step()
        # D phase
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        self.opt_D.zero_grad(set_to_none=True)
        with torch.no_grad():
            img, logits = self.G(z, self.cat)
        fake = self.D(img, torch.softmax(logits, dim=1), self.cat)
        real = self.D(self.real_img, self.real_mask, self.cat)
        l_real, l_fake = d_adv_loss("lsgan", real, fake)
        (l_real + l_fake).mean().backward()
        self.opt_D.step()


class NaiveGeneration:
    """Naive generation of ``batch`` volumes (one at a time on the CPU, as gliomagen's)."""

    def __init__(self, G: NaiveGenerator, batch: int, device: torch.device) -> None:
        self.G = G.eval().requires_grad_(False)
        self.batch, self.device = batch, device
        self.cat = conditions(batch)[0].to(device)

    def __call__(self) -> None:
        step = 1 if self.device.type == "cpu" else self.batch
        with torch.no_grad():
            for i in range(0, self.batch, step):
                z = torch.randn(min(step, self.batch - i), self.G.z_dim, device=self.device)
                img, logits = self.G(z, self.cat[i : i + len(z)])
                img.cpu().numpy(), logits.cpu().numpy()
