"""Conditions a request leaves unset, drawn from the training cases given the ones it sets.

A model conditioned on several labels (cohort, grade, age, sex, wt_volume_ml,
enhancing_fraction, hemisphere) learnt them together: an LGG case has a small enhancing fraction,
an HGG case a large one. A request such as ``grade=LGG`` sets one of them; if the others stayed
*unknown* (the model's 'unknown' slot, the training mean of a continuous field) the model would
be asked for an LGG case with the average, HGG-like, enhancing fraction. So (``unset="drawn"``, the
default) each case takes the fields its row leaves unset from one training case, its *donor*,
drawn with the weights of :func:`gliomagen.models.case_table.donor_log_weights` given the fields
the row sets: the unset fields follow the training cases' joint distribution given the set ones.

- The donor is drawn from a generator seeded with the case seed alone (stream
  :data:`DONOR_STREAM` of ``numpy.random.default_rng([seed, stream])``), so ``--seeds 17``
  reproduces case 17 of a cohort exactly, and the same seed and conditions give the same files.
- A field the request sets is never changed. A donor without a value for a field (a training case
  without that label: the unknown slot, or a continuous code of exactly 0, which is how a missing
  number was encoded) leaves the field unknown, as that training case was seen in training.
- A drawn number is written as its value in the field's units (``ConditionField.decode``), rounded
  to 1e-5 training standard deviations and to the 6 significant digits ``clinical.csv`` shows, and
  the model is given exactly that value: ``clinical.csv`` says what each case was generated with.
- ``unset="blended"`` (``gliomagen generate --unset blended``): each drawn number lies between the
  donor's and a second training case's drawn with the same weights (:func:`draw_partners`), so
  ``clinical.csv`` repeats no training patient's numbers (with ``drawn`` every row is one
  patient's); categories stay the donor's.
- A model without a table of training conditions (trained before it existed) leaves the unset
  fields unknown, as ``unset="unknown"`` does; the manifest says which happened
  (:meth:`FilledPlan.record`), and ``gliomagen generate`` says so after writing (not on stderr,
  which holds warnings and errors only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.errors import GliomagenError
from gliomagen.models.case_table import BANDWIDTH, MISMATCH_LOG, donor_log_weights

UNSET_MODES = ("drawn", "blended", "unknown")
"""``drawn``: unset fields from a training case given the set ones; ``blended``: the same, each
number between two such cases (no row repeats a training case's numbers); ``unknown``: left
unknown."""

BLEND_STREAM = 4
"""Stream of a case seed that draws its second donor and the blend (``unset="blended"``)."""

DONOR_STREAM = 3
"""Stream of a case seed that draws its donor (``z`` is drawn by torch; a 2D slice's position
uses stream 2, :func:`gliomagen.generation.slices2d.plan_slices`)."""

METHOD = "training cases given the set conditions"
BLENDED = "; numbers blended between two such cases (c1 + u (c2 - c1), u ~ U(0, 1))"
NO_TABLE = "unknown (the checkpoint holds no table of training conditions)"
NOT_DRAWN = "unknown (unset=unknown: as requested)"


@dataclass(frozen=True)
class CaseTable:
    """A model's table of training conditions (see :mod:`gliomagen.models.case_table`).

    Attributes:
        cat: ``[n, n_cat]`` the training cases' category codes (CPU, int64).
        cont: ``[n, n_cont]`` their standardised values (CPU, float32).
        unknown: the 'unknown' code of each categorical field.
    """

    cat: torch.Tensor
    cont: torch.Tensor
    unknown: list[int]


@dataclass
class FilledPlan:
    """A plan with its unset fields filled, and how.

    Attributes:
        plan: per case ``{field: raw value or None}``: the request, unset fields from the donor.
        drawn: per case the fields that took the donor's value.
        left_unknown: per case the unset fields that stay unknown (the donor had no value, or
            nothing was drawn).
        donors: per case the donor's row in the model's table (``None``: none drawn).
        mode: ``drawn``, or why the unset fields stay unknown (:data:`NO_TABLE`, :data:`NOT_DRAWN`).
        set_fields: the fields some row of the request sets, in schema order.
        blended: whether the drawn numbers were blended (``unset="blended"``).
        partners: per case the second donor's row and the blend ``u`` (``None``: not blended).
        unset_fields: the fields some row leaves unset, in schema order.
    """

    plan: list[dict[str, Any]]
    drawn: list[list[str]]
    left_unknown: list[list[str]]
    donors: list[int | None]
    mode: str
    set_fields: list[str] = field(default_factory=list)
    unset_fields: list[str] = field(default_factory=list)
    blended: bool = False
    partners: list[tuple[int, float] | None] = field(default_factory=list)

    def record(self, case_ids: Sequence[str]) -> dict[str, Any] | str:
        """The manifest's ``conditions_drawn``: the method, the fields and, per case id, the
        donor and which fields it gave; or the line saying why the unset fields stay unknown."""
        if self.mode != "drawn":
            return self.mode
        partners = self.partners or [None] * len(self.donors)
        cases = {
            cid: {"donor": d, "drawn": dr, "unknown": un}
            | ({"partner": pa[0], "blend": pa[1]} if pa is not None else {})
            for cid, d, dr, un, pa in zip(
                case_ids, self.donors, self.drawn, self.left_unknown, partners, strict=True
            )
        }
        return {
            "method": METHOD + (BLENDED if self.blended else ""),
            "fields": self.unset_fields,
            "set": self.set_fields,
            "kernel": {"bandwidth_sd": BANDWIDTH, "category_mismatch_log": MISMATCH_LOG},
            "cases": cases,
        }


def check_unset(unset: str) -> str:
    """``unset`` when it is one of :data:`UNSET_MODES`; a one-line GliomagenError otherwise."""
    if unset not in UNSET_MODES:
        raise GliomagenError(f"--unset {unset!r}: must be one of {', '.join(UNSET_MODES)}")
    return unset


def case_table(G: Any, schema: ConditionSchema) -> CaseTable | None:
    """The table of training conditions of generator ``G`` (``None``: the checkpoint has none).

    Raises:
        GliomagenError: the table does not fit the schema (not the same fields).
    """
    table = G.mapping.training_conditions()
    if table is None:
        return None
    cat, cont = (t.detach().cpu() for t in table)
    unknown = [int(u) for u in G.mapping.unknown_codes]
    expected = [len(f.categories) for f in schema.categorical]
    if unknown != expected or cont.shape[1] != len(schema.continuous):
        raise GliomagenError(
            "checkpoint: its table of training conditions does not fit its condition schema "
            f"(category counts {unknown} for {expected}, {cont.shape[1]} numbers for "
            f"{len(schema.continuous)})"
        )
    return CaseTable(cat.long(), cont.float(), unknown)


def donor_rng(seed: int) -> np.random.Generator:
    """The generator that draws the donor of the case of ``seed`` (depends on the seed alone)."""
    return np.random.default_rng([int(seed) % (2**63), DONOR_STREAM])


def donor_numbers(
    cat: np.ndarray,
    cont: np.ndarray,
    cont_set: np.ndarray,
    table: CaseTable,
    seeds: Sequence[int],
    blended: bool = False,
) -> tuple[list[int], list[list[float]], list[tuple[int, float] | None]]:
    """Per request row a donor row of ``table``, drawn with the weights given the set fields, and
    the donor's standardised numbers, each blended with a second donor's when ``blended``
    (:func:`draw_partners`, :func:`blend_numbers`).

    Args:
        cat: ``[N, n_cat]`` requested codes (the unknown code = unset).
        cont: ``[N, n_cont]`` requested standardised values.
        cont_set: ``[N, n_cont]`` bool, which of them are set.
        table: the training cases.
        seeds: one case seed per row (its generators: :func:`donor_rng`, :data:`BLEND_STREAM`).
        blended: blend each row's numbers with a second donor's.

    Returns:
        The ``N`` donor rows, their numbers (``N`` lists of ``n_cont``) and per row the second
        donor and its blend ``u`` (``None`` when not blended).
    """
    probs = _donor_probs(cat, cont, cont_set, table)  # the weights serve the partners too
    donors = [int(donor_rng(s).choice(len(p), p=p)) for p, s in zip(probs, seeds, strict=True)]
    partners: list[tuple[int, float] | None] = [None] * len(donors)
    if blended:
        partners = list(draw_partners(probs, seeds, donors))
    nums = [
        table.cont[d].tolist()
        if pa is None
        else blend_numbers(table.cont[d].tolist(), table.cont[pa[0]].tolist(), pa[1])
        for d, pa in zip(donors, partners, strict=True)
    ]
    return donors, nums, partners


def blend_numbers(first: Sequence[float], second: Sequence[float], u: float) -> list[float]:
    """``a + u (b - a)`` per standardised number; a number either case lacks (code 0, the
    missing value's) keeps the first case's."""
    return [
        a if a == 0.0 or b == 0.0 else a + u * (b - a) for a, b in zip(first, second, strict=True)
    ]


def draw_partners(
    probs: Sequence[np.ndarray], seeds: Sequence[int], donors: Sequence[int]
) -> list[tuple[int, float]]:
    """Per request row a second donor, other than its first (``donors``), drawn with the row's
    donor probabilities (``probs``, as :func:`donor_numbers` uses them) among the rest (the first
    again only when no other case has weight), and a blend ``u ~ U(0, 1)`` (generator: stream
    :data:`BLEND_STREAM` of the case seed)."""
    out = []
    for p, seed, d in zip(probs, seeds, donors, strict=True):
        rng = np.random.default_rng([int(seed) % (2**63), BLEND_STREAM])
        rest = p.copy()
        rest[d] = 0.0
        if rest.sum() > 1e-12:
            p = rest / rest.sum()
        out.append((int(rng.choice(len(p), p=p)), float(rng.uniform())))
    return out


def _donor_probs(
    cat: np.ndarray, cont: np.ndarray, cont_set: np.ndarray, table: CaseTable
) -> list[np.ndarray]:
    """Per request row the donor probabilities over the table's rows (computed once per distinct
    row: the same weights whatever else is requested)."""
    probs: dict[bytes, np.ndarray] = {}
    out = []
    for i in range(len(cat)):
        key = cat[i].tobytes() + cont[i].tobytes() + cont_set[i].tobytes()
        if key not in probs:
            logw = donor_log_weights(
                torch.as_tensor(cat[i : i + 1]),
                torch.as_tensor(cont[i : i + 1]),
                table.cat,
                table.cont,
                table.unknown,
                torch.as_tensor(cont_set[i : i + 1]),
            )  # [1, n]
            p = logw[0].exp().numpy()
            probs[key] = p / p.sum()
        out.append(probs[key])
    return out


def donor_value(fld: ConditionField, code: float | int) -> Any:
    """A donor's code of ``fld`` as a raw value (``None``: the training case had no value)."""
    if fld.kind == "categorical":
        return fld.decode(int(code))
    if float(code) == 0.0:  # how a missing number was encoded (exactly the mean)
        return None
    raw = fld.decode(float(code))
    digits = 5 - math.floor(math.log10(fld.std))  # 1e-5 sd: drop the float32 code's noise
    return float(f"{round(raw, digits) + 0.0:.6g}")  # what clinical.csv shows, -0 made 0


def fill_unset(
    schema: ConditionSchema,
    plan: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    table: CaseTable | None,
    unset: str = "drawn",
) -> FilledPlan:
    """Fill each case's unset fields from a donor drawn given its set ones (module docstring).

    Args:
        schema: the model's condition schema.
        plan: per case ``{field: raw value or None}``
            (:func:`gliomagen.generation.plan.plan_conditions`).
        seeds: one seed per case.
        table: the model's training cases (:func:`case_table`), ``None`` when it has none.
        unset: ``drawn``, ``blended`` or ``unknown`` (leave unset fields unknown). ``blended``:
            each drawn number is the donor's blended with a second donor's (another training
            case, drawn with the same weights), ``c1 + u (c2 - c1)`` in standardised codes, ``u ~
            U(0, 1)`` (:func:`draw_partners`); a field either lacks keeps the donor's value.
            Categories stay the donor's. So no row repeats a training case's numbers.

    Returns:
        The filled plan (new dicts; ``plan`` is not changed) and how each field was set.
    """
    check_unset(unset)
    rows = [{f: row.get(f) for f in schema.names} for row in plan]
    is_set = [[row[f] is not None for f in schema.names] for row in rows]
    set_fields = [f for j, f in enumerate(schema.names) if any(s[j] for s in is_set)]
    unset_fields = [f for j, f in enumerate(schema.names) if not all(s[j] for s in is_set)]
    unknown = [[f for f in schema.names if row[f] is None] for row in rows]
    mode = NOT_DRAWN if unset == "unknown" else "drawn" if table is not None else NO_TABLE
    filled = FilledPlan(rows, [[] for _ in rows], unknown, [None] * len(rows), mode)
    blend = filled.blended = mode == "drawn" and unset == "blended"
    filled.set_fields, filled.unset_fields = set_fields, unset_fields
    filled.partners = [None] * len(rows)
    if mode != "drawn" or not rows:
        return filled
    assert table is not None
    todo = [i for i, u in enumerate(unknown) if u]
    cat, cont = schema.encode_many([rows[i] for i in todo])
    cont_set = np.array(
        [[rows[i][f.name] is not None for f in schema.continuous] for i in todo], dtype=bool
    ).reshape(len(todo), len(schema.continuous))
    donors, numbers, partners = donor_numbers(
        cat, cont, cont_set, table, [seeds[i] for i in todo], blend
    )
    names = [f.name for f in schema.categorical + schema.continuous]  # the table's column order
    for i, d, nums, pa in zip(todo, donors, numbers, partners, strict=True):
        if pa is not None:
            filled.partners[i] = (pa[0], round(pa[1], 6))
        codes = dict(zip(names, table.cat[d].tolist() + nums, strict=True))
        for name in unknown[i]:
            rows[i][name] = donor_value(schema[name], codes[name])
        filled.drawn[i] = [f for f in unknown[i] if rows[i][f] is not None]
        filled.left_unknown[i] = [f for f in unknown[i] if rows[i][f] is None]
        filled.donors[i] = d
    return filled
