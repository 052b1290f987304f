"""A store's files checked: is a folder a store gliomagen may replace, are its arrays whole?

Every store ``prepare`` writes is sealed by :func:`seal_store`: the ownership marker
``.gliomagen-store`` (:mod:`gliomagen.io.ownership`) lists each file it wrote with a cheap digest
(size, first and last MiB) and the store's
:func:`~gliomagen.data.fingerprint.store_fingerprint`. So

- ``prepare --out`` replaces a folder only when :func:`why_not_ours` finds nothing against it: the
  marker is there and the folder holds no file it does not list. A store written before markers
  existed is recognised by its files alone: a ``meta.json`` of this store format, ``index.csv``,
  ``images.npy``, ``masks.npy`` and nothing else but ``qc/*.png``, ``skipped.csv`` and (a slice
  store) ``cases.csv``;
- opening a store (:func:`check_arrays`) compares each array file's size with the exact size its
  ``.npy`` header implies, its shape with ``meta.json`` and ``index.csv``, and (when sealed) its
  digest with the marker's, so a truncated or damaged file is an error naming it instead of a
  crash in ``numpy.load`` or, worse, silently wrong data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.data.fingerprint import store_fingerprint
from gliomagen.data.store_format import (
    ARRAYS,
    FORMAT_VERSION,
    INDEX_COLUMNS,
    read_json,
)
from gliomagen.data.tables import read_table
from gliomagen.errors import GliomagenError
from gliomagen.io.ownership import (
    CLUTTER,
    entries,
    foreign_entries,
    quick_digest,
    read_marker,
    write_marker,
)

__all__ = ["MARKER_KIND", "check_arrays", "seal_store", "store_damage", "why_not_ours"]  # fmt: skip

MARKER_KIND = "store"
"""The kind of a store's ownership marker: ``STORE/.gliomagen-store``."""

CORE_FILES = ("meta.json", "index.csv", *ARRAYS)
"""Files every store has."""


def seal_store(folder: Path) -> Path:
    """Write the ownership marker of the finished store in ``folder`` (its last file)."""
    return write_marker(folder, MARKER_KIND, FORMAT_VERSION, fingerprint=store_fingerprint(folder))


def why_not_ours(folder: Path) -> str | None:
    """Why ``prepare`` must not replace the existing, non-empty ``folder``; ``None`` when it may
    (it is a store gliomagen wrote, holding nothing else)."""
    try:
        marker = read_marker(folder, MARKER_KIND)
    except ValueError as exc:
        return f"its store marker cannot be trusted ({exc})"
    if marker is None:
        return _why_not_a_legacy_store(folder)
    return _foreign_reason(foreign_entries(folder, marker))


def _why_not_a_legacy_store(folder: Path) -> str | None:
    """The check of :func:`why_not_ours` for a folder without a marker (a store made before them)."""
    names = [e for e in entries(folder) if Path(e).name not in CLUTTER]
    if "meta.json" not in names:
        return "folder exists, is not empty and is not a gliomagen store"
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        meta = None
    if not (
        isinstance(meta, dict) and meta.get("format_version") == FORMAT_VERSION and "schema" in meta
    ):
        return "is not a gliomagen store (its meta.json is not a store's)"
    missing = [f for f in CORE_FILES if f not in names]
    if missing:
        return f"is not a gliomagen store (it has a meta.json but no {missing[0]})"
    allowed = {
        *CORE_FILES,
        "skipped.csv",
        *(["cases.csv"] if meta.get("spatial_dims") == 2 else []),
    }
    return _foreign_reason([n for n in names if n not in allowed and not _is_qc_picture(n)])


def _is_qc_picture(name: str) -> bool:
    """``qc/<case>.png``: a QC montage a store holds."""
    parts = name.split("/")
    return len(parts) == 2 and parts[0] == "qc" and parts[1].endswith(".png")


def _foreign_reason(foreign: list[str]) -> str | None:
    """The refusal for files a store did not write (``None`` when there are none)."""
    if not foreign:
        return None
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    return (
        f"holds files gliomagen did not write there ({shown}), so it is not only a gliomagen store"
    )


def npy_layout(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` from a ``.npy`` file's header.

    Raises:
        GliomagenError: the file is missing or has no readable ``.npy`` header.
    """
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            return tuple(int(s) for s in shape), np.dtype(dtype), fh.tell()
    except FileNotFoundError:
        raise GliomagenError(
            f"{path}: missing, the store is incomplete; run gliomagen prepare again"
        ) from None
    except (OSError, ValueError) as exc:
        raise GliomagenError(
            f"{path}: not a readable .npy array ({exc}); run gliomagen prepare again"
        ) from None


def check_arrays(path: Path, meta: dict[str, Any], n_rows: int) -> None:
    """Check a store's array files before they are memory-mapped.

    Args:
        path: the store.
        meta: its ``meta.json``.
        n_rows: the number of rows of its ``index.csv``.

    Raises:
        GliomagenError: naming the file: missing, not of the exact size its header implies
            (truncated or grown), of another shape than ``meta.json`` / ``index.csv`` say, or (in a
            sealed store) not the content ``prepare`` wrote.
    """
    size = tuple(int(s) for s in meta["size"])
    expected = {
        "images.npy": (n_rows, len(meta["modalities"]), *size),
        "masks.npy": (n_rows, *size),
    }
    for name in ARRAYS:
        file = path / name
        shape, dtype, offset = npy_layout(file)
        want = offset + math.prod(shape) * dtype.itemsize
        have = file.stat().st_size
        if have != want:
            raise GliomagenError(
                f"{file}: {have} bytes, but its header ({'x'.join(map(str, shape))} {dtype}) needs {want}; "
                "the file is truncated or damaged; run gliomagen prepare again"
            )
        if shape != expected[name]:
            raise GliomagenError(
                f"{file}: shape {'x'.join(map(str, shape))}, but meta.json and index.csv ({n_rows} rows) "
                f"say {'x'.join(map(str, expected[name]))}; run gliomagen prepare again"
            )
    _check_digests(path)


def _check_digests(path: Path) -> None:
    """In a sealed store, compare each array file's digest with the one its marker recorded."""
    try:
        marker = read_marker(path, MARKER_KIND)
    except ValueError as exc:
        raise GliomagenError(str(exc)) from None
    if marker is None:
        return  # a store made before markers: sizes and shapes are all there is to check
    for name in ARRAYS:
        recorded = marker["files"].get(name, {}).get("digest")
        if recorded is not None and quick_digest(path / name) != recorded:
            raise GliomagenError(
                f"{path / name}: its content is not what gliomagen prepare wrote (damaged or "
                "modified); run gliomagen prepare again"
            )


def store_damage(path: Path) -> str | None:
    """What is wrong with the files of the store at ``path``, or ``None`` when they are whole
    (the checks of :func:`check_arrays`, after reading ``meta.json`` and ``index.csv``)."""
    try:
        meta = read_json(path / "meta.json")
        _, rows = read_table(path / "index.csv", required=INDEX_COLUMNS)
        check_arrays(path, meta, len(rows))
    except GliomagenError as exc:
        return str(exc)
    except (KeyError, TypeError, ValueError) as exc:  # a meta.json without the store's fields
        return f"{path / 'meta.json'}: not a store description ({exc!r})"
    return None
