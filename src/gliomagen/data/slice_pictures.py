"""Pictures of 2-D slices: display orientation, grey and overlay RGB, labelled PNG grids.

A slice ``[a, b]`` keeps two canonical RAS voxel axes (see :mod:`gliomagen.data.slices`); it is
shown transposed and flipped, as :func:`gliomagen.data.qc.plane_slices` draws planes: superior
(coronal, sagittal) or anterior (axial) at the top. The PNGs are drawn with Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gliomagen.data.qc import MASK_COLOURS
from gliomagen.data.store_format import NO_MASK
from gliomagen.io.atomic import write_bytes

__all__ = ["grey_u8", "grid_png", "slice_rgb", "slices_montage_png", "to_display"]


def to_display(arr: np.ndarray) -> np.ndarray:
    """A slice ``[a, b]`` oriented for display, as :func:`gliomagen.data.qc.plane_slices` draws
    planes: superior (coronal, sagittal) or anterior (axial) at the top."""
    return np.ascontiguousarray(np.asarray(arr).T[::-1])


def grey_u8(image: np.ndarray) -> np.ndarray:
    """``[-1, 1]`` values -> uint8 grey (clipped): -1 -> 0, 1 -> 255."""
    return np.round((np.clip(np.asarray(image, np.float32), -1, 1) + 1) * 127.5).astype(np.uint8)


def slice_rgb(image: np.ndarray, mask: np.ndarray | None = None, alpha: float = 0.45) -> np.ndarray:
    """One slice ``[a, b]`` in [-1, 1] as display-oriented RGB ``[b, a, 3]`` uint8, labels 1-3 of ``mask`` overlaid."""
    rgb = np.repeat(grey_u8(to_display(image))[..., None], 3, axis=2).astype(np.float32)
    if mask is not None:
        lab = to_display(mask)
        for label in (1, 2, 3):
            hit = lab == label
            rgb[hit] = (1 - alpha) * rgb[hit] + alpha * MASK_COLOURS[label - 1]
    return np.round(rgb).astype(np.uint8)


def grid_png(
    panels: Sequence[Sequence[np.ndarray]],
    path: Path | None = None,
    *,
    row_labels: Sequence[str] = (),
    col_labels: Sequence[str] = (),
    title: str = "",
    min_panel: int = 96,
) -> bytes:
    """RGB panels ``[h, w, 3]`` in rows and columns as a labelled PNG (Pillow); written atomically
    to ``path`` when given. Panels smaller than ``min_panel`` are enlarged (nearest)."""
    side = max(max(p.shape[0], p.shape[1]) for row in panels for p in row)
    zoom = max(1, -(-min_panel // side))
    cell = side * zoom
    left, top = (48 if row_labels else 4), (16 if col_labels else 4) + (16 if title else 0)
    n_cols = max(len(r) for r in panels)
    canvas = Image.new("RGB", (left + n_cols * (cell + 2), top + len(panels) * (cell + 2)), "black")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for r, row in enumerate(panels):
        for c, p in enumerate(row):
            img = Image.fromarray(p.repeat(zoom, axis=0).repeat(zoom, axis=1))
            canvas.paste(img, (left + c * (cell + 2), top + r * (cell + 2)))
        if r < len(row_labels):
            draw.text((left - 4, top + r * (cell + 2) + cell // 2), row_labels[r][:8], fill="white", font=font, anchor="rm")  # fmt: skip
    for c, label in enumerate(col_labels):
        draw.text((left + c * (cell + 2) + cell // 2, top - 3), label, fill="white", font=font, anchor="md")  # fmt: skip
    if title:
        draw.text((canvas.width // 2, 3), title, fill="white", font=font, anchor="mt")
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    data = buf.getvalue()
    if path is not None:
        write_bytes(path, data)
    return data


def slices_montage_png(
    items: Sequence[tuple[np.ndarray, np.ndarray | None, str]],
    modalities: Sequence[str],
    title: str = "",
) -> bytes:
    """Rows of slices ``(image [C, a, b], mask [a, b] or None, name)``: every modality, then the
    mask over the second one (T1Gd); the 2-D counterpart of :func:`gliomagen.report.figures.montage_png`."""
    rows = []
    for image, mask, _ in items:
        m = None if mask is None or (np.asarray(mask) == NO_MASK).all() else np.asarray(mask)
        row = [slice_rgb(ch) for ch in image]
        row.append(slice_rgb(image[min(1, len(image) - 1)], m))
        rows.append(row)
    labels = [*modalities[: len(items[0][0])], "mask"] if items else []
    return grid_png(rows, row_labels=[it[2][-8:] for it in items], col_labels=labels, title=title)
