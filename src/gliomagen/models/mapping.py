"""The mapping network: latent ``z`` plus the encoded conditions -> intermediate latent ``w``.

Each categorical condition has its own embedding table (its categories plus the 'unknown' slot of
:class:`gliomagen.data.conditions.ConditionSchema`); the continuous conditions are projected by one
linear layer. The concatenated embeddings are projected to ``embed_dim``, normalised, concatenated
with the normalised ``z`` and passed through an MLP (StyleGAN2-ADA's conditional mapping).

The latent prior that moves a standard-normal ``z`` before the MLP (identity until fitted) is
:class:`gliomagen.models.latent_prior.LatentPrior`, whose buffers the mapping network holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gliomagen.models.latent_prior import LatentPrior
from gliomagen.models.layers import EqualLinear, normalize_2nd_moment


class ConditionEmbedding(nn.Module):
    """Embed ``(cat [N, n_cat] long, cont [N, n_cont] float)`` into one vector ``[N, out_dim]``.

    Args:
        cat_sizes: embedding table size of each categorical field (categories + 1 unknown slot).
        n_cont: number of continuous fields.
        out_dim: output width (0 conditions -> a learned constant, so unconditional models work).
    """

    def __init__(self, cat_sizes: Sequence[int], n_cont: int, out_dim: int) -> None:
        super().__init__()
        self.cat_sizes = [int(s) for s in cat_sizes]
        self.n_cont = int(n_cont)
        tables = [nn.Embedding(s, out_dim) for s in self.cat_sizes]
        for t in tables:
            nn.init.normal_(t.weight)
        self.tables = nn.ModuleList(tables)
        self.cont = EqualLinear(self.n_cont, out_dim) if self.n_cont else None
        n_parts = len(self.cat_sizes) + (1 if self.n_cont else 0)
        self.project = EqualLinear(out_dim * n_parts, out_dim) if n_parts else None
        self.out_dim = out_dim

    def check(self, cat: torch.Tensor, cont: torch.Tensor) -> None:
        """Raise ValueError unless ``cat [N, n_cat]`` and ``cont [N, n_cont]`` fit this embedding."""
        if cat.ndim != 2 or cat.shape[1] != len(self.cat_sizes):
            raise ValueError(f"cat must be [N, {len(self.cat_sizes)}], got {list(cat.shape)}")
        if cont.ndim != 2 or cont.shape[1] != self.n_cont or cont.shape[0] != cat.shape[0]:
            raise ValueError(
                f"cont must be [{cat.shape[0]}, {self.n_cont}], got {list(cont.shape)}"
            )

    def forward(self, cat: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """Return ``[N, out_dim]`` (zeros when the schema has no fields)."""
        self.check(cat, cont)
        parts = [table(cat[:, i]) for i, table in enumerate(self.tables)]  # [N, E] each
        if self.cont is not None:
            parts.append(self.cont(cont.float()))
        if self.project is None:
            return cat.new_zeros((cat.shape[0], self.out_dim), dtype=torch.float32)
        return self.project(torch.cat(parts, dim=1))


class MappingNetwork(LatentPrior):
    """``z [N, z_dim]`` + conditions -> ``w [N, w_dim]`` (with the latent prior of
    :class:`~gliomagen.models.latent_prior.LatentPrior`).

    Args:
        z_dim: latent width.
        w_dim: intermediate latent width.
        cat_sizes: embedding table sizes of the categorical conditions.
        n_cont: number of continuous conditions.
        embed_dim: width of the condition embedding.
        num_layers: MLP depth.
        lr_mul: learning-rate multiplier of the MLP (0.01 in StyleGAN).
        w_avg_beta: decay of the running mean of ``w`` kept in the ``w_avg`` buffer.

    Example:
        >>> m = MappingNetwork(8, 8, cat_sizes=[3], n_cont=1, embed_dim=4, num_layers=2)
        >>> m(torch.randn(2, 8), torch.tensor([[0], [1]]), torch.zeros(2, 1)).shape
        torch.Size([2, 8])
    """

    w_avg: torch.Tensor

    def __init__(
        self,
        z_dim: int,
        w_dim: int,
        cat_sizes: Sequence[int],
        n_cont: int,
        embed_dim: int = 32,
        num_layers: int = 4,
        lr_mul: float = 0.01,
        w_avg_beta: float = 0.995,
    ) -> None:
        super().__init__()
        self.z_dim, self.w_dim = z_dim, w_dim
        self.embed = ConditionEmbedding(cat_sizes, n_cont, embed_dim)
        self.conditional = bool(len(cat_sizes) or n_cont)
        widths = [z_dim + (embed_dim if self.conditional else 0)] + [w_dim] * num_layers
        self.layers = nn.Sequential(
            *[
                EqualLinear(a, b, lr_mul=lr_mul, activation="lrelu")
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.w_avg_beta = w_avg_beta
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.register_prior(z_dim, cat_sizes, n_cont)

    @torch.no_grad()
    def track_w_avg(self, w_mean: torch.Tensor) -> None:
        """Move the ``w_avg`` buffer toward a batch mean ``[w_dim]`` (called by the training loop)."""
        self.w_avg.copy_(w_mean.detach().float().lerp(self.w_avg, self.w_avg_beta))

    def forward(
        self, z: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor, prior: bool = True
    ) -> torch.Tensor:
        """Map ``z [N, z_dim]``, ``cat [N, n_cat]``, ``cont [N, n_cont]`` to ``w [N, w_dim]``.

        ``prior=True``: ``z`` is a standard-normal draw, moved onto the latent prior first (a
        no-op until one is fitted). ``prior=False``: ``z`` is already a latent (an encoder's).
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {list(z.shape)}")
        if cat.shape[0] != z.shape[0]:
            raise ValueError(f"z has {z.shape[0]} rows but the conditions have {cat.shape[0]}")
        z = self.apply_prior(z, cat, cont) if prior else z.float()
        x = normalize_2nd_moment(z)
        if self.conditional:
            x = torch.cat([x, normalize_2nd_moment(self.embed(cat, cont))], dim=1)
        else:
            self.embed.check(cat, cont)
        return self.layers(x)  # [N, w_dim]
