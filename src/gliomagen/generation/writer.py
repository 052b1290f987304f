"""Write a synthetic cohort in the BraTS 2023 layout, one case at a time and atomically.

```
OUT/
  SYN-00000/SYN-00000-t1n.nii.gz  -t1c  -t2w  -t2f  -seg.nii.gz
  SYN-00001/...
  clinical.csv     case_id, seed, [mix_seed,] one column per condition (raw values; empty = unknown)
  manifest.json    checkpoint path and sha256, seeds, truncation, space, format, mixing, versions, command line
```

Each case is written into a hidden temporary folder beside its final place, then renamed into
place (:func:`gliomagen.io.atomic.atomic_dir`); a run that stops leaves only whole cases (and
perhaps a ``.SYN-*.tmp`` folder). ``clinical.csv`` and ``manifest.json`` are written last, each by
an atomic rename. nibabel writes ``.nii.gz``
with a gzip header without file name and with mtime 0, so the same arrays give the same bytes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import atomic_dir, write_text

CASE_PREFIX = "SYN"


def case_id(index: int) -> str:
    """``SYN-00000`` style id of case ``index``."""
    return f"{CASE_PREFIX}-{int(index):05d}"


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


def prepare_out_dir(out: Path) -> Path:
    """Create ``out`` if needed and check it can take a new cohort.

    Raises:
        GliomagenError: ``out`` is a file, already holds a cohort, or cannot be written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GliomagenError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and ((out / "manifest.json").exists() or any(out.glob(f"{CASE_PREFIX}-*"))):
        raise GliomagenError(f"--out {out}: already holds a cohort; choose an empty or new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise GliomagenError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return out


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
        cid: case id, e.g. ``SYN-00000``.
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
    index: int, seed: int, mix_seed: int | None, conditions: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``clinical.csv`` row of case ``index``: id, seed, mix seed (when mixing), conditions."""
    row: dict[str, Any] = {"case_id": case_id(index), "seed": seed}
    if mix_seed is not None:
        row["mix_seed"] = mix_seed
    return {**row, **conditions}


def write_clinical(out: Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> Path:
    """``clinical.csv``: one row per case, columns ``case_id, seed, [mix_seed,] *fields``.

    Args:
        out: cohort folder.
        rows: per case ``{"case_id", "seed", "mix_seed"?, field: raw value or None}``.
        fields: condition names in schema order.
    """
    head = (
        ["case_id", "seed"]
        + (["mix_seed"] if any("mix_seed" in r for r in rows) else [])
        + list(fields)
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
