"""The synthesis network on a batch of per-layer latents, with each case's noise from its own seed.

Shared by the 3D cohort (:mod:`gliomagen.generation.cohort`) and the 2D slices
(:mod:`gliomagen.generation.slices2d`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

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
