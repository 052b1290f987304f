"""2D generation: a checkpoint trained on a slice store -> PNG and 2-D NIfTI slices with masks.

:func:`gliomagen.generation.cohort.generate_cohort` hands a 2D checkpoint (its store size has two
sides) to :func:`generate_slices`, which reuses the 3D path's latents, truncation, mixing,
synthesis, brain mask, labels and intensity mapping, and writes::

    OUT/
      ID/ID-{t1n,t1c,t2w,t2f,seg}.nii.gz   2-D NIfTI [a, b], placed in world space at the slice's
                                           plane of the template grid (ID: SYN-1a2b3c4d-s000000,
                                           see gliomagen.generation.ids)
      ID/ID-{t1n,t1c,t2w,t2f}.png          8-bit grey, -1..1 -> 0..255, display orientation
                                           (superior / anterior up)
      ID/ID-overlay.png                    every modality with the mask overlaid
      overview.png                                        the first slices of each view, one row per view
      clinical.csv   case_id, seed, [mix_seed,] conditions (view and position included)
      manifest.json  as in 3D, plus spatial_dims 2, views, the volume grid's affine

Conditions: a ``view`` the request leaves unset is ``VIEWS[seed % n_views]`` of the model's views
(so a cohort has all views in turn), an unset ``position`` is drawn uniformly over the training
positions' range (mean +- sqrt(3) sd, clipped to [0, 1]) from the case seed; both depend on the
case seed only, so ``--seed 17 --n 1`` still rewrites case 17 of a ``--seed 0`` cohort. The other
fields the request leaves unset are then drawn from a training slice given the set ones, view
and position included (:mod:`gliomagen.generation.fill`; ``--unset unknown``: unknown). The NIfTI
images hold scanner-like intensities (:mod:`gliomagen.generation.intensity`; float32 or int16),
0 outside the brain; :func:`read_slice_cohort` maps them back to [-1, 1] with the manifest's ranges.
As in 3D the folder is written whole under a temporary name (:mod:`gliomagen.generation.staging`);
``clinical.csv`` has no mask covariates (``prepare --slices`` derives none).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from gliomagen.data.conditions import ConditionSchema, infer_kind, is_missing
from gliomagen.data.preprocess import grid_affine
from gliomagen.data.slices import grey_u8, grid_png, slice_affine, slice_rgb, to_display
from gliomagen.errors import GliomagenError
from gliomagen.generation.fill import case_table, fill_unset
from gliomagen.generation.ids import case_id
from gliomagen.generation.intensity import (
    apply_brain,
    brain_mask,
    mask_labels,
    scale_to_range,
    scanner_ranges,
)
from gliomagen.generation.manifest import cohort_manifest
from gliomagen.generation.plan import encode_plan, plan_conditions
from gliomagen.generation.sampling import case_seeds
from gliomagen.generation.source import GeneratorSource
from gliomagen.generation.space import OutputGrid, native_affine
from gliomagen.generation.staging import check_out, staged_cohort
from gliomagen.generation.synthesis import synthesize_batches
from gliomagen.generation.writer import (
    clinical_row,
    nifti,
    requested_conditions,
    write_clinical,
    write_manifest,
)
from gliomagen.io.atomic import atomic_dir

OVERVIEW_PER_VIEW = 8


def is_slice_source(source: GeneratorSource) -> bool:
    """True for a generator trained on a 2D slice store."""
    return len(source.meta.get("size") or ()) == 2


def plan_slices(
    schema: ConditionSchema,
    seeds: Sequence[int],
    conditions: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    conditions_csv: Path | None = None,
) -> list[dict[str, Any]]:
    """The conditions of each slice: the request (see :mod:`gliomagen.generation.plan`), with an
    unset ``view`` / ``position`` filled from the case seed (see the module docstring)."""
    plan = plan_conditions(schema, len(seeds), conditions, conditions_csv)
    views = schema["view"].categories if "view" in schema else []
    pos = next((f for f in schema.fields if f.name == "position"), None)
    for row, seed in zip(plan, seeds, strict=True):
        if views and row.get("view") is None:
            row["view"] = views[int(seed) % len(views)]
        if pos is not None and row.get("position") is None:
            half = math.sqrt(3.0) * pos.std
            u = float(np.random.default_rng([int(seed), 2]).random())
            row["position"] = round(float(np.clip(pos.mean - half + 2 * half * u, 0.0, 1.0)), 4)
    return plan


def _volume_affine(meta: Mapping[str, Any], side: int) -> np.ndarray:
    """Affine of the cubic grid the training slices were cut from (its template geometry)."""
    geometry = meta.get("template_geometry")
    if geometry and [int(s) for s in geometry.get("size", [])] == [side] * 3:
        return np.asarray(grid_affine(geometry), dtype=np.float64)
    spacing = (list(meta.get("spacing_mm") or []) + [1.0, 1.0, 1.0])[:3]
    return native_affine([side] * 3, spacing)


def write_slice_case(
    out: Path,
    cid: str,
    images: np.ndarray,
    shown: np.ndarray,
    seg: np.ndarray,
    affine: np.ndarray,
    modalities: Sequence[str],
) -> Path:
    """Write one slice atomically: NIfTI per modality and mask, a PNG per modality and an overlay PNG.

    Args:
        out: cohort folder.
        cid: case id.
        images: ``[C, a, b]`` file intensities (float32 or int16).
        shown: ``[C, a, b]`` network values in [-1, 1] (-1 outside the brain), for the PNGs.
        seg: ``[a, b]`` uint8 labels.
        affine: the slice's ``[4, 4]`` affine.
        modalities: channel names.
    """
    final = Path(out) / cid
    with atomic_dir(final) as tmp:
        for c, mod in enumerate(modalities):
            nib.save(
                nifti(np.ascontiguousarray(images[c]), affine), str(tmp / f"{cid}-{mod}.nii.gz")
            )
            Image.fromarray(grey_u8(to_display(shown[c]))).save(tmp / f"{cid}-{mod}.png")
        nib.save(
            nifti(np.ascontiguousarray(seg.astype(np.uint8)), affine),
            str(tmp / f"{cid}-seg.nii.gz"),
        )
        panels = [slice_rgb(shown[c], seg) for c in range(len(modalities))]
        gap = np.zeros((panels[0].shape[0], 2, 3), np.uint8)
        strip = np.concatenate([p for q in panels for p in (q, gap)][:-1], axis=1)
        Image.fromarray(strip).save(tmp / f"{cid}-overlay.png")
    return final


def generate_slices(
    source: GeneratorSource,
    out: Path | str,
    seeds: Sequence[int],
    conditions: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    conditions_csv: Path | str | None = None,
    truncation: float = 1.0,
    batch_size: int = 4,
    fmt: str = "float32",
    mix: tuple[int, int] | None = None,
    progress: bool = True,
    noise_mode: str = "random",
    command_line: str = "",
    id_prefix: str = "SYN",
    unset: str = "drawn",
) -> Path:
    """Generate one slice per seed of a 2D generator into ``out`` (see the module docstring).

    Arguments are those of :func:`gliomagen.generation.cohort.generate_cohort` (already checked
    there), with the case ``seeds`` as a list and ``mix`` as a ``(seed, layer)`` pair. The view
    and position are filled first (:func:`plan_slices`); the other unset fields follow
    ``unset`` given them (:mod:`gliomagen.generation.fill`).
    """
    seeds = list(seeds)
    csv_path = Path(conditions_csv) if conditions_csv else None
    plan = plan_slices(source.schema, seeds, conditions, csv_path)
    filled = fill_unset(source.schema, plan, seeds, case_table(source.G, source.schema), unset)
    plan = filled.plan
    cat, cont = encode_plan(source.schema, plan)
    side = int(source.meta["size"][0])
    ranges = scanner_ranges(source.modalities, source.meta)
    volume_affine = _volume_affine(source.meta, side)
    out_dir = check_out(Path(out))
    mix_seeds = case_seeds(mix[0], len(seeds)) if mix else None
    batches = synthesize_batches(
        source, seeds, cat, cont, truncation=truncation, batch_size=batch_size,
        mix_seeds=mix_seeds, mix_layer=mix[1] if mix else None, noise_mode=noise_mode,
    )  # fmt: skip
    ids = [case_id(id_prefix, s) for s in seeds]
    with staged_cohort(out_dir) as tmp:
        rows, overview = _write_slices(
            tmp, source, batches, plan, ids, seeds, mix_seeds, ranges, fmt, side, volume_affine,
            progress,
        )  # fmt: skip
        if overview:
            grid_png(list(overview.values()), tmp / "overview.png", row_labels=list(overview),
                     title=f"first slices per view (t1c, mask overlaid), truncation {truncation:g}")  # fmt: skip
        write_clinical(tmp, rows, source.schema.names)
        manifest = cohort_manifest(
            source, id_prefix=id_prefix, case_ids=ids, seeds=seeds, mix=mix, truncation=truncation,
            space="native", fmt=fmt, noise_mode=noise_mode,
            grid=OutputGrid("native", (side, side), volume_affine),  # type: ignore[arg-type]
            ranges=ranges, requested=requested_conditions(conditions, conditions_csv),
            command_line=command_line, conditions_drawn=filled.record(ids),
        )  # fmt: skip
        write_manifest(tmp, _with_slice_keys(manifest, rows, side, volume_affine))
    return out_dir


def _write_slices(
    out_dir: Path,
    source: GeneratorSource,
    batches: Any,
    plan: Sequence[Mapping[str, Any]],
    ids: Sequence[str],
    seeds: Sequence[int],
    mix_seeds: Sequence[int] | None,
    ranges: Sequence[tuple[float, float]],
    fmt: str,
    side: int,
    volume_affine: np.ndarray,
    progress: bool,
) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
    """Finish and write each generated slice as it comes (:func:`_finish_slice`).

    Returns:
        The ``clinical.csv`` rows, in order, and up to :data:`OVERVIEW_PER_VIEW` overlay panels
        per view for ``overview.png``.
    """
    rows: list[dict[str, Any]] = []
    overview: dict[str, list[np.ndarray]] = {}
    bar = tqdm(total=len(seeds), unit="slice", desc="generate", disable=not progress, file=sys.stderr)
    try:
        for idx, images, logits in batches:  # [b, C, a, b]
            for j, i in enumerate(idx):
                view, shown, seg = _finish_slice(
                    out_dir, ids[i], images[j], logits[j], plan[i], ranges, fmt, side,
                    volume_affine, source.modalities,
                )  # fmt: skip
                if len(overview.setdefault(view, [])) < OVERVIEW_PER_VIEW:
                    overview[view].append(slice_rgb(shown[min(1, len(shown) - 1)], seg))
                rows.append(clinical_row(ids[i], seeds[i], mix_seeds[i] if mix_seeds else None, plan[i]))
                bar.update(1)
    finally:
        bar.close()
    return rows, overview


def _with_slice_keys(
    manifest: dict[str, Any],
    rows: Sequence[Mapping[str, Any]],
    side: int,
    volume_affine: np.ndarray,
) -> dict[str, Any]:
    """The cohort manifest with the keys of a 2D cohort: spatial_dims, views, the volume grid."""
    manifest.update(
        spatial_dims=2,
        shape=[side, side],
        affine=None,
        volume_affine=np.asarray(volume_affine).round(6).tolist(),
        views=sorted({str(r.get("view")) for r in rows if r.get("view")}),
        files={"nifti": "2-D [a, b] per modality and seg, each with its slice's affine",
               "png": "per modality (grey, -1..1 -> 0..255) and -overlay.png (mask over every modality)"},
    )  # fmt: skip
    return manifest


def _finish_slice(
    out_dir: Path,
    cid: str,
    images: np.ndarray,
    logits: np.ndarray,
    conditions: Mapping[str, Any],
    ranges: Sequence[tuple[float, float]],
    fmt: str,
    side: int,
    volume_affine: np.ndarray,
    modalities: Sequence[str],
) -> tuple[str, np.ndarray, np.ndarray]:
    """One generated slice from network output to files (:func:`write_slice_case`).

    The slice is placed at its ``view`` and ``position`` (centre when unset) in the volume grid.

    Returns:
        ``(view, shown, seg)``: its view, the network values shown in the PNGs ``[C, a, b]`` and
        its labels ``[a, b]``.
    """
    brain = brain_mask(images)  # [a, b]
    seg = mask_labels(logits, brain)
    shown = np.where(brain[None], np.clip(images, -1, 1), -1.0).astype(np.float32)
    files = apply_brain(scale_to_range(images, ranges), brain, fmt)
    view = conditions.get("view") or "axial"
    position = conditions.get("position")
    index = (0.5 if position is None else float(position)) * (side - 1)
    affine = slice_affine(volume_affine, view, index)
    write_slice_case(out_dir, cid, files, shown, seg, affine, modalities)
    return view, shown, seg


def _read(path: Path) -> np.ndarray:
    img: Any = nib.load(path)
    return np.asarray(img.dataobj)


def read_slice_cohort(
    folder: Path, side: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], list[dict[str, Any]], tuple[float, float, float]]:
    """Read a 2D cohort written by :func:`generate_slices` back onto the network's scale.

    Images are mapped back to [-1, 1] with the manifest's intensity ranges (inside the brain,
    i.e. where any modality is above 0; -1 outside); labels come from ``clinical.csv``, numbers as
    floats (0/1 flags and text stay categorical, as :func:`gliomagen.data.conditions.infer_kind`).

    Returns:
        ``(images float16 [N, C, a, b], masks uint8 [N, a, b], case_ids, labels, spacing_mm)``
        (``spacing_mm``: the pixel size and slab thickness of the model's grid).

    Raises:
        GliomagenError: not a 2D cohort folder, a missing or mis-sized file.
    """
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        with open(folder / "clinical.csv", newline="") as fh:
            raw = list(csv.DictReader(fh))
    except (OSError, ValueError) as exc:
        raise GliomagenError(
            f"--synthetic {folder}: not a 2D cohort of gliomagen generate (manifest.json and clinical.csv; {exc})"
        ) from None
    if manifest.get("spatial_dims") != 2:
        raise GliomagenError(f"--synthetic {folder}: holds 3D volumes, not 2D slices")
    mods = list(manifest["modalities"])
    ranges = [manifest["intensity_ranges"][m] for m in mods]
    shape = tuple(int(s) for s in manifest["shape"])
    if side is not None and shape != (side, side):
        raise GliomagenError(
            f"--synthetic {folder}: slices are {shape[0]}x{shape[1]} but the real slices are {side}x{side}"
        )
    if not raw:
        raise GliomagenError(f"--synthetic {folder}: clinical.csv lists no case")
    images = np.empty((len(raw), len(mods), *shape), np.float16)
    masks = np.empty((len(raw), *shape), np.uint8)
    for k, row in enumerate(raw):
        cid = row["case_id"]
        try:
            vals = [_read(folder / cid / f"{cid}-{m}.nii.gz").astype(np.float32) for m in mods]
            seg = _read(folder / cid / f"{cid}-seg.nii.gz")
        except (OSError, nib.filebasedimages.ImageFileError) as exc:
            raise GliomagenError(
                f"--synthetic {folder / cid}: cannot read the slice ({exc})"
            ) from None
        if any(v.shape != shape for v in vals) or seg.shape != shape:
            raise GliomagenError(
                f"--synthetic {folder / cid}: files are not {shape[0]}x{shape[1]} slices"
            )
        brain = np.any([v > 0 for v in vals], axis=0)
        for c, (v, (lo, hi)) in enumerate(zip(vals, ranges, strict=True)):
            x = np.clip(2.0 * (v - float(lo)) / (float(hi) - float(lo)) - 1.0, -1.0, 1.0)
            images[k, c] = np.where(brain, x, -1.0)
        masks[k] = np.where(brain, seg, 0).astype(np.uint8)
    fields = [f for f in raw[0] if f not in ("case_id", "seed", "mix_seed")]
    kinds = {f: infer_kind([r.get(f) for r in raw]) for f in fields}
    labels = [
        {f: None if is_missing(r.get(f)) else (float(r[f]) if kinds[f] == "continuous" else str(r[f]))
         for f in fields}
        for r in raw
    ]  # fmt: skip
    sp = [float(v) for v in (manifest.get("spacing_mm") or [1.0, 1.0, 1.0])][:3]
    return images, masks, [r["case_id"] for r in raw], labels, (sp[0], sp[1], sp[-1])
