"""The mapping network: latent ``z`` plus the encoded conditions -> intermediate latent ``w``.

Each categorical condition has its own embedding table (its categories plus the 'unknown' slot of
:class:`gliomagen.data.conditions.ConditionSchema`); the continuous conditions are projected by one
linear layer. The concatenated embeddings are projected to ``embed_dim``, normalised, concatenated
with the normalised ``z`` and passed through an MLP (StyleGAN2-ADA's conditional mapping).

The latent prior: by default ``z ~ N(0, I)`` goes into the MLP as it is. With
``model.latent_prior=fitted`` (VAE-GAN models) the network also holds a Gaussian fitted to the
encoded training cases (buffers ``z_mean``, ``z_tril``; see
:mod:`gliomagen.training.latent_prior`), and a standard-normal ``z`` is first moved onto it,
``z -> z_mean + z_tril @ z``, so that every sampler (``gliomagen generate``, interpolation,
validation, truncation centres) draws from the region of latent space the generator was taught
to decode, with the same seeds giving the same samples. The fit may be a mixture of ``K``
Gaussians sharing ``z_tril`` (``model.latent_prior_components``; buffers ``z_offsets [K, z_dim]``,
the component means less ``z_mean``, and ``z_weights [K]``): the component is then read off the
first coordinate of the same standard-normal ``z`` (its uniform ``Phi(z_0)`` picks the component
by the cumulative weights, and the rescaled remainder of that uniform becomes a fresh standard
normal), so one seed still gives one sample and the draw follows the mixture exactly. The
reconstruction terms of training pass encoded latents with ``prior=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

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


class MappingNetwork(nn.Module):
    """``z [N, z_dim]`` + conditions -> ``w [N, w_dim]``.

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
    z_mean: torch.Tensor
    z_tril: torch.Tensor
    z_offsets: torch.Tensor
    z_weights: torch.Tensor
    PRIOR_BUFFERS = ("z_mean", "z_tril", "z_offsets", "z_weights")

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
        # the latent prior as an affine map of N(0, I): identity until fitted
        self.register_buffer("z_mean", torch.zeros(z_dim))
        self.register_buffer("z_tril", torch.eye(z_dim))
        # a mixture prior's component means (less z_mean) and weights: one component until fitted
        self.register_buffer("z_offsets", torch.zeros(1, z_dim))
        self.register_buffer("z_weights", torch.ones(1))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # checkpoints written before the latent prior existed: the identity (N(0, I)) prior
        state_dict.setdefault(prefix + "z_mean", torch.zeros_like(self.z_mean))
        state_dict.setdefault(
            prefix + "z_tril", torch.eye(self.z_dim, device=self.z_tril.device, dtype=self.z_tril.dtype)
        )
        state_dict.setdefault(prefix + "z_offsets", torch.zeros(1, self.z_dim))
        state_dict.setdefault(prefix + "z_weights", torch.ones(1))
        # the number of mixture components is the checkpoint's: take its buffers' shapes
        for name in ("z_offsets", "z_weights"):
            incoming = state_dict[prefix + name]
            if isinstance(incoming, torch.Tensor) and incoming.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros_like(incoming, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_prior(
        self,
        mean: torch.Tensor,
        tril: torch.Tensor,
        offsets: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> None:
        """Sample ``z`` from ``N(mean, tril @ tril.T)``: ``mean [z_dim]``, lower-triangular ``tril``.

        With ``offsets [K, z_dim]`` and ``weights [K]`` (positive, summing to 1): from the mixture
        ``sum_k weights[k] N(mean + offsets[k], tril @ tril.T)``.
        """
        if mean.shape != (self.z_dim,) or tril.shape != (self.z_dim, self.z_dim):
            raise ValueError(
                f"latent prior must be [{self.z_dim}] and [{self.z_dim}, {self.z_dim}], "
                f"got {list(mean.shape)} and {list(tril.shape)}"
            )
        if offsets is None:
            offsets = mean.new_zeros(1, self.z_dim)
        if weights is None:
            weights = mean.new_ones(len(offsets)) / len(offsets)
        if offsets.ndim != 2 or offsets.shape[1] != self.z_dim or weights.shape != (len(offsets),):
            raise ValueError(
                f"mixture offsets must be [K, {self.z_dim}] and weights [K], "
                f"got {list(offsets.shape)} and {list(weights.shape)}"
            )
        if bool((weights <= 0).any()) or abs(float(weights.sum()) - 1.0) > 1e-4:
            raise ValueError(f"mixture weights must be positive and sum to 1, got {weights.tolist()}")
        self.z_mean.copy_(mean)
        self.z_tril.copy_(torch.tril(tril))
        self._set_mixture(offsets, weights)

    def _set_mixture(self, offsets: torch.Tensor, weights: torch.Tensor) -> None:
        """Write the mixture buffers: in place when the number of components is unchanged (so
        references held elsewhere, e.g. by DistributedDataParallel, stay valid), else anew."""
        for name, value in (("z_offsets", offsets), ("z_weights", weights)):
            buf = getattr(self, name)
            if buf.shape == value.shape:
                buf.copy_(value)
            else:
                setattr(self, name, value.detach().to(buf.device, buf.dtype).clone())

    @torch.no_grad()
    def reset_prior(self) -> None:
        """Back to ``z ~ N(0, I)``."""
        self.z_mean.zero_()
        self.z_tril.copy_(torch.eye(self.z_dim, device=self.z_tril.device))
        self._set_mixture(torch.zeros(1, self.z_dim), torch.ones(1))

    @property
    def prior_is_fitted(self) -> bool:
        """Whether the latent prior differs from ``N(0, I)``."""
        eye = torch.eye(self.z_dim, device=self.z_tril.device)
        return bool(
            self.z_mean.any() or not torch.equal(self.z_tril, eye) or self.z_offsets.any()
        )

    @property
    def prior_components(self) -> int:
        """The number of Gaussians in the latent prior (1 unless a mixture was fitted)."""
        return int(self.z_weights.numel())

    def apply_prior(self, z: torch.Tensor) -> torch.Tensor:
        """Move standard-normal draws ``z [N, z_dim]`` onto the latent prior (see the module doc)."""
        z = z.float()
        if self.z_weights.numel() == 1:
            return torch.addmm(self.z_mean, z, self.z_tril.T)  # z_mean + z @ tril^T
        # the component from Phi(z_0); the remainder of that uniform, rescaled, is a fresh N(0, 1)
        u = torch.special.ndtr(z[:, 0].double())
        cum = self.z_weights.double().cumsum(0)
        k = torch.searchsorted(cum, u.contiguous()).clamp(max=len(cum) - 1)
        lo = cum[k] - self.z_weights.double()[k]
        eps = 1e-12
        u = ((u - lo) / self.z_weights.double()[k]).clamp(eps, 1 - eps)
        z = torch.cat([torch.special.ndtri(u).float().unsqueeze(1), z[:, 1:]], dim=1)
        return torch.addmm(self.z_mean, z, self.z_tril.T) + self.z_offsets[k]

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
        z = self.apply_prior(z) if prior else z.float()
        x = normalize_2nd_moment(z)
        if self.conditional:
            x = torch.cat([x, normalize_2nd_moment(self.embed(cat, cont))], dim=1)
        else:
            self.embed.check(cat, cont)
        return self.layers(x)  # [N, w_dim]
