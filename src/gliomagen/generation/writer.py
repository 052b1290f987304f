"""Write a synthetic cohort in the BraTS 2023 layout.

```
OUT/
  SYN-1a2b3c4d-s000000/SYN-1a2b3c4d-s000000-t1n.nii.gz  -t1c  -t2w  -t2f  -seg.nii.gz
  SYN-1a2b3c4d-s000001/...
  clinical.csv     case_id, seed, [mix_seed,] one column per condition: the values the case
                   was generated with (requested, or drawn from a training case given the
                   requested ones, see generation.fill; empty = unknown), then wt_volume_ml,
                   enhancing_fraction, hemisphere where they are no conditions: measured on
                   each mask (see generation.covariates), which also fills those condition
                   cells that stayed unknown
  manifest.json    checkpoint path and sha256, id prefix, case ids, seeds, truncation, space,
                   format, mixing, versions, command line, how unset conditions were drawn
                   (conditions_drawn: method, fields, and per case id its donor and the
                   fields it gave)
```

Case ids come from :mod:`gliomagen.generation.ids`; the cohort folder is written whole under a
temporary name and renamed at the end (:mod:`gliomagen.generation.staging`). Each case folder is
itself written under a temporary name and renamed (:func:`gliomagen.io.atomic.atomic_dir`), as
are ``clinical.csv`` and ``manifest.json``. nibabel writes ``.nii.gz`` with a gzip header without
file name and with mtime 0, so the same arrays give the same bytes whatever the case is called.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from gliomagen.io.atomic import atomic_dir, write_text


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def requested_conditions(conditions: Any, conditions_csv: Any) -> Any:
    """What the manifest records as requested: the fixed conditions, or the CSV with its hash."""
    if not conditions_csv:
        return conditions
    return {
        "csv": str(conditions_csv),
        "csv_sha256": file_sha256(Path(conditions_csv)),
        "fixed": conditions,
    }


def nifti(data: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A NIfTI-1 image with qform and sform set to ``affine`` (code 1, scanner) and units in mm."""
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    img.header.set_data_dtype(data.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = b"gliomagen synthetic"
    return img


def write_case(
    out: Path,
    cid: str,
    images: np.ndarray,
    seg: np.ndarray,
    affine: np.ndarray,
    modalities: Sequence[str],
) -> Path:
    """Write one case atomically.

    Args:
        out: cohort folder (exists).
        cid: case id, e.g. ``SYN-1a2b3c4d-s000000``.
        images: ``[C, X, Y, Z]`` float32 or int16 scanner intensities.
        seg: ``[X, Y, Z]`` uint8 labels {0, 1, 2, 3}.
        affine: ``[4, 4]`` voxel -> world (mm).
        modalities: channel names, e.g. ``("t1n", "t1c", "t2w", "t2f")``.

    Returns:
        The case folder ``out/cid``.
    """
    if images.shape[0] != len(modalities) or images.shape[1:] != seg.shape:
        raise ValueError(
            f"images {images.shape} / seg {seg.shape} / {len(modalities)} modalities disagree"
        )
    final = Path(out) / cid
    with atomic_dir(final) as tmp:
        for c, mod in enumerate(modalities):
            nib.save(
                nifti(np.ascontiguousarray(images[c]), affine), str(tmp / f"{cid}-{mod}.nii.gz")
            )
        nib.save(
            nifti(np.ascontiguousarray(seg.astype(np.uint8)), affine),
            str(tmp / f"{cid}-seg.nii.gz"),
        )
    return final


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def clinical_row(
    cid: str, seed: int, mix_seed: int | None, conditions: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``clinical.csv`` row of a case: id, seed, mix seed (when mixing), conditions (and
    measured covariates, :func:`gliomagen.generation.covariates.fill_covariates`)."""
    row: dict[str, Any] = {"case_id": cid, "seed": seed}
    if mix_seed is not None:
        row["mix_seed"] = mix_seed
    return {**row, **conditions}


def write_clinical(
    out: Path,
    rows: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    measured: Sequence[str] = (),
) -> Path:
    """``clinical.csv``: one row per case, columns ``case_id, seed, [mix_seed,] *fields, *measured``.

    Args:
        out: cohort folder.
        rows: per case ``{"case_id", "seed", "mix_seed"?, field: raw value or None, ...}``.
        fields: condition names in schema order.
        measured: further columns measured on the masks, in order (none for 2D slices).
    """
    head = (
        ["case_id", "seed"]
        + (["mix_seed"] if any("mix_seed" in r for r in rows) else [])
        + list(fields)
        + list(measured)
    )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(head)
    for r in rows:
        writer.writerow([_cell(r.get(h)) for h in head])
    path = Path(out) / "clinical.csv"
    write_text(path, buf.getvalue())
    return path


def write_manifest(out: Path, manifest: Mapping[str, Any]) -> Path:
    """``manifest.json`` (sorted keys, 2-space indent)."""
    path = Path(out) / "manifest.json"
    write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path
