"""Noise injection: per-voxel Gaussian noise with a learned per-channel strength (StyleGAN).

Fresh noise is drawn from one generator per sample, so a sample's noise does not depend on the
batch it sits in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


@torch.compiler.disable
def _per_sample_randn(
    shape: tuple[int, ...], generators: Sequence[torch.Generator], device: torch.device
) -> torch.Tensor:
    """``randn(shape)`` with row ``i`` drawn from ``generators[i]`` (kept out of compiled graphs)."""
    return torch.cat([torch.randn((1, *shape[1:]), generator=g, device=device) for g in generators])


class NoiseInjection(nn.Module):
    """Add per-voxel Gaussian noise with a learned per-channel strength (initialised to 0).

    ``noise_mode``: ``"random"`` draws fresh noise (from one generator per sample when ``generators``
    are given, so a sample's noise does not depend on the batch it sits in), ``"const"`` uses a fixed
    buffer drawn at construction, ``"none"`` adds nothing.

    Args:
        channels: feature channels.
        shape: spatial shape of the features this layer sees (for the constant noise).
        seed: seed of the constant noise buffer.
    """

    noise_const: torch.Tensor

    def __init__(self, channels: int, shape: Sequence[int], seed: int = 0) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels))
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("noise_const", torch.randn((1, 1, *shape), generator=gen))

    def draw(
        self,
        shape: Sequence[int],
        noise_mode: str,
        generators: Sequence[torch.Generator] | None,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor | None:
        """The noise ``[N, 1, *S]`` this layer adds to features of ``shape`` (``None`` for ``"none"``)."""
        if noise_mode == "none":
            return None
        shape = (shape[0], 1, *shape[2:])
        if noise_mode == "const":
            return self.noise_const.to(dtype).expand(shape)
        if noise_mode == "random":
            if generators is None:
                return torch.randn(shape, device=device, dtype=dtype)
            if len(generators) != shape[0]:
                raise ValueError(
                    f"need one noise generator per sample ({shape[0]}), got {len(generators)}"
                )
            return _per_sample_randn(shape, generators, device).to(dtype)
        raise ValueError(f"noise_mode must be random, const or none, got {noise_mode!r}")

    def forward(
        self,
        x: torch.Tensor,
        noise_mode: str = "random",
        generators: Sequence[torch.Generator] | None = None,
        gain: float = 1.0,
        inplace: bool = False,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[N, C, *S] -> [N, C, *S]``: ``x + gain * strength * noise``.

        ``inplace`` writes into ``x`` (for a fresh tensor no backward pass needs); ``noise`` is
        noise drawn beforehand with :meth:`draw` (then ``noise_mode`` and ``generators`` are unused).
        """
        if noise is None:
            noise = self.draw(x.shape, noise_mode, generators, x.device, x.dtype)
            if noise is None:
                return x
        view = (1, -1) + (1,) * (x.ndim - 2)
        strength = self.strength * gain if gain != 1.0 else self.strength
        s = strength.to(x.dtype).reshape(view)
        noise = noise.to(x.dtype)
        return x.addcmul_(noise, s) if inplace else torch.addcmul(x, noise, s)


__all__ = ["NoiseInjection"]
