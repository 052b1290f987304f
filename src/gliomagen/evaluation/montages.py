"""Montages of an evaluation: a few real and synthetic cases of every condition, as PNG figures.

Volumes are drawn with the store's QC panels (:func:`gliomagen.data.qc.montage_rgb`: every
modality in three planes, mask overlaid), cases side by side; slices with
:func:`gliomagen.data.slices.slices_montage_png` (one row per slice: every modality, then the
mask).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.data.qc import MASK_COLOURS, montage_rgb
from gliomagen.data.slices import slices_montage_png
from gliomagen.evaluation.cases import CaseSet
from gliomagen.io.atomic import write_bytes

DPI = 80
MASK_NAMES = ("NCR", "ED", "ET")
"""Names of the mask labels 1, 2, 3, drawn in :data:`MASK_COLOURS` (RGB 0-255) in every montage."""


def montage_png(
    items: Sequence[tuple[np.ndarray, np.ndarray | None, str]],
    modalities: Sequence[str],
    title: str,
) -> bytes:
    """Cases side by side: each a panel of every modality (rows) in three planes, mask overlaid.

    Args:
        items: ``(image [C, D, H, W], mask [D, H, W] or None, case id)`` per case.
        modalities: row names.
        title: figure title.
    """
    from matplotlib.figure import Figure  # heavy import (about a CPU-second): only when drawing

    n = max(1, len(items))
    rgbs = [
        montage_rgb(img, mask if mask is not None and (mask != 255).any() else None)
        for img, mask, _ in items
    ]
    width = 2.6 * n + 0.5
    fig = Figure(figsize=(width, 0.65 * len(modalities) * 1.3 + 0.8), dpi=DPI)
    fig.subplots_adjust(left=0.4 / width, right=0.99, bottom=0.01, top=0.85, wspace=0.05)
    fig.set_facecolor("black")
    fig.suptitle(title, color="white", fontsize=10)
    for i, (rgb, (_, _, cid)) in enumerate(zip(rgbs, items, strict=True)):
        ax = fig.add_subplot(1, n, i + 1)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(cid, color="white", fontsize=8)
        ax.set_xticks([])
        side = rgb.shape[1] // 3
        rows = [(r + 0.5) * side for r in range(len(modalities))]
        ax.set_yticks(rows, list(modalities) if i == 0 else [], color="white", fontsize=7)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor=fig.get_facecolor())
    return buf.getvalue()


def write_montages(
    out: Path,
    groups: dict[str, Any],
    real: CaseSet,
    synthetic: CaseSet,
    n: int,
    seed: int,
    modalities: list[str],
) -> dict[str, Any]:
    """Draw ``n`` seeded real and synthetic cases of every group into ``out/figures/``.

    Returns:
        ``{group: {"real": "figures/montage-<group>-real.png", "synthetic": ...}}`` (a role
        without cases in a group is left out).
    """
    # slices: one row per slice (every modality, then the mask); volumes: three planes per case
    draw = slices_montage_png if len(real.spatial) == 2 else montage_png
    result: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    for key, (pr, ps, _) in groups.items():
        entry = {}
        for role, cases, pos in (("real", real, pr), ("synthetic", synthetic, ps)):
            if not len(pos) or n <= 0:
                continue
            chosen = np.sort(rng.choice(pos, min(n, len(pos)), replace=False))
            imgs, masks = cases.load(chosen)
            items = [
                (imgs[i].numpy(), masks[i].numpy(), cases.case_ids[int(c)])
                for i, c in enumerate(chosen)
            ]
            name = f"montage-{_slug(key)}-{role}.png"
            write_bytes(out / "figures" / name, draw(items, modalities, f"{role}: {key}"))
            entry[role] = f"figures/{name}"
        result[key] = entry
    return result


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


__all__ = ["DPI", "MASK_COLOURS", "MASK_NAMES", "montage_png", "write_montages"]
