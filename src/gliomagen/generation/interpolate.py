"""Latent walks: between two seeds or two conditions, as a PNG strip and an animated GIF.

Both walks run in ``w`` space (linear interpolation, as in the StyleGAN papers): between two seeds
``w`` goes from the first seed's to the second's under one condition; between two conditions the
seed is fixed and ``w`` goes from the condition A mapping of its ``z`` to the condition B mapping.
With truncation, each end point is first pulled toward the mean ``w`` of its own condition. The
noise inputs are the generator's constant buffers, so only the walk changes from frame to frame.

Each frame shows one modality in the three orthogonal planes through the volume centre (axial,
coronal, sagittal, radiological display: anterior up, patient left on the right), with the
generated tumour mask outlined in colour (NCR red, ED green, ET yellow).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gliomagen.data.slices import to_display
from gliomagen.errors import GliomagenError
from gliomagen.generation.intensity import brain_mask, mask_labels
from gliomagen.generation.plan import parse_condition_args
from gliomagen.generation.sampling import (
    ConditionMeans,
    broadcast_ws,
    check_truncation,
    map_z,
    seeded_z,
    truncate,
)
from gliomagen.generation.source import GeneratorSource, load_source
from gliomagen.io.atomic import atomic_path

LABEL_COLOURS = {1: (230, 40, 40), 2: (40, 200, 60), 3: (250, 220, 30)}
"""RGB outline colour of mask labels 1 NCR, 2 ED, 3 ET."""

PLANES = ("axial", "coronal", "sagittal")


def _planes(vol: np.ndarray) -> list[np.ndarray]:
    """Centre slices of a RAS-ordered ``[X, Y, Z]`` volume, oriented for display (row 0 = top)."""
    x, y, z = (s // 2 for s in vol.shape)
    axial = vol[:, :, z].T[::-1, ::-1]  # rows: anterior at top; columns: patient left on the right
    coronal = vol[:, y, :].T[::-1, ::-1]  # rows: superior at top
    sagittal = vol[x, :, :].T[::-1, :]  # rows: superior at top; columns: posterior -> anterior
    return [np.ascontiguousarray(p) for p in (axial, coronal, sagittal)]


def _outline(seg: np.ndarray) -> np.ndarray:
    """Labels kept only on their boundary (a voxel whose 4-neighbourhood holds another label)."""
    edge = np.zeros(seg.shape, dtype=bool)
    edge[1:, :] |= seg[1:, :] != seg[:-1, :]
    edge[:-1, :] |= seg[:-1, :] != seg[1:, :]
    edge[:, 1:] |= seg[:, 1:] != seg[:, :-1]
    edge[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    return np.where(edge, seg, 0)


def render_frame(image: np.ndarray, seg: np.ndarray, scale: int = 1) -> np.ndarray:
    """One frame: three planes side by side (a 2D model's slice: the slice itself).

    Args:
        image: ``[X, Y, Z]`` one modality in [-1, 1] (or a slice ``[a, b]``).
        seg: ``[X, Y, Z]`` labels {0..3} (or ``[a, b]``).
        scale: integer upscaling (nearest) for small grids.

    Returns:
        ``[h, w, 3]`` uint8 RGB.
    """

    def planes(v: np.ndarray) -> list[np.ndarray]:
        return _planes(v) if v.ndim == 3 else [to_display(v)]

    panels = []
    for im, lab in zip(planes(image), planes(seg), strict=True):
        grey = np.clip((im + 1.0) * 127.5, 0, 255).astype(np.uint8)
        rgb = np.repeat(grey[..., None], 3, axis=2)
        line = _outline(lab)
        for value, colour in LABEL_COLOURS.items():
            rgb[line == value] = colour
        panels.append(rgb)
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 2), (0, 0))) for p in panels]
    frame = np.concatenate(padded, axis=1)[:, :-2]
    if scale > 1:
        frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    return frame


def _parse_endpoint(source: GeneratorSource, text: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(text, Mapping):
        return parse_condition_args(source.schema, [f"{k}={v}" for k, v in text.items()])
    items = [s for s in str(text).split(",") if s.strip()]
    return parse_condition_args(source.schema, items)


def _encode(
    source: GeneratorSource, values: Mapping[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    cat, cont = source.schema.encode(values)
    return torch.as_tensor(cat).reshape(1, -1), torch.as_tensor(cont).reshape(
        1, -1
    )  # [1, n_cat], [1, n_cont]


def walk_ws(
    source: GeneratorSource,
    *,
    seeds: Sequence[int] | None = None,
    conditions: Sequence[str | Mapping[str, Any]] | None = None,
    condition: Mapping[str, Any] | None = None,
    seed: int = 0,
    steps: int = 8,
    truncation: float = 1.0,
) -> tuple[torch.Tensor, list[str]]:
    """The ``ws [steps, num_ws, w_dim]`` of a walk and a label per frame.

    Args:
        source: the loaded generator.
        seeds: two seeds (walk between seeds, under ``condition``).
        conditions: two condition sets, e.g. ``["grade=LGG", "grade=HGG"]`` (walk between
            conditions, at ``seed``); a set may hold several ``name=value`` joined by commas.
        condition: the condition of a seed walk.
        seed: the seed of a condition walk.
        steps: frames (>= 2), end points included.
        truncation: psi >= 0 toward each end point's condition mean (above 1: a warning).
    """
    if (seeds is None) == (conditions is None):
        raise GliomagenError("interpolate: give either --seeds A,B or --conditions A B")
    if int(steps) < 2:
        raise GliomagenError(f"--steps {steps}: must be at least 2")
    truncation = check_truncation(truncation)
    G = source.G
    means = ConditionMeans(G)
    if seeds is not None:
        if len(seeds) != 2:
            raise GliomagenError(f"--seeds: expected two seeds A,B, got {len(seeds)}")
        values = parse_condition_args(
            source.schema, [f"{k}={v}" for k, v in (condition or {}).items()]
        )
        ends = [(int(s), values) for s in seeds]
        names = [f"seed {s}" for s in seeds]
    else:
        assert conditions is not None
        if len(conditions) != 2:
            raise GliomagenError(
                f"--conditions: expected two condition sets A B, got {len(conditions)}"
            )
        ends = [(int(seed), _parse_endpoint(source, c)) for c in conditions]
        names = [",".join(f"{k}={v}" for k, v in e[1].items()) or "unknown" for e in ends]
    w_end = []
    for s, values in ends:
        cat, cont = _encode(source, values)
        w = map_z(G, seeded_z([s], G.z_dim), cat, cont)  # [1, w_dim]
        if truncation != 1.0:
            w = truncate(w, means.get(cat[0], cont[0]).reshape(1, -1), truncation)
        w_end.append(w.cpu())
    t = torch.linspace(0.0, 1.0, int(steps)).reshape(-1, 1)  # [steps, 1]
    w = torch.lerp(w_end[0], w_end[1], t)  # [steps, w_dim]
    labels = [f"{names[0]} -> {names[1]}: {float(x):.2f}" for x in t.flatten()]
    return broadcast_ws(w, G.num_ws), labels


def interpolate(
    checkpoint: Path | str,
    out: Path | str,
    *,
    seeds: Sequence[int] | None = None,
    conditions: Sequence[str | Mapping[str, Any]] | None = None,
    condition: Mapping[str, Any] | None = None,
    seed: int = 0,
    steps: int = 8,
    truncation: float = 1.0,
    modality: str = "t1c",
    device: str = "cpu",
    batch_size: int = 4,
    frame_ms: int = 200,
) -> dict[str, Path]:
    """Render a latent walk to ``out/interpolation.png`` (strip) and ``out/interpolation.gif``.

    See :func:`walk_ws` for ``seeds``, ``conditions``, ``condition``, ``seed``, ``steps`` and
    ``truncation``. ``modality`` picks the channel shown; ``frame_ms`` is the GIF frame time.

    Returns:
        ``{"png": path, "gif": path}``.
    """
    source = load_source(checkpoint, device)
    if modality not in source.modalities:
        raise GliomagenError(
            f"--modality {modality}: not generated by this model ({', '.join(source.modalities)})"
        )
    ch = source.modalities.index(modality)
    ws, labels = walk_ws(
        source,
        seeds=seeds,
        conditions=conditions,
        condition=condition,
        seed=seed,
        steps=steps,
        truncation=truncation,
    )
    out_dir = _writable_dir(Path(out))
    frames, volumetric = _render_walk(source, ws, ch, batch_size)
    png, gif = out_dir / "interpolation.png", out_dir / "interpolation.gif"
    _write_strip(png, frames, labels, modality, volumetric)
    _write_gif(gif, frames, frame_ms)
    return {"png": png, "gif": gif}


def _writable_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed; a one-line GliomagenError when it cannot be written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GliomagenError(
            f"--out {out_dir}: cannot write there ({exc.strerror or exc})"
        ) from None
    if not os.access(out_dir, os.W_OK):
        raise GliomagenError(f"--out {out_dir}: cannot write there (permission denied)")
    return out_dir


def _render_walk(
    source: GeneratorSource, ws: torch.Tensor, ch: int, batch_size: int
) -> tuple[list[np.ndarray], bool]:
    """The frames of channel ``ch`` along ``ws`` (constant noise) and whether they are volumes."""
    frames: list[np.ndarray] = []
    for start in range(0, ws.shape[0], batch_size):
        with torch.no_grad():
            images, logits = source.G.synthesis(
                ws[start : start + batch_size].to(source.device), noise_mode="const"
            )
        images_np, logits_np = (
            images.float().cpu().numpy(),
            logits.float().cpu().numpy(),
        )  # [b, 4, *S]
        for im, lg in zip(images_np, logits_np, strict=True):
            seg = mask_labels(lg, brain_mask(im))
            frames.append(render_frame(im[ch], seg))
    return frames, images_np.ndim == 5


def _write_strip(
    png: Path, frames: list[np.ndarray], labels: list[str], modality: str, volumetric: bool
) -> None:
    """The walk as one row of titled frames, written atomically as a PNG."""
    import matplotlib  # heavy; and the Agg backend must be chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(frames)
    fig, axes = plt.subplots(
        1, n, figsize=(3.2 * n, 3.2 * frames[0].shape[0] / frames[0].shape[1] + 0.6), squeeze=False
    )
    for ax, frame, label in zip(axes[0], frames, labels, strict=True):
        ax.imshow(frame, interpolation="nearest")
        ax.set_title(label.split(": ")[-1], fontsize=8)
        ax.axis("off")
    shown = "(axial | coronal | sagittal)" if volumetric else "(2D slices)"
    fig.suptitle(f"{modality}: {labels[0].split(': ')[0]}  {shown}", fontsize=9)
    fig.tight_layout()
    try:
        with atomic_path(png) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)


def _write_gif(gif: Path, frames: list[np.ndarray], frame_ms: int) -> None:
    """The walk forth and back as an animated GIF (small grids upscaled), written atomically."""
    scale = max(1, 192 // max(frames[0].shape[:2]))
    big = [f.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else f for f in frames]
    pil = [Image.fromarray(f) for f in big + big[-2:0:-1]]  # forth and back
    with atomic_path(gif) as tmp:
        pil[0].save(
            tmp, format="GIF", save_all=True, append_images=pil[1:], duration=frame_ms, loop=0
        )
