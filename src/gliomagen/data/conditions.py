"""The conditioning schema: which labels a model is conditioned on, and how they are encoded.

A schema is a list of fields. A *categorical* field (cohort, grade, sex, hemisphere, ...) has a
fixed list of categories and is encoded as an integer index; a missing value is encoded as
``len(categories)`` (an extra "unknown" slot the embedding table also has). A *continuous* field
(age, tumour volume, ...) is standardised with the training split's mean and std; a missing value
becomes 0 (the mean).

The schema is saved in the store's meta JSON and in every checkpoint, so a model, its store and
the CLI's ``--condition name=value`` always agree.

Building a schema from data (``prepare``): :func:`read_label_table` reads a ``--labels`` CSV,
:func:`infer_kind` decides a column's type (numbers are continuous, 0/1 flags and text are
categorical; ``--label-type name=categorical|continuous|ignore`` overrides, see
:func:`parse_label_types`), :func:`derive_covariates` measures the tumour mask (whole-tumour
volume in ml, enhancing fraction, hemisphere) and :func:`build_schema` puts it together, with
continuous statistics taken from the training split.

Example:
    >>> schema = ConditionSchema([
    ...     ConditionField("cohort", "categorical", categories=["GLI", "SSA"]),
    ...     ConditionField("age", "continuous", mean=55.0, std=10.0),
    ... ])
    >>> cat, cont = schema.encode({"cohort": "SSA", "age": 65})
    >>> cat.tolist(), cont.tolist()
    ([1], [1.0])
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gliomagen.errors import GliomagenError

Kind = Literal["categorical", "continuous"]


def is_missing(value: Any) -> bool:
    """True for None, NaN and the empty/NA strings a CSV uses for a missing label."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() in ("", "nan", "NaN", "NA", "None")


@dataclass
class ConditionField:
    """One conditioning label.

    Args:
        name: column name (``cohort``, ``grade``, ``age``, ...).
        kind: ``categorical`` or ``continuous``.
        categories: the sorted category names of a categorical field.
        mean: training mean of a continuous field.
        std: training std of a continuous field (>0).
        source: where the field comes from (``id``, ``folder``, ``labels-csv``, ``mask``, ``view``...).
    """

    name: str
    kind: Kind
    categories: list[str] = field(default_factory=list)
    mean: float = 0.0
    std: float = 1.0
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("categorical", "continuous"):
            raise GliomagenError(
                f"condition {self.name!r}: kind must be categorical or continuous, got {self.kind!r}"
            )
        if self.kind == "categorical":
            self.categories = [str(c) for c in self.categories]
        if not self.std or not math.isfinite(self.std) or self.std <= 0:
            self.std = 1.0

    @property
    def num_embeddings(self) -> int:
        """Embedding table size of a categorical field: the categories plus one 'unknown' slot."""
        return len(self.categories) + 1

    def encode(self, value: Any) -> float | int:
        """Encode one raw value; raises GliomagenError for a category the schema does not know."""
        if self.kind == "categorical":
            if is_missing(value):
                return len(self.categories)
            key = str(value).strip()
            if key not in self.categories:
                raise GliomagenError(
                    f"condition {self.name}={key!r} is not in the model; known values: {', '.join(self.categories)}"
                )
            return self.categories.index(key)
        if is_missing(value):
            return 0.0
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise GliomagenError(f"condition {self.name}={value!r} is not a number") from None
        if not math.isfinite(x):
            raise GliomagenError(f"condition {self.name}={value!r} is not finite")
        return (x - self.mean) / self.std

    def decode(self, code: float | int) -> Any:
        """Inverse of :meth:`encode` (``None`` for the unknown slot)."""
        if self.kind == "categorical":
            i = int(code)
            return self.categories[i] if 0 <= i < len(self.categories) else None
        return float(code) * self.std + self.mean


@dataclass
class ConditionSchema:
    """An ordered list of :class:`ConditionField`; categorical and continuous are encoded apart."""

    fields: list[ConditionField] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise GliomagenError(f"condition schema: duplicate field names {dup}")

    # -- views ------------------------------------------------------------------------------
    @property
    def categorical(self) -> list[ConditionField]:
        return [f for f in self.fields if f.kind == "categorical"]

    @property
    def continuous(self) -> list[ConditionField]:
        return [f for f in self.fields if f.kind == "continuous"]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def __getitem__(self, name: str) -> ConditionField:
        for f in self.fields:
            if f.name == name:
                return f
        raise GliomagenError(
            f"condition {name!r} is not in the model; known conditions: {', '.join(self.names) or 'none'}"
        )

    def __contains__(self, name: object) -> bool:
        return any(f.name == name for f in self.fields)

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, values: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Encode one case's raw labels.

        Args:
            values: raw values by field name; absent or empty values count as missing (a missing
                value of a field the schema does not have is ignored).

        Returns:
            ``(cat [n_cat] int64, cont [n_cont] float32)``.
        """
        unknown = [k for k in values if k not in self and not is_missing(values[k])]
        if unknown:
            raise GliomagenError(
                f"condition {unknown[0]!r} is not in the model; known conditions: {', '.join(self.names) or 'none'}"
            )
        cat = np.array([f.encode(values.get(f.name)) for f in self.categorical], dtype=np.int64)
        cont = np.array([f.encode(values.get(f.name)) for f in self.continuous], dtype=np.float32)
        return cat, cont

    def encode_many(self, rows: Iterable[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Encode several cases: ``(cat [N, n_cat] int64, cont [N, n_cont] float32)``."""
        pairs = [self.encode(r) for r in rows]
        n_cat, n_cont = len(self.categorical), len(self.continuous)
        cat = np.zeros((len(pairs), n_cat), np.int64)
        cont = np.zeros((len(pairs), n_cont), np.float32)
        for i, (c, x) in enumerate(pairs):
            cat[i], cont[i] = c, x
        return cat, cont

    def decode(self, cat: np.ndarray, cont: np.ndarray) -> dict[str, Any]:
        """Inverse of :meth:`encode` for one case."""
        out: dict[str, Any] = {}
        for f, c in zip(self.categorical, np.asarray(cat).tolist(), strict=True):
            out[f.name] = f.decode(c)
        for f, c in zip(self.continuous, np.asarray(cont).tolist(), strict=True):
            out[f.name] = f.decode(c)
        return out

    def parse_assignments(self, items: Iterable[str]) -> dict[str, Any]:
        """Parse CLI ``name=value`` strings, checking names and categories against the schema."""
        out: dict[str, Any] = {}
        for item in items:
            if "=" not in item:
                raise GliomagenError(f"--condition {item!r}: expected name=value")
            name, value = (s.strip() for s in item.split("=", 1))
            fld = self[name]
            fld.encode(value)  # validates
            out[name] = value if fld.kind == "categorical" else float(value)
        return out

    def normalise(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Raw values of this schema's fields only: categorical -> ``str``, continuous -> ``float``,
        missing -> ``None``. The result is accepted by :meth:`encode`."""
        out: dict[str, Any] = {}
        for f in self.fields:
            value = values.get(f.name)
            if is_missing(value):
                out[f.name] = None
            elif f.kind == "categorical":
                out[f.name] = str(value).strip()
            else:
                out[f.name] = _to_float(value, f.name)
        return out

    # -- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"fields": [asdict(f) for f in self.fields]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionSchema:
        return cls([ConditionField(**f) for f in data.get("fields", [])])


# -- building a schema from data ----------------------------------------------------------------
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


def _to_float(value: Any, name: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise GliomagenError(
            f"label {name}={value!r} is not a number (use --label-type {name}=categorical)"
        ) from None
    if not math.isfinite(x):
        raise GliomagenError(f"label {name}={value!r} is not finite")
    return x


def infer_kind(values: Iterable[Any]) -> Kind:
    """Guess a label column's kind from its non-missing values.

    Numbers are ``continuous``, except 0/1 flags; anything else is ``categorical``.

    Example:
        >>> infer_kind(["61", "45.5", ""]), infer_kind(["0", "1", "1"]), infer_kind(["HGG", "LGG"])
        ('continuous', 'categorical', 'categorical')
    """
    numbers: set[float] = set()
    for v in values:
        if is_missing(v):
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            return "categorical"
        if not math.isfinite(x):
            return "categorical"
        numbers.add(x)
    if not numbers or numbers <= {0.0, 1.0}:
        return "categorical"
    return "continuous"


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
        nums = [_to_float(v, name) for v in present]
        train_nums = [
            _to_float(v, name)
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
