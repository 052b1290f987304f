"""A store's tables: the per-case label rows, ``index.csv``, ``skipped.csv`` and ``meta.json``'s content.

``index.csv`` has one row per stored case (its split, labels, covariates, source files, intensity
record and geometry); ``meta.json`` describes the whole store (see :mod:`gliomagen.data.store`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen import MODALITIES, __version__
from gliomagen.data.conditions import ConditionSchema
from gliomagen.data.geometry import template_geometry
from gliomagen.data.labels import COVARIATES
from gliomagen.data.layouts import CaseRecord
from gliomagen.data.preprocess import PERCENTILES, PreparedCase
from gliomagen.data.store_format import FORMAT_VERSION, SPLITS

Kept = list[tuple[CaseRecord, PreparedCase]]
"""The stored cases, in store order, with their prepared (small) parts."""


def label_rows(
    kept: Kept, label_cols: list[str], label_rows: dict[str, dict[str, str]]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Raw label values per case and the source of each label field (in schema order)."""
    sources: dict[str, str] = {"cohort": "id", "grade": "folder"}
    for record, _ in kept:
        for col in record.labels:
            sources.setdefault(col, "manifest")
    for col in label_cols:
        sources[col] = "labels-csv"
    for cov in COVARIATES:
        sources.setdefault(cov, "mask")
    rows = []
    for record, prepared in kept:
        row: dict[str, Any] = {"cohort": record.cohort, "grade": record.grade, **record.labels}
        row.update(prepared.covariates)
        row.update({k: v for k, v in label_rows.get(record.case_id, {}).items() if v != ""})
        row["has_mask"] = record.seg is not None
        rows.append(row)
    return rows, sources


def split_keys(rows: list[dict[str, Any]], label_cols: list[str]) -> list[str]:
    """The strata of the split: cohort, grade, mask presence and the ``--labels`` columns."""
    return [
        "|".join(str(r.get(k) or "") for k in ("cohort", "grade", "has_mask", *label_cols))
        for r in rows
    ]


def write_index(
    path: Path, kept: Kept, rows: list[dict[str, Any]], splits: list[str], fields: list[str]
) -> None:
    """Write ``index.csv``: one row per stored case."""
    header = ["case_id", "split", "has_mask", *[f for f in fields if f not in ("case_id", "split", "has_mask")],
              "layout", *[f"{m}_path" for m in MODALITIES], "seg_path", "intensity", "geometry"]  # fmt: skip
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for (record, prepared), row, split in zip(kept, rows, splits, strict=True):
            line = {f: "" if row.get(f) is None else row[f] for f in fields}
            line.update(
                case_id=record.case_id,
                split=split,
                has_mask=int(bool(row["has_mask"])),
                layout=record.layout,
            )
            line.update({f"{m}_path": str(record.images[m].resolve()) for m in MODALITIES})
            line["seg_path"] = str(record.seg.resolve()) if record.seg is not None else ""
            line["intensity"] = json.dumps(prepared.intensity, separators=(",", ":"))
            line["geometry"] = json.dumps(prepared.geometry, separators=(",", ":"))
            writer.writerow(line)


def write_skipped(path: Path, skipped: Sequence[tuple[str, str]]) -> None:
    """Write ``skipped.csv``: the cases left out and why."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("case_id", "problem"), *skipped])


def store_meta(
    kept: Kept,
    rows: list[dict[str, Any]],
    splits: list[str],
    skipped: Sequence[tuple[str, str]],
    schema: ConditionSchema,
    size: tuple[int, int, int],
    train_int: list[dict[str, dict[str, Any]]],
    prep_meta: dict[str, Any],
) -> dict[str, Any]:
    """The content of ``meta.json`` (before the build adds its fingerprint and options).

    Args:
        train_int: the intensity records of the training cases (for the reference range).
        prep_meta: the intensity options and what they learnt, merged into ``preprocessing``.
    """
    geometries = [p.geometry for _, p in kept]
    return {
        "format_version": FORMAT_VERSION,
        "size": list(size),
        "modalities": list(MODALITIES),
        "schema": schema.to_dict(),
        "spacing_mm": [float(np.median([g["spacing_mm"] for g in geometries]))] * 3,
        "canonical_orientation": "RAS",
        "template_geometry": template_geometry(geometries),
        "preprocessing": {
            "percentiles": list(PERCENTILES),
            "intensity_range": [-1.0, 1.0],
            "background": -1.0,
            "brain": "voxels differing from the border background in any modality, plus the tumour",
            "crop": "brain bounding box, padded symmetrically to the grid's aspect ratio",
            "resampling": {"images": "linear", "masks": "nearest"},
            "label_map": {
                "2021": {"0": 0, "1": 1, "2": 2, "4": 3},
                "2023": {"0": 0, "1": 1, "2": 2, "3": 3},
            },
            "reference_range": {
                m: [
                    float(np.median([i[m]["p_lo"] for i in train_int])),
                    float(np.median([i[m]["p_hi"] for i in train_int])),
                ]
                for m in MODALITIES
            },
            **prep_meta,
        },
        "sources": {r.case_id: p.checksums for r, p in kept},
        "splits": {s: splits.count(s) for s in SPLITS},
        "n_cases": len(kept),
        "n_with_mask": int(sum(r["has_mask"] for r in rows)),
        "skipped": [{"case_id": c, "problem": p} for c, p in skipped],
        "gliomagen_version": __version__,
    }
