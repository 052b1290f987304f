"""The 2D slice store (``gliomagen prepare --slices``): axial, coronal and sagittal slices of every case.

Each case goes through the 3D pipeline of :func:`gliomagen.data.build.build_store` (same reading,
checks, brain crop, intensity standardisation, labels, split, QC) onto a *cubic* grid whose side is
the slice size, into a temporary volume store; the slices are then cut from that grid along each
requested view and the volumes are deleted. So a slice store and a volume store of the same cases
share every preprocessing step, and a slice ``s x s`` has the voxel size of an ``s^3`` volume.

Layout (the store format of :mod:`gliomagen.data.store`, with 2-D items)::

    STORE/
      meta.json    as a volume store, plus spatial_dims = 2, size [s, s], "slices" (views, axes,
                   minimum brain fraction, counts), case_splits, n_slices
      images.npy   float16 [N, 4, s, s] in [-1, 1], background exactly -1
      masks.npy    uint8 [N, s, s] {0..3}; 255 for a slice of a case without a mask
      index.csv    one row per slice: case_id (``<case>-<view>-<index>``), split, has_mask,
                   source_case, view, slice_index, position, brain_fraction, the case's labels
      cases.csv    the per-case index of the volume pipeline (files, intensities, geometry)
      qc/          the volume montages of the QC sample and, per QC case, ``<case>-slices.png``

A slice ``[a, b]`` keeps the canonical RAS voxel axes other than its view's (axial holds z:
``[x, y]``; coronal holds y: ``[x, z]``; sagittal holds x: ``[y, z]``). ``position`` is the slice
index over ``s - 1`` along the held axis (0 = left / posterior / inferior edge of the brain's
cubic box, 1 = right / anterior / superior). The conditions ``view`` (categorical) and
``position`` (continuous, standardised on the training slices) join the cases' own labels.
Slices whose brain covers less than ``min_brain_fraction`` of the slice are left out. The split
is by case: every slice of a case is in its case's split.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen import MODALITIES, __version__
from gliomagen.data.build import build_store
from gliomagen.data.build_inputs import (
    input_fingerprint,
    is_up_to_date,
    prep_options,
    split_option,
)
from gliomagen.data.build_workers import say
from gliomagen.data.conditions import ConditionSchema
from gliomagen.data.labels import (
    SLICE_CONDITIONS,
    build_schema,
    label_usage,
    parse_label_types,
    read_label_table,
)
from gliomagen.data.layouts import find_cases
from gliomagen.data.slice_pictures import (
    grey_u8,
    grid_png,
    slice_rgb,
    slices_montage_png,
    to_display,
)
from gliomagen.data.splits import read_split_csv
from gliomagen.data.store_format import NO_MASK, SPLITS, check_trainable_size, parse_size, read_json
from gliomagen.data.store_output import NpyWriter, check_apart, check_output, staged_store
from gliomagen.data.tables import read_table
from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import write_text

__all__ = ["DEFAULT_MIN_BRAIN_FRACTION", "DEFAULT_SLICE_SIZE", "VIEWS", "VIEW_AXIS",
           "build_slice_store", "grey_u8", "grid_png", "parse_slice_size", "parse_views",
           "slice_affine", "slice_rgb", "slices_montage_png", "take_slice", "to_display"]  # fmt: skip

VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")
"""The views, in the order of the ``view`` condition's categories."""

VIEW_AXIS: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
"""Canonical RAS voxel axis (x, y, z) each view holds fixed."""

DEFAULT_SLICE_SIZE = 256
DEFAULT_MIN_BRAIN_FRACTION = 0.1


# -- options ------------------------------------------------------------------------------------
def parse_slice_size(value: int | str | Sequence[int]) -> int:
    """The side of a square slice: ``256``, ``"64"`` or ``"64,64"``; a 3-sided or non-square size is refused."""
    parts = (
        [p for p in value.replace("x", ",").split(",") if p.strip()]
        if isinstance(value, str)
        else ([value] if isinstance(value, int | np.integer) else list(value))
    )
    if len(parts) not in (1, 2) or len({str(p).strip() for p in parts}) != 1:
        raise GliomagenError(
            f"--size {value!r}: with --slices give the side of a square slice, one number (e.g. 256 or 64)"
        )
    return parse_size(str(parts[0]).strip())[0]


def parse_views(views: str | Iterable[str]) -> tuple[str, ...]:
    """``"axial,sagittal"`` -> ``("axial", "sagittal")`` in :data:`VIEWS` order, checked."""
    items = views.split(",") if isinstance(views, str) else list(views)
    names = [str(v).strip().lower() for v in items if str(v).strip()]
    bad = [v for v in names if v not in VIEWS]
    if bad or not names:
        raise GliomagenError(
            f"--views {','.join(names) or '(none)'}: expected one or more of {', '.join(VIEWS)}"
        )
    return tuple(v for v in VIEWS if v in names)


# -- geometry --------------------------------------------------------------------------------------
def take_slice(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """Slice ``index`` of ``volume [..., X, Y, Z]`` (channels first, if any) along ``view``."""
    return np.take(volume, int(index), axis=volume.ndim - 3 + VIEW_AXIS[view])


def slice_affine(grid_affine: np.ndarray, view: str, index: float) -> np.ndarray:
    """The ``[4, 4]`` affine of a 2-D slice ``[a, b]`` cut at ``index`` along ``view`` from a grid with ``grid_affine``."""
    held = VIEW_AXIS[view]
    kept = [a for a in range(3) if a != held]
    pick = np.zeros((4, 4))
    pick[kept[0], 0] = pick[kept[1], 1] = pick[held, 2] = pick[3, 3] = 1.0
    pick[held, 3] = float(index)
    return np.asarray(grid_affine, dtype=np.float64) @ pick


# -- building -----------------------------------------------------------------------------------
def build_slice_store(
    sources: Sequence[Path | str],
    out: Path | str,
    *,
    size: int | str | Sequence[int] = DEFAULT_SLICE_SIZE,
    views: str | Iterable[str] = VIEWS,
    min_brain_fraction: float = DEFAULT_MIN_BRAIN_FRACTION,
    slice_step: int = 1,
    labels_csv: Path | str | None = None,
    skip_bad: bool = False,
    workers: int = 1,
    seed: int = 0,
    progress: bool = True,
    label_types: Sequence[str] = (),
    qc_cases: int = 8,
    normalize: str = "percentile",
    bias_correction: Any = False,
    denoise: Any = False,
    nyul_from: Path | str | None = None,
    split_csv: Path | str | None = None,
) -> Path:
    """Prepare cases into a 2D slice store (see the module docstring).

    Args:
        sources, labels_csv, skip_bad, workers, seed, progress, label_types, qc_cases, normalize,
            bias_correction, denoise, nyul_from, split_csv: as in
            :func:`gliomagen.data.build.build_store` (the split is by case).
        out: the store folder to create, as in :func:`~gliomagen.data.build.build_store`.
        size: side of the square slices (and of the cubic grid they are cut from).
        views: ``axial``, ``coronal``, ``sagittal`` (all by default).
        min_brain_fraction: slices whose brain covers less of the slice are left out, in [0, 1);
            a slice without any brain is always left out.
        slice_step: keep every ``slice_step``-th slice along each view (1 = all).

    Returns:
        ``out``.

    Raises:
        GliomagenError: bad options or input, naming them; nothing is left behind.
    """
    side = parse_slice_size(size)
    check_trainable_size((side, side))
    views_t = parse_views(views)
    _check_numbers(min_brain_fraction, slice_step, workers)
    out = Path(out)
    check_output(out)
    cases = find_cases(sources)
    check_apart(out, sources, cases, labels_csv)
    label_cols = read_label_table(Path(labels_csv))[0] if labels_csv else []
    for name in [*label_cols, *(k for c in cases for k in c.labels)]:
        if name in (*SLICE_CONDITIONS, *_SLICE_COLUMNS):
            raise GliomagenError(f"label column {name!r} is reserved in a slice store; rename it")
    prep, standard = prep_options(normalize, bias_correction, denoise, nyul_from)
    options: dict[str, Any] = {
        "slices": {"size": side, "views": list(views_t), "min_brain_fraction": float(min_brain_fraction),
                   "slice_step": int(slice_step)},
        "seed": seed, "skip_bad": skip_bad, "label_types": parse_label_types(label_types), "qc_cases": qc_cases,
        "preprocessing": prep.to_dict(), "format_version": 1, "gliomagen_version": __version__,
    }  # fmt: skip
    if standard is not None:
        options["preprocessing"]["nyul_from"] = {m: v.tolist() for m, v in standard.items()}
    if split_csv is not None:  # checked against the cases by build_store, before any work
        check_apart(out, [], [], split_csv)
        read_split_csv(Path(split_csv))
        del options["seed"]
        options["split"] = split_option(split_csv)
    stamp = input_fingerprint(cases, labels_csv, options)
    if is_up_to_date(out, stamp):
        say(progress, f"{out}: up to date with its inputs; nothing to do")
        return out
    with staged_store(out) as tmp:
        volumes = build_store(
            sources, tmp / "volumes", labels_csv=labels_csv, size=(side, side, side), skip_bad=skip_bad,
            workers=workers, seed=seed, progress=progress, label_types=label_types, qc_cases=qc_cases,
            normalize=normalize, bias_correction=bias_correction, denoise=denoise, nyul_from=nyul_from,
            split_csv=split_csv,
        )  # fmt: skip
        say(progress, f"cutting {', '.join(views_t)} slices of {side}x{side}")
        meta = _cut(tmp, volumes, views_t, float(min_brain_fraction), int(slice_step))
        meta.update(input_fingerprint=stamp, options=options)
        write_text(tmp / "meta.json", json.dumps(meta, indent=1))
        shutil.rmtree(volumes)
    return out


_SLICE_COLUMNS = ("source_case", "slice_index", "brain_fraction")
"""Index columns of a slice store beside the store's own (and the ``view``/``position`` conditions)."""


def _check_numbers(min_brain_fraction: float, slice_step: int, workers: int) -> None:
    """Refuse a brain fraction outside [0, 1), a slice step or worker count below 1."""
    if not 0.0 <= float(min_brain_fraction) < 1.0:
        raise GliomagenError(f"--min-brain-fraction {min_brain_fraction}: must be in [0, 1)")
    if int(slice_step) < 1:
        raise GliomagenError(f"--slice-step {slice_step}: must be at least 1")
    if workers < 1:
        raise GliomagenError(f"--workers {workers}: must be at least 1")


def _cut(
    tmp: Path, volumes: Path, views: tuple[str, ...], min_fraction: float, step: int
) -> dict[str, Any]:
    """Cut the slices of ``volumes`` into ``tmp``'s arrays and index; return the slice store's meta."""
    vmeta = read_json(volumes / "meta.json")
    side = int(vmeta["size"][0])
    header, table = read_table(volumes / "index.csv")
    cases = [row for _, row in table]
    labels = header[header.index("has_mask") + 1 : header.index("layout")]
    rows = _cut_arrays(tmp, volumes, cases, labels, views, side, min_fraction, step)
    if not rows:
        raise GliomagenError(
            f"no slice has a brain fraction of at least {min_fraction:g}; lower --min-brain-fraction"
        )
    columns = ["case_id", "split", "has_mask", "source_case", "view", "slice_index", "position",
               "brain_fraction", *labels, "layout"]  # fmt: skip
    with open(tmp / "index.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    shutil.copyfile(volumes / "index.csv", tmp / "cases.csv")
    if (volumes / "qc").is_dir():
        shutil.move(str(volumes / "qc"), str(tmp / "qc"))
        _slice_qc(tmp, volumes, views, [p.stem for p in (tmp / "qc").glob("*.png")])
    if (volumes / "skipped.csv").is_file():
        shutil.copyfile(volumes / "skipped.csv", tmp / "skipped.csv")
    return _slice_meta(vmeta, rows, views, side, min_fraction, step)


def _cut_arrays(
    tmp: Path,
    volumes: Path,
    cases: list[dict[str, str]],
    labels: list[str],
    views: tuple[str, ...],
    side: int,
    min_fraction: float,
    step: int,
) -> list[dict[str, Any]]:
    """Write the kept slices of every case into ``tmp``'s arrays; return their index rows."""
    images = np.load(volumes / "images.npy", mmap_mode="r")  # [N, C, s, s, s]
    masks = np.load(volumes / "masks.npy", mmap_mode="r")  # [N, s, s, s]
    capacity = len(cases) * len(views) * len(range(0, side, step))
    img_out = NpyWriter(tmp / "images.npy", np.float16, (images.shape[1], side, side), capacity)
    mask_out = NpyWriter(tmp / "masks.npy", np.uint8, (side, side), capacity)
    rows: list[dict[str, Any]] = []
    width = len(str(side - 1))
    try:
        for k, case in enumerate(cases):
            image, mask = np.asarray(images[k]), np.asarray(masks[k])
            brain = (image > -1.0).any(axis=0) | ((mask >= 1) & (mask <= 3))  # [s, s, s]
            for view in views:
                held = VIEW_AXIS[view]
                fraction = brain.mean(axis=tuple(a for a in range(3) if a != held))  # [s]
                for i in range(0, side, step):
                    if fraction[i] <= 0 or fraction[i] < min_fraction:
                        continue
                    img_out.write(len(rows), take_slice(image, view, i))
                    mask_out.write(len(rows), take_slice(mask, view, i))
                    rows.append({
                        "case_id": f"{case['case_id']}-{view}-{i:0{width}d}", "split": case["split"],
                        "has_mask": case["has_mask"], "source_case": case["case_id"], "view": view,
                        "slice_index": i, "position": round(i / max(1, side - 1), 6),
                        "brain_fraction": round(float(fraction[i]), 4), **{c: case[c] for c in labels},
                        "layout": case["layout"],
                    })  # fmt: skip
    finally:
        img_out.close(len(rows))
        mask_out.close(len(rows))
    del images, masks
    return rows


def _slice_meta(
    vmeta: dict[str, Any],
    rows: list[dict[str, Any]],
    views: tuple[str, ...],
    side: int,
    min_fraction: float,
    step: int,
) -> dict[str, Any]:
    """The slice store's meta: the volume store's, with 2-D sizes, the view and position
    conditions (standardised on the training slices) and the slicing options."""
    train = [r["split"] == "train" for r in rows]
    extra_sources = {"view": "view", "position": "slice"}
    extra = build_schema(
        [{"view": r["view"], "position": r["position"]} for r in rows], extra_sources, train=train
    )
    schema = ConditionSchema([*ConditionSchema.from_dict(vmeta["schema"]).fields, *extra.fields])
    meta = {
        k: v for k, v in vmeta.items() if k not in ("input_fingerprint", "options", "labels_csv")
    }
    meta.update(
        size=[side, side], spatial_dims=2, schema=schema.to_dict(),
        splits={s: sum(r["split"] == s for r in rows) for s in SPLITS}, case_splits=vmeta["splits"],
        n_slices=len(rows), n_with_mask=sum(r["has_mask"] == "1" for r in rows),
        labels_csv=vmeta.get("labels_csv"),
        labels={**vmeta.get("labels", {}), **label_usage(extra_sources, {}, extra)},
        slices={
            "views": list(views), "held_axis": {v: "xyz"[VIEW_AXIS[v]] for v in views},
            "axes": {v: "".join(a for a in "xyz" if a != "xyz"[VIEW_AXIS[v]]) for v in views},
            "volume_size": [side] * 3, "min_brain_fraction": min_fraction, "slice_step": step,
            "per_view": {v: sum(r["view"] == v for r in rows) for v in views},
            "position": "slice index / (size - 1) along the held canonical RAS axis of the case's cubic brain box",
            "brain": "voxels above -1 in any modality, plus the tumour",
        },
    )  # fmt: skip
    return meta


def _slice_qc(
    tmp: Path, volumes: Path, views: tuple[str, ...], case_ids: list[str], n: int = 6
) -> None:
    """``qc/<case>-slices.png``: ``n`` kept slices per view (rows), T1Gd with the mask overlaid."""
    rows = [row for _, row in read_table(tmp / "index.csv")[1]]
    images = np.load(tmp / "images.npy", mmap_mode="r")
    masks = np.load(tmp / "masks.npy", mmap_mode="r")
    channel = min(1, images.shape[1] - 1)
    for cid in case_ids:
        panels, names = [], []
        for view in views:
            mine = [i for i, r in enumerate(rows) if r["source_case"] == cid and r["view"] == view]
            if not mine:
                continue
            picks = [mine[int(j)] for j in np.linspace(0, len(mine) - 1, min(n, len(mine))).round()]
            panels.append([
                slice_rgb(np.asarray(images[j][channel], np.float32),
                          None if (np.asarray(masks[j]) == NO_MASK).all() else np.asarray(masks[j]))
                for j in picks
            ])  # fmt: skip
            names.append(view)
        if panels:
            grid_png(
                panels,
                tmp / "qc" / f"{cid}-slices.png",
                row_labels=names,
                title=f"{cid} ({MODALITIES[channel]})",
            )
    del images, masks
