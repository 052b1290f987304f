"""The latent prior of the mapping network: where a standard-normal seed ``z`` is moved before use.

By default ``z ~ N(0, I)`` goes into the mapping network's MLP as it is. With
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

The network also keeps its training cases' condition codes and, with a fitted mixture, their
responsibilities (buffers ``case_cat``, ``case_cont``, ``case_resp``; see
:mod:`gliomagen.models.case_table`). Given the conditions of each draw, the component is then
drawn from ``p(k | conditions)``, the mixture restricted to the clusters of the training cases
that have those conditions, instead of the overall weights; without the table (a model trained
before it existed) the overall weights are used.

:class:`LatentPrior` is the base class of :class:`gliomagen.models.mapping.MappingNetwork`: it
registers the prior's buffers on the network itself (so checkpoints keep the keys
``mapping.z_mean``, ``mapping.z_tril``, ``mapping.z_offsets``, ``mapping.z_weights``), sets, resets
and applies the prior, and loads state dicts written before the prior (or the mixture) existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gliomagen.models.case_table import donor_log_weights


class LatentPrior(nn.Module):
    """An ``nn.Module`` that holds a latent prior over ``z [N, z_dim]`` (see the module doc).

    Call :meth:`register_prior` in ``__init__``.
    """

    z_dim: int
    z_mean: torch.Tensor
    z_tril: torch.Tensor
    z_offsets: torch.Tensor
    z_weights: torch.Tensor
    case_cat: torch.Tensor
    case_cont: torch.Tensor
    case_resp: torch.Tensor
    PRIOR_BUFFERS = ("z_mean", "z_tril", "z_offsets", "z_weights", "case_cat", "case_cont", "case_resp")

    def register_prior(self, z_dim: int, cat_sizes: Sequence[int] = (), n_cont: int = 0) -> None:
        """Register the prior's buffers for ``z_dim``-wide latents: the identity (``N(0, I)``),
        and an empty table of training cases with ``len(cat_sizes)`` categorical fields (embedding
        sizes: categories + 1 unknown slot) and ``n_cont`` continuous ones."""
        self.z_dim = z_dim
        self.unknown_codes = [int(s) - 1 for s in cat_sizes]
        self.register_buffer("case_cat", torch.zeros(0, len(self.unknown_codes), dtype=torch.long))
        self.register_buffer("case_cont", torch.zeros(0, int(n_cont)))
        self.register_buffer("case_resp", torch.zeros(0, 1))
        # the latent prior as an affine map of N(0, I): identity until fitted
        self.register_buffer("z_mean", torch.zeros(z_dim))
        self.register_buffer("z_tril", torch.eye(z_dim))
        # a mixture prior's component means (less z_mean) and weights: one component until fitted
        self.register_buffer("z_offsets", torch.zeros(1, z_dim))
        self.register_buffer("z_weights", torch.ones(1))

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        """Load the prior's buffers as saved; a state dict from before the prior existed loads
        the identity (``N(0, I)``), one from before mixtures a single component."""
        state_dict.setdefault(prefix + "z_mean", torch.zeros_like(self.z_mean))
        state_dict.setdefault(
            prefix + "z_tril", torch.eye(self.z_dim, device=self.z_tril.device, dtype=self.z_tril.dtype)
        )
        state_dict.setdefault(prefix + "z_offsets", torch.zeros(1, self.z_dim))
        state_dict.setdefault(prefix + "z_weights", torch.ones(1))
        for name in ("case_cat", "case_cont", "case_resp"):  # before the table: none
            state_dict.setdefault(prefix + name, getattr(self, name)[:0].clone())
        # the number of mixture components and of cases are the checkpoint's: take their shapes
        for name in ("z_offsets", "z_weights", "case_cat", "case_cont", "case_resp"):
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

    @torch.no_grad()
    def set_case_table(
        self, cat: torch.Tensor, cont: torch.Tensor, resp: torch.Tensor | None = None
    ) -> None:
        """Keep the training cases' codes ``cat [n, n_cat]``, ``cont [n, n_cont]`` and, with a
        fitted mixture, their responsibilities ``resp [n, K]`` (rows summing to 1)."""
        if cat.shape[1] != self.case_cat.shape[1] or cont.shape[1] != self.case_cont.shape[1]:
            raise ValueError(
                f"case table must be [n, {self.case_cat.shape[1]}] and [n, {self.case_cont.shape[1]}], "
                f"got {list(cat.shape)} and {list(cont.shape)}"
            )
        if resp is None:
            resp = torch.zeros(0, 1)
        elif resp.shape[0] != cat.shape[0]:
            raise ValueError(f"responsibilities of {resp.shape[0]} cases for {cat.shape[0]}")
        for name, value in (("case_cat", cat.long()), ("case_cont", cont.float()), ("case_resp", resp.float())):
            buf = getattr(self, name)
            if buf.shape == value.shape:  # in place, as _set_mixture
                buf.copy_(value)
            else:
                setattr(self, name, value.detach().to(buf.device).clone())

    def training_conditions(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The training cases' codes ``(cat [n, n_cat], cont [n, n_cont])``, or ``None`` when
        the model holds no table (trained before it existed)."""
        if not len(self.case_cat):
            return None
        return self.case_cat, self.case_cont

    def component_weights(self, cat: torch.Tensor, cont: torch.Tensor) -> torch.Tensor | None:
        """``p(k | conditions) [N, K]`` of each row of ``cat``/``cont``, or ``None`` when the
        overall weights apply (no table of responsibilities for this mixture)."""
        resp = self.case_resp
        if len(resp) == 0 or resp.shape[1] != self.z_weights.numel() or resp.shape[1] == 1:
            return None
        logw = donor_log_weights(cat, cont, self.case_cat, self.case_cont, self.unknown_codes)
        return logw.exp() @ resp.double()

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
        self.case_resp = self.case_resp[:0]

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

    def apply_prior(
        self, z: torch.Tensor, cat: torch.Tensor | None = None, cont: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Move standard-normal draws ``z [N, z_dim]`` onto the latent prior (see the module doc);
        with the draws' conditions ``cat``/``cont``, a mixture's component follows them."""
        z = z.float()
        if self.z_weights.numel() == 1:
            return torch.addmm(self.z_mean, z, self.z_tril.T)  # z_mean + z @ tril^T
        weights = None if cat is None or cont is None else self.component_weights(cat, cont)
        if weights is None:
            weights = self.z_weights.double().expand(len(z), -1)
        # the component from Phi(z_0); the remainder of that uniform, rescaled, is a fresh N(0, 1)
        u = torch.special.ndtr(z[:, 0].double()).unsqueeze(1)
        cum = weights.cumsum(1)
        k = torch.searchsorted(cum, u.contiguous()).clamp(max=cum.shape[1] - 1)  # [N, 1]
        w_k = weights.gather(1, k).clamp_min(1e-300)
        lo = cum.gather(1, k) - w_k
        eps = 1e-12
        u = ((u - lo) / w_k).clamp(eps, 1 - eps).squeeze(1)
        k = k.squeeze(1)
        z = torch.cat([torch.special.ndtri(u).float().unsqueeze(1), z[:, 1:]], dim=1)
        return torch.addmm(self.z_mean, z, self.z_tril.T) + self.z_offsets[k]


def is_prior_buffer(name: str) -> bool:
    """Whether a (qualified) buffer name, e.g. ``mapping.z_tril``, is a latent-prior buffer."""
    return name.rsplit(".", 1)[-1] in LatentPrior.PRIOR_BUFFERS


__all__ = ["LatentPrior", "is_prior_buffer"]
