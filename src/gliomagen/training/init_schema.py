"""Matching a parent checkpoint's conditions with a new store's, by name (``train --init``).

A run that starts from another run's weights keeps what both schemas know and says what it does
with the rest (:func:`match_schemas`):

- a categorical field both have keeps the parent's row of every category both know; a category
  only the new store has starts from the parent's row of a named category
  (``--init-map cohort=SSA:GLI``, :func:`parse_init_map`) or from the mean of the parent's rows;
  the 'unknown' slot is the parent's; a category only the parent has is dropped;
- a continuous field both have keeps its weights, re-expressed in the new store's
  standardisation (``x_parent = scale * x_new + shift``), so a raw value means what it meant;
- a field only the new store has is new (its weights start so that it changes nothing at first);
- a field only the parent has is dropped.

The field order of each kind follows each schema (a field's index among the categorical or the
continuous fields is the index of its embedding table, or of its weight column).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.errors import GliomagenError


@dataclass
class FieldMatch:
    """How one field of the new schema takes the parent's weights.

    Attributes:
        name: the field.
        parent_index: its index among the parent's fields of its kind; ``None`` for a new field.
        sources: categorical: per category of the new schema (the 'unknown' slot not included),
            the parent's code whose rows it takes, ``None`` for the mean of the parent's rows.
        scale, shift: continuous: ``x_parent = scale * x_new + shift`` (the standardisations).
    """

    name: str
    parent_index: int | None
    sources: list[int | None] = field(default_factory=list)
    scale: float = 1.0
    shift: float = 0.0


@dataclass
class SchemaMatch:
    """The new schema's fields matched with the parent's (see the module docstring).

    Attributes:
        cat, cont: one :class:`FieldMatch` per categorical / continuous field of the new schema.
        parent_cat_sizes: the parent's known categories per categorical field (no unknown slot).
        parent_n_cont: the parent's number of continuous fields.
        dropped_cat, dropped_cont: indices of the parent's fields the new schema lacks.
        kept, new, dropped: ``field=category`` codes and continuous field names, for the record.
        mapped: ``{"field=new": "field=old"}`` of the categories started from a named one.
    """

    cat: list[FieldMatch]
    cont: list[FieldMatch]
    parent_cat_sizes: list[int]
    parent_n_cont: int
    dropped_cat: list[int] = field(default_factory=list)
    dropped_cont: list[int] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    mapped: dict[str, str] = field(default_factory=dict)


def parse_init_map(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """Parse ``--init-map FIELD=NEW:OLD`` strings into ``{field: {new: old}}``.

    Raises:
        GliomagenError: an item not of that form, or one category mapped twice.
    """
    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, eq, pair = item.partition("=")
        new, colon, old = pair.partition(":")
        name, new, old = name.strip(), new.strip(), old.strip()
        if not (eq and colon and name and new and old):
            raise GliomagenError(
                f"--init-map {item!r}: expected FIELD=NEW:OLD, e.g. cohort=SSA:GLI"
            )
        if new in out.setdefault(name, {}):
            raise GliomagenError(f"--init-map {item!r}: {name}={new} is mapped twice")
        out[name][new] = old
    return out


def match_schemas(
    parent: ConditionSchema,
    schema: ConditionSchema,
    init_map: Mapping[str, Mapping[str, str]] | None = None,
) -> SchemaMatch:
    """Match ``schema`` (the new store's) with ``parent`` (the checkpoint's) field by field.

    Args:
        parent: the parent checkpoint's schema.
        schema: the new run's schema.
        init_map: ``{field: {new category: parent category}}`` (:func:`parse_init_map`).

    Raises:
        GliomagenError: a field whose kind differs, or an ``init_map`` naming a field or
            category that is not there (or a category the parent already knows).
    """
    _check_map(parent, schema, init_map or {})
    p_cat = [f.name for f in parent.categorical]
    p_cont = [f.name for f in parent.continuous]
    for f in schema.fields:
        if f.name in parent and parent[f.name].kind != f.kind:
            raise GliomagenError(
                f"--init: condition {f.name!r} is {parent[f.name].kind} in the parent and "
                f"{f.kind} in the store; the weights cannot carry over"
            )
    m = SchemaMatch(
        cat=[],
        cont=[],
        parent_cat_sizes=[len(f.categories) for f in parent.categorical],
        parent_n_cont=len(p_cont),
        dropped_cat=[i for i, n in enumerate(p_cat) if n not in schema],
        dropped_cont=[i for i, n in enumerate(p_cont) if n not in schema],
    )
    m.dropped = [parent.categorical[i].name for i in m.dropped_cat]
    m.dropped += [parent.continuous[i].name for i in m.dropped_cont]
    for f in schema.categorical:
        if f.name not in parent:
            m.cat.append(FieldMatch(f.name, None))
            m.new.append(f.name)
        else:
            wanted = (init_map or {}).get(f.name, {})
            _match_categories(m, f, parent[f.name], p_cat.index(f.name), wanted)
    for f in schema.continuous:
        if f.name not in parent:
            m.cont.append(FieldMatch(f.name, None))
            m.new.append(f.name)
            continue
        was = parent[f.name]
        scale, shift = f.std / was.std, (f.mean - was.mean) / was.std
        m.cont.append(FieldMatch(f.name, p_cont.index(f.name), scale=scale, shift=shift))
        m.kept.append(f.name)
    return m


def _match_categories(
    m: SchemaMatch, f: ConditionField, was: ConditionField, index: int, wanted: Mapping[str, str]
) -> None:
    """Add categorical field ``f`` (the parent's ``was``, its ``index``-th) to ``m``: each
    category's source row, and the kept, new, mapped and dropped codes."""
    old = was.categories
    sources: list[int | None] = []
    for c in f.categories:
        code = f"{f.name}={c}"
        if c in old:
            sources.append(old.index(c))
            m.kept.append(code)
        else:
            sources.append(old.index(wanted[c]) if c in wanted else None)
            m.new.append(code)
            if c in wanted:
                m.mapped[code] = f"{f.name}={wanted[c]}"
    m.dropped += [f"{f.name}={c}" for c in old if c not in f.categories]
    m.cat.append(FieldMatch(f.name, index, sources))


def _check_map(
    parent: ConditionSchema, schema: ConditionSchema, init_map: Mapping[str, Mapping[str, str]]
) -> None:
    """Every ``init_map`` entry names a categorical field of both schemas, a category only the
    new store has, and a category of the parent."""
    for name, pairs in init_map.items():
        for new, old in pairs.items():
            item = f"--init-map {name}={new}:{old}"
            for side, sch in (("the store", schema), ("the parent", parent)):
                if name not in sch or sch[name].kind != "categorical":
                    cats = ", ".join(f.name for f in sch.categorical) or "none"
                    raise GliomagenError(
                        f"{item}: {side} has no categorical condition {name!r} (it has: {cats})"
                    )
            if new not in schema[name].categories:
                raise GliomagenError(
                    f"{item}: {new!r} is not a category of {name} in the store "
                    f"({', '.join(schema[name].categories)})"
                )
            if new in parent[name].categories:
                raise GliomagenError(
                    f"{item}: the parent already knows {name}={new}; only a new category is mapped"
                )
            if old not in parent[name].categories:
                raise GliomagenError(
                    f"{item}: the parent has no {name}={old} "
                    f"(it knows {', '.join(parent[name].categories)})"
                )


__all__ = ["FieldMatch", "SchemaMatch", "match_schemas", "parse_init_map"]
