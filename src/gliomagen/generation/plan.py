"""Which conditions each case of a cohort gets: one dict, a list of dicts, or a CSV of mixtures.

A *request* is a list of condition rows, each a ``{field: value}`` dict with an optional
``weight`` (default 1). The ``n`` cases are shared out in proportion to the weights with the
largest-remainder method, so the cohort holds exactly ``round``-consistent counts (70/30 of 100 is
70 and 30; ties go to the earlier row), and cases follow the row order (the first rows' cases
first). A CSV of ``n`` rows without a weight column therefore gives one case per row, in order.

A field a row does not set (absent, or an empty cell) is ``None`` in the plan: *unknown*, encoded
exactly like a training case without that label (:meth:`ConditionSchema.encode`): a categorical
field takes the model's 'unknown' slot, a continuous one the training mean. Generation then fills
it (``unset="drawn"``, the default of ``gliomagen generate``) from a training case drawn given the
fields the row sets (:func:`gliomagen.generation.fill.fill_unset`), so an LGG request gets an LGG
case's enhancing fraction, not the mean of all; with ``--unset unknown`` (or a checkpoint without
a table of training conditions) it stays unknown and is left empty in ``clinical.csv``.

CSV format (``--conditions-csv``): a header naming condition fields of the model and optionally
``weight``; e.g.::

    grade,cohort,weight
    HGG,GLI,0.7
    LGG,GLI,0.3
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.data.conditions import ConditionSchema, is_missing
from gliomagen.errors import GliomagenError

WEIGHT = "weight"


def _clean_row(
    schema: ConditionSchema, row: Mapping[str, Any], where: str
) -> tuple[dict[str, Any], float]:
    """Check one request row against the schema; return its raw values (None = unknown) and weight."""
    values: dict[str, Any] = {}
    weight = 1.0
    for key, value in row.items():
        name = str(key).strip()
        if name == WEIGHT:
            try:
                weight = float(value) if not is_missing(value) else 1.0
            except (TypeError, ValueError):
                raise GliomagenError(f"{where}: weight {value!r} is not a number") from None
            if not math.isfinite(weight) or weight < 0:
                raise GliomagenError(f"{where}: weight {value!r} must be a finite number >= 0")
            continue
        if name not in schema:
            known = ", ".join(schema.names) or "none"
            raise GliomagenError(
                f"{where}: condition {name!r} is not in the model; known conditions: {known}"
            )
        fld = schema[name]
        if is_missing(value):
            values[name] = None
            continue
        try:
            fld.encode(value)
        except GliomagenError as exc:
            raise GliomagenError(f"{where}: {exc}") from None
        values[name] = str(value).strip() if fld.kind == "categorical" else float(value)
    return {f: values.get(f) for f in schema.names}, weight


def split_assignments(items: Sequence[str], option: str = "--condition") -> dict[str, str]:
    """``["grade=HGG", "age=60"]`` -> ``{"grade": "HGG", "age": "60"}`` (checked later against a schema)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = (s.strip() for s in str(item).partition("="))
        if not sep or not name:
            raise GliomagenError(f"{option} {item!r}: expected name=value")
        if name in out:
            raise GliomagenError(f"{option} {name}: given twice")
        out[name] = value
    return out


def parse_condition_args(schema: ConditionSchema, items: Sequence[str]) -> dict[str, Any]:
    """``["grade=HGG", "age=60"]`` -> ``{"grade": "HGG", "age": 60.0}``, checked against the schema."""
    row = split_assignments(items, "--condition")
    values, _ = _clean_row(schema, row, "--condition")
    return {k: v for k, v in values.items() if k in row}


def read_conditions_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a conditions CSV as raw string dicts (checked by :func:`plan_conditions`)."""
    path = Path(path)
    if not path.is_file():
        raise GliomagenError(f"--conditions-csv {path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not any(f and f.strip() for f in reader.fieldnames):
                raise GliomagenError(f"--conditions-csv {path}: no header row")
            rows = []
            for i, r in enumerate(reader, start=2):
                if None in r:
                    raise GliomagenError(
                        f"--conditions-csv {path}: line {i} has more cells than the header"
                    )
                rows.append({k: v for k, v in r.items() if k is not None})
    except UnicodeDecodeError:
        raise GliomagenError(f"--conditions-csv {path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise GliomagenError(f"--conditions-csv {path}: not a valid CSV ({exc})") from None
    if not rows:
        raise GliomagenError(f"--conditions-csv {path}: no rows under the header")
    return rows


def allocate(weights: Sequence[float], n: int) -> list[int]:
    """Share ``n`` cases among rows in proportion to ``weights`` (largest remainder; ties to earlier rows)."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if total <= 0:
        raise GliomagenError("conditions: the weights add up to 0")
    quota = w / total * n
    counts = np.floor(quota).astype(np.int64)
    order = sorted(range(len(w)), key=lambda i: (-(quota[i] - counts[i]), i))
    for i in order[: n - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def plan_conditions(
    schema: ConditionSchema,
    n: int,
    conditions: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    conditions_csv: Path | None = None,
) -> list[dict[str, Any]]:
    """The raw conditions of each of the ``n`` cases (``None`` values are unset: unknown, or
    drawn later by :func:`gliomagen.generation.fill.fill_unset`).

    Args:
        schema: the model's condition schema.
        n: cohort size (> 0).
        conditions: one dict for every case, or a list of weighted rows (see module docstring).
        conditions_csv: a CSV of weighted rows; not together with a list of ``conditions``.

    Returns:
        ``n`` dicts ``{field: raw value or None}`` in schema field order.
    """
    if conditions_csv is not None:
        if conditions is not None and not isinstance(conditions, Mapping):
            raise GliomagenError("give either a list of conditions or --conditions-csv, not both")
        base = dict(conditions or {})
        raw = read_conditions_csv(Path(conditions_csv))
        overlap = sorted(set(base) & set(raw[0]))
        if overlap:
            raise GliomagenError(
                f"--condition {overlap[0]} is also a column of --conditions-csv {conditions_csv}"
            )
        rows = [{**base, **r} for r in raw]
        where = [f"--conditions-csv {conditions_csv}: line {i}" for i in range(2, len(rows) + 2)]
    elif conditions is None or isinstance(conditions, Mapping):
        rows = [dict(conditions or {})]
        where = ["--condition"]
    else:
        rows = [dict(r) for r in conditions]
        if not rows:
            raise GliomagenError("conditions: the list is empty")
        where = [f"conditions[{i}]" for i in range(len(rows))]
    cleaned = [_clean_row(schema, r, w) for r, w in zip(rows, where, strict=True)]
    counts = allocate([c[1] for c in cleaned], n)
    out: list[dict[str, Any]] = []
    for (values, _), k in zip(cleaned, counts, strict=True):
        out.extend(dict(values) for _ in range(k))
    return out


def encode_plan(
    schema: ConditionSchema, plan: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """``(cat [n, n_cat] int64, cont [n, n_cont] float32)`` of a plan (any field count, 0 included)."""
    pairs = [schema.encode(row) for row in plan]
    n_cat, n_cont = len(schema.categorical), len(schema.continuous)
    cat = np.array([p[0] for p in pairs], dtype=np.int64).reshape(len(pairs), n_cat)
    cont = np.array([p[1] for p in pairs], dtype=np.float32).reshape(len(pairs), n_cont)
    return cat, cont
