"""Quality-control montages: three planes of every modality, with the tumour mask overlaid.

Volumes are on a store grid in canonical RAS voxel order ``[D, H, W]`` = (x: left -> right,
y: posterior -> anterior, z: inferior -> superior). Planes are drawn in neurological convention
(the patient's right on the right), anterior / superior at the top, through the tumour's centre
of mass (the volume centre without a tumour).

:func:`montage_rgb` composes the panels into one RGB array with numpy (cheap, and ready for
TensorBoard's ``add_image``); :func:`montage` wraps it in a labelled matplotlib figure (a single
axes, so drawing stays fast) for reports and notebooks; :func:`save_montage` writes the same
labelled montage as a PNG quickly (Pillow, no matplotlib import).

Example:
    >>> import numpy as np
    >>> montage_rgb(np.zeros((4, 16, 12, 10), np.float32)).shape  # 4 rows x 3 planes of 16x16 panels
    (64, 48, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gliomagen import MODALITIES
from gliomagen.data.store_format import NO_MASK
from gliomagen.io.atomic import atomic_path

MASK_COLOURS = np.array([[255, 59, 48], [52, 199, 89], [255, 214, 10]], dtype=np.float32)
"""Overlay colours (RGB) of labels 1 (NCR), 2 (ED), 3 (ET)."""

PLANES = ("axial", "coronal", "sagittal")


def _numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)


def plane_slices(volume: np.ndarray, centre: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices of ``volume [D, H, W]``, oriented for display
    (row 0 at the top: anterior for axial, superior for coronal and sagittal)."""
    x, y, z = (int(c) for c in centre)
    return [volume[:, :, z].T[::-1], volume[:, y, :].T[::-1], volume[x, :, :].T[::-1]]


def montage_centre(shape: Sequence[int], mask: np.ndarray | None) -> np.ndarray:
    """The tumour's centre of mass (voxel ``[3]``), or the volume centre without a tumour."""
    tumour = np.argwhere((mask >= 1) & (mask <= 3)) if mask is not None else np.zeros((0, 3))
    return tumour.mean(axis=0).round().astype(int) if len(tumour) else np.asarray(shape) // 2


def montage_rgb(image: Any, mask: Any = None, *, alpha: float = 0.45) -> np.ndarray:
    """Panels of every channel (rows) in three planes (columns) as one RGB image.

    Args:
        image: ``[C, D, H, W]`` in [-1, 1] (numpy or torch).
        mask: ``[D, H, W]`` labels {0..3} or ``None``; other values (e.g. 255 = no mask) are not drawn.
        alpha: overlay opacity.

    Returns:
        ``[C * S, 3 * S, 3]`` uint8, ``S`` = the largest grid side; panels centred on black.
    """
    img = _numpy(image).astype(np.float32)
    if img.ndim != 4:
        raise ValueError(f"montage: image must be [C, D, H, W], got shape {img.shape}")
    lab = None if mask is None else _numpy(mask)
    centre = montage_centre(img.shape[1:], lab)
    side = max(img.shape[1:])
    out = np.zeros((img.shape[0] * side, 3 * side, 3), dtype=np.uint8)
    masks = plane_slices(lab, centre) if lab is not None else [None] * 3
    for r, channel in enumerate(img):
        for c, sl in enumerate(plane_slices(channel, centre)):
            rgb = np.repeat(((np.clip(sl, -1, 1) + 1) * 127.5)[..., None], 3, axis=2)  # [h, w, 3]
            m = masks[c]
            if m is not None:
                for label in (1, 2, 3):
                    hit = m == label
                    rgb[hit] = (1 - alpha) * rgb[hit] + alpha * MASK_COLOURS[label - 1]
            h, w = sl.shape
            top, left = r * side + (side - h) // 2, c * side + (side - w) // 2
            out[top : top + h, left : left + w] = np.round(rgb).astype(np.uint8)
    return out


def montage(
    image: Any,
    mask: Any = None,
    title: str = "",
    modalities: Sequence[str] = MODALITIES,
    *,
    alpha: float = 0.45,
) -> Any:
    """A labelled figure of :func:`montage_rgb`: rows = modalities, columns = planes.

    Args:
        image: ``[C, D, H, W]`` in [-1, 1] (numpy or torch).
        mask: ``[D, H, W]`` labels or ``None``.
        title: figure title (e.g. the case id).
        modalities: row labels, one per channel.
        alpha: overlay opacity.

    Returns:
        A matplotlib ``Figure`` (no pyplot state; the caller saves it, e.g. with ``savefig``).
    """
    from matplotlib.figure import Figure  # here: matplotlib costs ~1 CPU-second to import

    rgb = montage_rgb(image, mask, alpha=alpha)
    n_rows = rgb.shape[0] // (rgb.shape[1] // 3)
    side = rgb.shape[1] // 3
    fig = Figure(figsize=(3 * 1.9 + 0.3, n_rows * 1.9 + 0.45), dpi=80, facecolor="black")
    ax = fig.add_axes((0.05, 0.0, 0.95, 0.93 if title else 0.97))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    for c, plane in enumerate(PLANES):
        ax.text((c + 0.5) * side, -2, plane, color="white", fontsize=8, ha="center", va="bottom")
    for r in range(n_rows):
        label = modalities[r] if r < len(modalities) else f"ch{r}"
        ax.text(
            -2,
            (r + 0.5) * side,
            label,
            color="white",
            fontsize=8,
            ha="right",
            va="center",
            rotation=90,
        )
    if title:
        fig.suptitle(title, color="white", fontsize=9)
    return fig


def save_montage(
    image: Any,
    mask: Any,
    path: Path | str,
    title: str = "",
    modalities: Sequence[str] = MODALITIES,
    *,
    min_panel: int = 128,
) -> Path:
    """Write the montage as a PNG (to a temp name, then renamed).

    The PNG is drawn with Pillow (matplotlib's own dependency) from :func:`montage_rgb`, with the
    same labels as :func:`montage`: importing matplotlib's figure machinery alone costs about a
    CPU-second per process, more than ``prepare`` spends on a case. Panels smaller than
    ``min_panel`` pixels are enlarged by an integer factor (nearest neighbour).
    """
    path = Path(path)
    rgb = montage_rgb(image, mask)  # [rows * S, 3 * S, 3]
    side = rgb.shape[1] // 3
    zoom = max(1, -(-min_panel // side))
    rgb = rgb.repeat(zoom, axis=0).repeat(zoom, axis=1)
    side *= zoom
    left, top = 40, 36 if title else 20
    canvas = Image.new("RGB", (left + rgb.shape[1], top + rgb.shape[0]), "black")
    canvas.paste(Image.fromarray(rgb), (left, top))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    if title:
        draw.text((left + rgb.shape[1] // 2, 4), title, fill="white", font=font, anchor="mt")
    for c, plane in enumerate(PLANES):
        draw.text((left + (c + 0.5) * side, top - 4), plane, fill="white", font=font, anchor="md")
    for r in range(rgb.shape[0] // side):
        label = modalities[r] if r < len(modalities) else f"ch{r}"
        draw.text((left - 4, top + (r + 0.5) * side), label, fill="white", font=font, anchor="rm")
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def write_store_qc(store: Path, case_ids: Sequence[str], n: int, seed: int = 0) -> list[Path]:
    """Montages of ``n`` cases of a store's arrays (seeded sample) as ``store/qc/<case_id>.png``."""
    if n <= 0 or not case_ids:
        return []
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(case_ids), size=min(n, len(case_ids)), replace=False).tolist())
    images = np.load(store / "images.npy", mmap_mode="r")  # [N, C, D, H, W]
    masks = np.load(store / "masks.npy", mmap_mode="r")  # [N, D, H, W]; 255 = no mask, not drawn
    return [
        save_montage(
            np.asarray(images[i], np.float32),
            np.asarray(masks[i]),
            store / "qc" / f"{case_ids[i]}.png",
            title=case_ids[i],
        )
        for i in chosen
    ]


def write_rows_qc(store: Path, cases: Sequence[tuple[str, int]]) -> None:
    """Montages of a store's rows ``(case_id, row)`` from its arrays, as ``store/qc/<case_id>.png``."""
    if not cases:
        return
    images = np.load(store / "images.npy", mmap_mode="r")  # [N, C, D, H, W]
    masks = np.load(store / "masks.npy", mmap_mode="r")  # [N, D, H, W]
    for cid, n in cases:
        mask = np.asarray(masks[n])
        save_montage(
            np.asarray(images[n], dtype=np.float32),
            None if (mask == NO_MASK).all() else mask,
            store / "qc" / f"{cid}.png",
            title=cid,
        )
    del images, masks
