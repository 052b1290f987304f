"""The conditioning schema: which labels a model is conditioned on, and how they are encoded.

A schema is a list of fields. A *categorical* field (cohort, grade, sex, hemisphere, ...) has a
fixed list of categories and is encoded as an integer index; a missing value is encoded as
``len(categories)`` (an extra "unknown" slot the embedding table also has). A *continuous* field
(age, tumour volume, ...) is standardised with the training split's mean and std; a missing value
becomes 0 (the mean).

The schema is saved in the store's meta JSON and in every checkpoint, so a model, its store and
the CLI's ``--condition name=value`` always agree. :func:`infer_kind` decides a label column's
kind from its values; building a schema from a cohort's labels is :mod:`gliomagen.data.labels`.

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

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
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
                out[f.name] = label_float(value, f.name)
        return out

    # -- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"fields": [asdict(f) for f in self.fields]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionSchema:
        return cls([ConditionField(**f) for f in data.get("fields", [])])


def label_float(value: Any, name: str) -> float:
    """``value`` as a finite float; a :class:`GliomagenError` naming label ``name`` otherwise."""
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
