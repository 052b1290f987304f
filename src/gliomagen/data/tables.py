"""Reading the CSV tables of data/: manifests, ``--labels`` tables, a store's ``index.csv``.

Every table is read by :func:`read_table`, with one set of rules: UTF-8 with or without the byte
order mark spreadsheet programs write, names and values stripped of surrounding spaces, blank
lines skipped, and every problem one :class:`~gliomagen.errors.GliomagenError` naming the file,
the line and the column: a column named twice, a row with more or fewer fields than the header,
a required column missing. Doubtful but usable content is reported with :func:`warn`, a
:class:`DataWarning` (the CLI prints it as one ``warning: ...`` line).

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = p.write_text("\\ufeffcase_id, age\\nA, 61\\n")
    >>> read_table(p, required=("case_id",))
    (['case_id', 'age'], [(2, {'case_id': 'A', 'age': '61'})])
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from pathlib import Path

from gliomagen.errors import GliomagenError

__all__ = ["DataWarning", "Row", "read_table", "warn"]

Row = tuple[int, dict[str, str]]
"""``(line number in the file, values by column name)``."""


class DataWarning(UserWarning):
    """Input that is used, but perhaps not as the user meant (a label read as text, a case without labels)."""


def warn(message: str) -> None:
    """Report doubtful input as a :class:`DataWarning` (the CLI prints ``warning: message``)."""
    warnings.warn(message, DataWarning, stacklevel=2)


def read_table(
    path: Path, *, what: str = "", required: Sequence[str] = ()
) -> tuple[list[str], list[Row]]:
    """Read a CSV table with a header line.

    Args:
        path: the file.
        what: how messages name the file, e.g. ``--labels`` (default: just the path).
        required: columns the table must have.

    Returns:
        ``(header, rows)``: the column names in file order (``""`` for an unnamed column) and one
        ``(line, {column: value})`` per row with any value, values stripped (unnamed columns left
        out).

    Raises:
        GliomagenError: the file is missing or unreadable, has no header, names a column twice or
            lacks a required one, or a row's field count differs from the header's.
    """
    name = f"{what} {path}".strip()
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            raw = [(reader.line_num, r) for r in reader if any(v.strip() for v in r)]
    except FileNotFoundError:
        raise GliomagenError(f"{name}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GliomagenError(f"{name}: cannot read the table ({exc})") from None
    _check_header(name, header, required)
    rows: list[Row] = []
    for line, values in raw:
        if len(values) != len(header):
            raise GliomagenError(f"{name} line {line}: {_ragged(values, header)}")
        rows.append((line, {h: v.strip() for h, v in zip(header, values, strict=True) if h}))
    return header, rows


def _check_header(name: str, header: list[str], required: Sequence[str]) -> None:
    """Refuse an empty header, a twice-named column and a missing required column (a column
    without a name, such as the index column pandas writes, is ignored)."""
    if not any(header):
        raise GliomagenError(f"{name}: no header line (expected column names, e.g. case_id)")
    for i, column in enumerate(header):
        if column and column in header[:i]:
            raise GliomagenError(
                f"{name} line 1: column {column!r} appears twice (columns {header.index(column) + 1} and {i + 1})"
            )
    for column in required:
        if column not in header:
            raise GliomagenError(
                f"{name}: no {column} column (columns: {', '.join(header) or 'none'})"
            )


def _ragged(values: list[str], header: list[str]) -> str:
    """Say how a row's fields differ from the header's columns."""
    n, m = len(values), len(header)
    if n > m:
        extra = ", ".join(repr(v.strip()) for v in values[m : m + 3])
        return f"{n} fields but the header has {m} columns (extra field(s) {extra} after column {header[-1]!r})"
    return f"{n} fields but the header has {m} columns (no value for column {header[n]!r}{' and after' if m - n > 1 else ''})"
