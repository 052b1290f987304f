"""The synthesis network on a batch of per-layer latents, with each case's noise from its own seed.

Shared by the 3D cohort (:mod:`gliomagen.generation.cohort`) and the 2D slices
(:mod:`gliomagen.generation.slices2d`): :func:`synthesize_batches` yields a cohort's network
output ``batch_size`` cases at a time, so memory is bounded by one batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from gliomagen.generation.sampling import ConditionMeans, case_ws
from gliomagen.generation.source import GeneratorSource


def synthesize(
    source: GeneratorSource,
    ws: torch.Tensor,
    noise_mode: str = "random",
    seeds: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the synthesis network: ``ws [B, num_ws, w_dim]`` -> ``(images, logits)`` as float32 numpy ``[B, 4, *S]``.

    With ``noise_mode="random"`` and case ``seeds``, each case's noise comes from its own generator
    (seeded by :func:`noise_seed`), so it does not depend on the batch. On the CPU the cases run
    one at a time (``--batch-size`` then only sets how many are generated between writes).
    """
    G, device = source.G, source.device
    ws = ws.to(device)
    noise = [noise_seed(s) for s in seeds] if noise_mode == "random" and seeds is not None else None
    # On the CPU one case at a time: batched kernels round differently for different batch
    # sizes, so this is what makes a case's bytes depend on its seed alone (not on --batch-size,
    # --n or its place in the batch). It costs CPU throughput (benchmarks/generate.py).
    groups = (
        [[i] for i in range(ws.shape[0])] if device.type == "cpu" else [list(range(ws.shape[0]))]
    )
    images, logits = [], []
    with torch.no_grad():
        for g in groups:
            kwargs: dict[str, Any] = {"noise_mode": noise_mode}
            if noise is not None:
                kwargs["noise_seeds"] = [noise[i] for i in g]
            im, lg = G.synthesis(ws[g[0] : g[-1] + 1], **kwargs)
            images.append(im.float().cpu().numpy())
            logits.append(lg.float().cpu().numpy())
    return np.concatenate(images), np.concatenate(logits)


def noise_seed(case_seed: int) -> int:
    """Seed of a case's noise inputs: derived from, but not equal to, the seed of its ``z``."""
    return int(np.random.SeedSequence([int(case_seed), 1]).generate_state(1)[0])


def synthesize_batches(
    source: GeneratorSource,
    seeds: Sequence[int],
    cat: np.ndarray,
    cont: np.ndarray,
    *,
    truncation: float = 1.0,
    batch_size: int = 4,
    mix_seeds: Sequence[int] | None = None,
    mix_layer: int | None = None,
    noise_mode: str = "random",
    anatomy: tuple[np.ndarray, np.ndarray, int] | None = None,
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """The network output of a cohort, ``batch_size`` cases at a time.

    Case ``i`` gets the styles of ``seeds[i]`` under its encoded conditions ``cat[i]``,
    ``cont[i]`` (truncated toward its condition's mean ``w``; from ``mix_layer`` on, those of
    ``mix_seeds[i]``; before ``anatomy``'s layer, those of its seed under the encoded conditions
    ``anatomy[0][i]``, ``anatomy[1][i]``) and the noise of its seed (:func:`synthesize`).

    Yields:
        ``(indices, images, logits)``: the batch's case indices and float32 ``[b, C, *S]``,
        ``[b, 4, *S]``; the generator keeps no reference to the arrays it yields.
    """
    means = ConditionMeans(source.G) if truncation != 1.0 else None
    n = len(seeds)
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        ws = case_ws(
            source.G,
            [seeds[i] for i in idx],
            cat[idx],
            cont[idx],
            psi=float(truncation),
            means=means,
            mix_seeds=[mix_seeds[i] for i in idx] if mix_seeds else None,
            mix_layer=mix_layer,
            anatomy=None if anatomy is None else (anatomy[0][idx], anatomy[1][idx], anatomy[2]),
        )  # [b, num_ws, w_dim]
        yield (idx, *synthesize(source, ws, noise_mode, [seeds[i] for i in idx]))
