"""A cohort's labels -> a conditioning schema: label tables, label types, mask covariates.

Building a schema from data (``prepare``): :func:`read_label_table` reads a ``--labels`` CSV,
:func:`~gliomagen.data.conditions.infer_kind` decides a column's type (numbers are continuous,
0/1 flags and text are categorical; ``--label-type name=categorical|continuous|ignore``
overrides, see :func:`parse_label_types`), :func:`derive_covariates` measures the tumour mask
(whole-tumour volume in ml, enhancing fraction, hemisphere) and :func:`build_schema` puts it
together, with continuous statistics taken from the training split. Doubtful label tables are
reported as warnings (:func:`~gliomagen.data.tables.warn`): a table without rows, a column
without values, a numeric column read as categorical because of a few values such as ``55y``,
``n/a`` or ``inf``. :func:`label_usage` records what decided each label's kind, for ``inspect``.
"""

from __future__ import annotations

import math
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
from gliomagen.data.tables import read_table, warn
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

TABLE_SOURCES = ("labels-csv", "manifest")
"""Sources of labels typed in by people (a ``--labels`` table, a manifest's extra columns): their
doubtful values are reported with a warning."""

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
        raw string values by case id. A table without rows is returned empty, with a warning.

    Raises:
        GliomagenError: unreadable file, no ``case_id`` column, a column named twice, a row with
            more or fewer fields than the header, empty or duplicate case ids (naming the line).
    """
    header, raw = read_table(path, what="--labels", required=("case_id",))
    columns = [h for h in header if h and h != "case_id"]
    if not raw:
        warn(f"--labels {path}: the table has a header but no rows; it gives no labels")
    rows: dict[str, dict[str, str]] = {}
    for line, row in raw:
        case_id = row.pop("case_id")
        if not case_id:
            raise GliomagenError(f"--labels {path}: line {line} has an empty case_id")
        if case_id in rows:
            raise GliomagenError(f"--labels {path}: case {case_id!r} appears twice (line {line})")
        rows[case_id] = row
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
        if source in TABLE_SOURCES and name not in kinds and name not in FIXED_KINDS:
            _warn_doubtful(name, source, present, kind)
        if kind == "ignore" or not present:
            continue
        if kind == "categorical":
            cats = sorted({str(v).strip() for v in present}, key=_category_key)
            fields.append(ConditionField(name, "categorical", categories=cats, source=source))
            continue
        nums = [label_float(v, name) for v in present]  # every value must be a number
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


def _warn_doubtful(name: str, source: str, present: list[Any], kind: str) -> None:
    """Warn about a table column left out for want of values, or read as categorical because a
    few of its values are not numbers (``55y``, ``n/a``, ``inf``), naming up to five of them."""
    if not present:
        warn(f"label {name} ({source}): no case has a value; it is left out of the conditions")
        return
    if kind != "categorical":
        return
    odd = sorted({str(v).strip() for v in present if not _is_number(v)})
    if odd and any(_is_number(v) for v in present):
        shown = ", ".join(repr(v) for v in odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
        n_cats = len({str(v).strip() for v in present})
        warn(
            f"label {name} ({source}): {len(odd)} value(s) are not numbers ({shown}), so {name} is "
            f"read as categorical with {n_cats} categories; if it is a number, correct those values "
            "or leave them empty (unknown)"
        )


def _is_number(value: Any) -> bool:
    """Whether a label value reads as a finite number."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def label_usage(
    sources: Mapping[str, str], kinds: Mapping[str, str], schema: ConditionSchema
) -> dict[str, dict[str, str]]:
    """How each label was used, as recorded in ``meta.json`` (``labels``) and shown by ``inspect``.

    Returns:
        name -> ``{"source": ..., "kind": categorical | continuous | left out, "by": ...}``, where
        ``by`` says what decided: ``fixed`` (a known label), ``--label-type``, ``values`` (inferred
        from the values), or for a label left out ``--label-type ignore`` or ``no values``.
    """
    out: dict[str, dict[str, str]] = {}
    for name, source in sources.items():
        by = "--label-type" if name in kinds else ("fixed" if name in FIXED_KINDS else "values")
        if name in schema:
            out[name] = {"source": source, "kind": schema[name].kind, "by": by}
        else:
            reason = "--label-type ignore" if kinds.get(name) == "ignore" else "no values"
            out[name] = {"source": source, "kind": "left out", "by": reason}
    return out


def _category_key(value: str) -> tuple[int, float, str]:
    """Sort numbers numerically and before text, text alphabetically."""
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)
