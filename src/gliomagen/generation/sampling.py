"""Latents for generation: seeded z per case, truncation toward the condition's mean w, mixing.

Seeds follow the StyleGAN convention: case ``i`` of a cohort generated with ``--seed S`` uses seed
``S + i``, so ``generate --seed 17 --n 1`` with the same conditions reproduces case 17 of a
``--seed 0`` cohort. ``z`` is drawn on the CPU from a ``torch.Generator`` seeded with the case seed,
so it does not depend on the device or the batch size.

Truncation (Karras et al. 2019, 2020) pulls ``w`` toward a mean: ``w' = w_c + psi (w - w_c)``.
For a conditional model the global mean mixes the conditions, so ``w_c`` here is the mean of the
mapping network's outputs over many ``z`` *for the requested condition*; ``psi = 0`` gives the
condition's "average" case and differs from one condition to another. Means are estimated once per
distinct condition with a fixed seed (deterministic) and cached by :class:`ConditionMeans`.

Style mixing: the first ``mix_layer`` style inputs (coarse: anatomy, tumour position and size)
come from the case's own ``w``, the remaining ones (fine: texture, contrast detail) from the ``w``
of another seed under the same condition.

Anatomy from other conditions (``--anatomy-from cohort=GLI``): the first ``layer`` style inputs
come from the *same seed* under other conditions, the rest from the case's own. Measured on the
hard phantoms (n = 16 SSA cases, docs/experiments/2026-12-07-scarce-cohort-privacy.md): SSA cases
drawn with their own conditions copied the 16 SSA training tumours (membership AUC 0.99 by mask),
with the large cohort's anatomy 0.63. A user who takes it assumes that the scarce cohort's
tumours look like the large cohort's and that what differs is the acquisition.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from gliomagen.errors import GliomagenError

MEAN_SAMPLES = 4096
"""Number of ``z`` averaged to estimate one condition's mean ``w``."""

MEAN_SEED = 0x5EED
"""Seed of the ``z`` used for the condition means (fixed: the means are part of the output)."""


def check_truncation(psi: float) -> float:
    """``psi`` as a float: an error below 0 or when not finite, a warning above 1.

    ``psi`` in [0, 1] interpolates between the condition's mean ``w`` (0) and the case's own (1);
    above 1 it extrapolates away from the mean, which is allowed but warned about.

    Raises:
        GliomagenError: ``psi`` is not a finite number >= 0.
    """
    if not math.isfinite(float(psi)):
        raise GliomagenError(f"--truncation {psi}: must be a finite number (1 = no truncation)")
    if float(psi) < 0:
        raise GliomagenError(
            f"--truncation {psi:g}: must be >= 0 (0 = the condition's mean case, 1 = no truncation)"
        )
    if float(psi) > 1:
        warnings.warn(
            f"--truncation {psi:g} is above 1: it extrapolates away from the condition's mean w, "
            "so cases may look less realistic",
            UserWarning,
            stacklevel=2,
        )
    return float(psi)


def case_seeds(seed: int, n: int) -> list[int]:
    """Seeds of the ``n`` cases of a cohort: ``seed, seed + 1, ..., seed + n - 1``."""
    return [int(seed) + i for i in range(int(n))]


def seeded_z(seeds: list[int], z_dim: int) -> torch.Tensor:
    """One standard-normal latent per seed, drawn on the CPU.

    Args:
        seeds: one integer seed per case.
        z_dim: latent size.

    Returns:
        ``z [len(seeds), z_dim]`` float32 on the CPU; row ``i`` depends only on ``seeds[i]``.
    """
    rows = []
    for s in seeds:
        g = torch.Generator(device="cpu").manual_seed(int(s) % (2**63))
        rows.append(torch.randn(z_dim, generator=g))  # [z_dim]
    return torch.stack(rows) if rows else torch.zeros(0, z_dim)


def _as_single_w(w: torch.Tensor) -> torch.Tensor:
    """Mapping outputs as ``[B, w_dim]`` (a mapping that broadcasts to ``[B, num_ws, w_dim]`` is reduced)."""
    return w[:, 0] if w.ndim == 3 else w


def map_z(
    G: Any, z: torch.Tensor, cat: torch.Tensor, cont: torch.Tensor, rowwise: bool = False
) -> torch.Tensor:
    """Run the mapping network without gradients: ``z [B, z_dim] -> w [B, w_dim]`` (float32).

    ``rowwise`` maps one row at a time: a row's ``w`` is then bit-identical whatever batch it
    came in (batched matrix products round differently for different batch sizes).
    """
    device = next(G.parameters()).device
    z, cat, cont = z.to(device), cat.to(device), cont.to(device)
    with torch.no_grad():
        if rowwise:
            w = torch.cat(
                [
                    _as_single_w(G.mapping(z[i : i + 1], cat[i : i + 1], cont[i : i + 1]))
                    for i in range(len(z))
                ]
            )
        else:
            w = _as_single_w(G.mapping(z, cat, cont))
    return w.float()


class ConditionMeans:
    """Per-condition mean of ``w``, estimated once per distinct condition and cached.

    Args:
        G: the generator (``G.mapping``, ``G.z_dim``).
        n_samples: number of ``z`` averaged per condition.
        batch_size: mapping batch size while averaging.
        seed: seed of the averaged ``z`` (fixed so the result is reproducible).
    """

    def __init__(
        self, G: Any, n_samples: int = MEAN_SAMPLES, batch_size: int = 1024, seed: int = MEAN_SEED
    ):
        self.G = G
        self.n_samples = int(n_samples)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._cache: dict[tuple[tuple[int, ...], tuple[float, ...]], torch.Tensor] = {}

    @staticmethod
    def key(cat: torch.Tensor, cont: torch.Tensor) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """Cache key of one encoded condition (``cat [n_cat]``, ``cont [n_cont]``)."""
        return tuple(int(c) for c in cat.tolist()), tuple(round(float(c), 6) for c in cont.tolist())

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, cat: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """Mean ``w [w_dim]`` (CPU, float32) of one encoded condition."""
        k = self.key(cat, cont)
        if k not in self._cache:
            self._cache[k] = self._estimate(cat, cont)
        return self._cache[k]

    def get_many(self, cat: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        """Means for a batch of conditions: ``cat [B, n_cat]``, ``cont [B, n_cont]`` -> ``[B, w_dim]``."""
        return torch.stack([self.get(cat[i], cont[i]) for i in range(cat.shape[0])])

    def _estimate(self, cat: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        g = torch.Generator(device="cpu").manual_seed(self.seed)
        total: torch.Tensor | None = None
        done = 0
        while done < self.n_samples:
            b = min(self.batch_size, self.n_samples - done)
            z = torch.randn(b, self.G.z_dim, generator=g)  # [b, z_dim]
            w = map_z(
                self.G, z, cat.reshape(1, -1).expand(b, -1), cont.reshape(1, -1).expand(b, -1)
            )
            s = w.double().sum(0).cpu()  # [w_dim]
            total = s if total is None else total + s
            done += b
        assert total is not None
        return (total / self.n_samples).float()


def truncate(w: torch.Tensor, w_mean: torch.Tensor, psi: float) -> torch.Tensor:
    """``w_mean + psi (w - w_mean)`` for ``w [B, w_dim]`` and per-row means ``w_mean [B, w_dim]``."""
    if psi == 1.0:
        return w
    return w_mean.to(w) + float(psi) * (w - w_mean.to(w))


def broadcast_ws(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    """``w [B, w_dim] -> ws [B, num_ws, w_dim]`` (the same style at every layer)."""
    return w.unsqueeze(1).repeat(1, int(num_ws), 1)


def mix_ws(ws: torch.Tensor, ws_fine: torch.Tensor, layer: int) -> torch.Tensor:
    """Style mixing: layers ``< layer`` from ``ws``, layers ``>= layer`` from ``ws_fine``.

    Args:
        ws: coarse source ``[B, num_ws, w_dim]``.
        ws_fine: fine source ``[B, num_ws, w_dim]``.
        layer: crossover index in ``[0, num_ws]``; 0 takes everything from ``ws_fine``.

    Returns:
        ``[B, num_ws, w_dim]``.
    """
    out = ws.clone()
    out[:, layer:] = ws_fine[:, layer:]
    return out


def case_ws(
    G: Any,
    seeds: list[int],
    cat: np.ndarray,
    cont: np.ndarray,
    *,
    psi: float = 1.0,
    means: ConditionMeans | None = None,
    mix_seeds: list[int] | None = None,
    mix_layer: int | None = None,
    anatomy: tuple[np.ndarray, np.ndarray, int] | None = None,
) -> torch.Tensor:
    """The per-layer styles of a batch of cases.

    Args:
        G: generator (``mapping``, ``z_dim``, ``num_ws``).
        seeds: one seed per case.
        cat: encoded categorical conditions ``[B, n_cat]`` int64.
        cont: encoded continuous conditions ``[B, n_cont]`` float32.
        psi: truncation toward each case's condition mean (1 = none).
        means: cache of condition means (required when ``psi != 1``).
        mix_seeds: one seed per case for the fine styles, or ``None`` for no mixing.
        mix_layer: crossover layer of the mixing.
        anatomy: ``(cat, cont, layer)``: the first ``layer`` style inputs come from the same
            seeds under these other encoded conditions (see :func:`anatomy_layer`).

    Returns:
        ``ws [B, G.num_ws, G.w_dim]`` float32 on the generator's device.
    """
    if psi != 1.0 and means is None:
        raise ValueError("truncation needs a ConditionMeans cache")

    def styles(case_seeds_: list[int], cat_: np.ndarray, cont_: np.ndarray) -> torch.Tensor:
        cat_t = torch.as_tensor(np.asarray(cat_, dtype=np.int64)).reshape(len(seeds), -1)  # [B, n_cat]
        cont_t = torch.as_tensor(np.asarray(cont_, dtype=np.float32)).reshape(len(seeds), -1)
        w = map_z(G, seeded_z(case_seeds_, G.z_dim), cat_t, cont_t, rowwise=True)  # [B, w_dim]
        if psi != 1.0:
            assert means is not None
            w = truncate(w, means.get_many(cat_t, cont_t), psi)  # toward its condition's mean
        return broadcast_ws(w, G.num_ws)  # [B, num_ws, w_dim]

    ws = styles(seeds, cat, cont)
    if anatomy is not None:
        ws = mix_ws(styles(seeds, anatomy[0], anatomy[1]), ws, anatomy[2])
    if mix_seeds is not None:
        if mix_layer is None:
            raise ValueError("style mixing needs a crossover layer")
        ws = mix_ws(ws, styles(mix_seeds, cat, cont), mix_layer)
    return ws


def anatomy_layer(G: Any) -> int:
    """The default crossover of ``--anatomy-from``: the style inputs of the coarsest level (the
    4^3 start and its first convolution: tumour position, extent and the head's shape), so that
    every finer level, contrast and texture included, follows the case's own conditions."""
    return min(2, int(G.num_ws) - 1)
