"""A cohort's labels -> a conditioning schema: label tables, label types, mask covariates.

Building a schema from data (``prepare``): :func:`read_label_table` reads a ``--labels`` CSV,
:func:`~gliomagen.data.conditions.infer_kind` decides a column's type (numbers are continuous,
0/1 flags and text are categorical; ``--label-type name=categorical|continuous|ignore``
overrides, see :func:`parse_label_types`), :func:`derive_covariates` measures the tumour mask
(whole-tumour volume in ml, enhancing fraction, hemisphere) and :func:`build_schema` puts it
together, with continuous statistics taken from the training split.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.data.conditions import (
    ConditionField,
    ConditionSchema,
    Kind,
    infer_kind,
    is_missing,
    label_float,
)
from gliomagen.errors import GliomagenError

LABEL_KINDS = ("categorical", "continuous", "ignore")
"""Values accepted by ``--label-type name=KIND``."""

FIXED_KINDS: dict[str, Kind] = {
    "cohort": "categorical",
    "grade": "categorical",
    "sex": "categorical",
    "hemisphere": "categorical",
    "wt_volume_ml": "continuous",
    "enhancing_fraction": "continuous",
    "view": "categorical",
    "position": "continuous",
}
"""Fields whose kind is known without looking at the values (``--label-type`` still overrides)."""

SLICE_CONDITIONS = ("view", "position")
"""Conditions every slice of a 2D slice store has (:mod:`gliomagen.data.slices`): its view
(axial, coronal, sagittal) and its position along the view's axis (0..1)."""

COVARIATES = ("wt_volume_ml", "enhancing_fraction", "hemisphere")
"""Covariates derived from a case's tumour mask by :func:`derive_covariates`."""


def parse_label_types(items: Iterable[str]) -> dict[str, str]:
    """Parse ``--label-type name=KIND`` options (KIND: categorical, continuous or ignore)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, kind = (s.strip() for s in item.partition("="))
        if not sep or not name or kind not in LABEL_KINDS:
            raise GliomagenError(
                f"--label-type {item!r}: expected name=categorical|continuous|ignore"
            )
        out[name] = kind
    return out


def read_label_table(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Read a ``--labels`` CSV: a ``case_id`` column and any label columns.

    Returns:
        ``(columns, rows)``: the label column names (without ``case_id``) in file order and the
        raw string values by case id.

    Raises:
        GliomagenError: unreadable file, no ``case_id`` column, empty or duplicate case ids.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [(h or "").strip() for h in (reader.fieldnames or [])]
            raw = list(reader)
    except FileNotFoundError:
        raise GliomagenError(f"--labels {path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GliomagenError(f"--labels {path}: cannot read the table ({exc})") from None
    if "case_id" not in header:
        raise GliomagenError(
            f"--labels {path}: no case_id column (columns: {', '.join(header) or 'none'})"
        )
    columns = [h for h in header if h and h != "case_id"]
    rows: dict[str, dict[str, str]] = {}
    for line, r in enumerate(raw, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in r.items() if k is not None}
        case_id = row.pop("case_id", "")
        if not case_id:
            raise GliomagenError(f"--labels {path}: line {line} has an empty case_id")
        if case_id in rows:
            raise GliomagenError(f"--labels {path}: case {case_id!r} appears twice (line {line})")
        rows[case_id] = {c: row.get(c, "") for c in columns}
    return columns, rows


def derive_covariates(mask: np.ndarray, affine: np.ndarray, midline_x: float) -> dict[str, Any]:
    """Covariates measured on a tumour mask.

    Args:
        mask: labels ``[X, Y, Z]`` in {0 background, 1 NCR, 2 ED, 3 ET}, any voxel order.
        affine: the mask's ``[4, 4]`` voxel -> world (RAS mm) matrix.
        midline_x: world x (mm) of the brain's mid-sagittal plane.

    Returns:
        ``wt_volume_ml`` (whole tumour, labels 1-3), ``enhancing_fraction`` (ET / WT, ``None`` if no
        tumour) and ``hemisphere``: ``left``/``right`` when >= 75% of the tumour lies on one side of
        the midline (world x < midline is the patient's left in RAS), ``bilateral`` otherwise,
        ``None`` if no tumour.

    Example:
        >>> m = np.zeros((10, 4, 4), np.uint8); m[1:3, :2, :2] = 2; m[1, 0, 0] = 3
        >>> derive_covariates(m, np.diag([2.0, 2.0, 2.0, 1.0]), midline_x=10.0)
        {'wt_volume_ml': 0.064, 'enhancing_fraction': 0.125, 'hemisphere': 'left'}
    """
    wt = mask > 0
    n_wt = int(wt.sum())
    voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
    if n_wt == 0:
        return {"wt_volume_ml": 0.0, "enhancing_fraction": None, "hemisphere": None}
    ijk = np.nonzero(wt)  # 3 x [n_wt]
    x = affine[0, 0] * ijk[0] + affine[0, 1] * ijk[1] + affine[0, 2] * ijk[2] + affine[0, 3]
    left = float((x < midline_x).mean())
    side = "left" if left >= 0.75 else ("right" if left <= 0.25 else "bilateral")
    return {
        "wt_volume_ml": round(n_wt * voxel_ml, 4),
        "enhancing_fraction": round(int((mask == 3).sum()) / n_wt, 4),
        "hemisphere": side,
    }


def build_schema(
    rows: Sequence[Mapping[str, Any]],
    sources: Mapping[str, str],
    *,
    kinds: Mapping[str, str] | None = None,
    train: Sequence[bool] | None = None,
) -> ConditionSchema:
    """Build a schema from the raw label values of every case.

    Args:
        rows: raw values per case (strings, numbers or missing).
        sources: field name -> source (``id``, ``folder``, ``labels-csv``, ``mask``...), in the
            order the fields should have. A field without any value is left out.
        kinds: overrides (``categorical``, ``continuous`` or ``ignore``) by field name.
        train: which rows belong to the training split (continuous mean/std come from those;
            from all rows when none has a value).

    Returns:
        The schema: categories sorted, continuous fields standardised.

    Raises:
        GliomagenError: an override names an unknown field, or a continuous value is not a number.
    """
    kinds = dict(kinds or {})
    unknown = sorted(set(kinds) - set(sources))
    if unknown:
        raise GliomagenError(
            f"--label-type {unknown[0]}: no such label (known: {', '.join(sources) or 'none'})"
        )
    in_train = list(train) if train is not None else [True] * len(rows)
    fields: list[ConditionField] = []
    for name, source in sources.items():
        values = [r.get(name) for r in rows]
        present = [v for v in values if not is_missing(v)]
        kind = kinds.get(name) or FIXED_KINDS.get(name) or infer_kind(present)
        if kind == "ignore" or not present:
            continue
        if kind == "categorical":
            cats = sorted({str(v).strip() for v in present}, key=_category_key)
            fields.append(ConditionField(name, "categorical", categories=cats, source=source))
            continue
        nums = [label_float(v, name) for v in present]
        train_nums = [
            label_float(v, name)
            for v, t in zip(values, in_train, strict=True)
            if t and not is_missing(v)
        ]
        ref = np.asarray(train_nums or nums, dtype=np.float64)
        fields.append(
            ConditionField(
                name, "continuous", mean=float(ref.mean()), std=float(ref.std()), source=source
            )
        )
    return ConditionSchema(fields)


def _category_key(value: str) -> tuple[int, float, str]:
    """Sort numbers numerically and before text, text alphabetically."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)
