"""A fixed train/val/test split from a table: ``gliomagen prepare --split-csv FILE``.

The table has the columns ``case_id`` and ``split`` (values ``train``, ``val`` or ``test``, in any
case, surrounding spaces ignored; other columns are ignored) and one row per case to prepare, so
two stores of the same cases, or a store and a segmentation experiment, see exactly the same
training cases. It is read by :func:`gliomagen.data.tables.read_table` (UTF-8, a byte order mark
is fine, blank lines skipped); every problem is one :class:`~gliomagen.errors.GliomagenError`
naming the file and, where there is one, the line.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "split.csv"
    >>> _ = p.write_text("case_id,split\\nA,Train \\nB,test\\n")
    >>> table = read_split_csv(p)
    >>> table
    {'A': 'train', 'B': 'test'}
    >>> apply_split_csv(["B", "A"], table, p)
    ['test', 'train']
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from gliomagen.data.nifti import sha256
from gliomagen.data.store_format import SPLITS
from gliomagen.data.tables import read_table
from gliomagen.errors import GliomagenError

__all__ = ["SPLITS", "apply_split_csv", "read_split_csv", "split_record"]

_OPTION = "--split-csv"


def read_split_csv(path: Path) -> dict[str, str]:
    """Read a split table: ``case_id -> split`` in file order, splits lower-cased.

    Raises:
        GliomagenError: the file is missing, not UTF-8 text, lacks the ``case_id`` or ``split``
            column or any row, or a row has no case id, names a case a second time or gives a
            split other than train, val or test.
    """
    name = f"{_OPTION} {path}"
    _, rows = read_table(path, what=_OPTION, required=("case_id", "split"))
    if not rows:
        raise GliomagenError(f"{name}: no rows (expected one case_id,split row per case)")
    table: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for line, row in rows:
        case_id, split = row["case_id"], row["split"].lower()
        if not case_id:
            raise GliomagenError(f"{name} line {line}: no case_id (split {row['split']!r})")
        if split not in SPLITS:
            raise GliomagenError(
                f"{name} line {line}: split {row['split']!r} of case {case_id!r} is not one of {', '.join(SPLITS)}"
            )
        if case_id in table:
            raise GliomagenError(
                f"{name} line {line}: case {case_id!r} is given twice (first on line {first_line[case_id]})"
            )
        table[case_id] = split
        first_line[case_id] = line
    return table


def apply_split_csv(
    case_ids: Sequence[str],
    table: dict[str, str],
    path: Path | str,
    *,
    skipped: Collection[str] = (),
) -> list[str]:
    """The split of each case, in order, from a table read by :func:`read_split_csv`.

    Args:
        case_ids: the cases to prepare (or prepared), in store order.
        table: ``case_id -> split``.
        path: the table's file (for messages).
        skipped: ids of cases left out by ``--skip-bad``; the table may name them.

    Raises:
        GliomagenError: the table names a case that is neither among ``case_ids`` nor skipped,
            a case has no row, or no case is in the train split.
    """
    name = f"{_OPTION} {path}"
    known = set(case_ids) | set(skipped)
    stray = [cid for cid in table if cid not in known]
    if stray:
        first = ", ".join(map(repr, stray[:3]))
        raise GliomagenError(
            f"{name}: case {stray[0]!r} is not among the cases to prepare ({len(stray)} such id(s); first: {first})"
        )
    missing = [cid for cid in case_ids if cid not in table]
    if missing:
        raise GliomagenError(
            f"{name}: no split for case {missing[0]!r} ({len(missing)} case(s) have none)"
        )
    splits = [table[cid] for cid in case_ids]
    if case_ids and "train" not in splits:
        counts = ", ".join(f"{s} {splits.count(s)}" for s in SPLITS[1:])
        raise GliomagenError(f"{name}: no case to prepare is in the train split ({counts})")
    return splits


def split_record(split_csv: Path | str | None, seed: int) -> dict[str, Any]:
    """How a store's split was made, as ``meta.json`` records it under ``split``:
    ``{"method": "split-csv", "file": <absolute path>, "sha256": <hex>}`` or
    ``{"method": "seeded", "seed": seed}``."""
    if split_csv is None:
        return {"method": "seeded", "seed": seed}
    path = Path(split_csv)
    return {"method": "split-csv", "file": str(path.resolve()), "sha256": sha256(path)}
