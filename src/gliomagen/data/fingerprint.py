"""A store's content fingerprint: which cases, labels and arrays a run trained on.

:func:`store_fingerprint` hashes what a store *holds*, never where it lies or when it was written:
from ``meta.json`` the format version, the grid (``size``, ``spacing_mm``), the ``modalities``, the
label ``schema`` and the input files' checksums (``sources``); from ``index.csv`` every case's row
(case id, split, mask flag, labels, covariates, geometry) without its ``*_path`` columns; and the
byte size and ``.npy`` header (shape, dtype) of ``images.npy`` and ``masks.npy``. It reads no
voxel: a few kilobytes per store, whatever its size. Copying or moving a store keeps its
fingerprint; relabelling a case, changing the split, the schema or the grid changes it.

:func:`dataset_fingerprint` gives the same value for an opened store, and for an in-memory
stand-in (no folder) a hash of its cases, labels and grid.

Example:
    >>> from gliomagen.data.fingerprint import store_fingerprint
    >>> store_fingerprint("store/")  # doctest: +SKIP
    'sha256:3f1c...'
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.data.store_format import ARRAYS, read_json
from gliomagen.data.tables import read_table
from gliomagen.errors import GliomagenError

META_KEYS = ("format_version", "size", "spacing_mm", "modalities", "schema", "sources")
"""The ``meta.json`` entries a fingerprint covers (the rest describe how the store was made)."""

_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}  # .npy header versions: the header alone is read, never the array


def _digest(description: Any) -> str:
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _array_facts(path: Path) -> dict[str, Any] | None:
    """Byte size, shape and dtype of a ``.npy`` file from its header (``None``: no file)."""
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        try:
            read_header = _HEADER_READERS.get(np.lib.format.read_magic(fh))
            shape, _, dtype = read_header(fh) if read_header else (None, None, None)
        except ValueError:  # not an .npy file: its size still counts
            shape, dtype = None, None
    return {"bytes": path.stat().st_size, "shape": shape, "dtype": str(dtype)}


def store_fingerprint(path: str | os.PathLike[str]) -> str:
    """The content fingerprint of the store folder ``path`` (``"sha256:<hex>"``).

    Raises:
        GliomagenError: ``path`` is not a store (no ``meta.json``).
    """
    folder = Path(path)
    if not (folder / "meta.json").is_file():
        raise GliomagenError(f"{folder}: not a gliomagen store (no meta.json)")
    meta = read_json(folder / "meta.json")
    rows: list[dict[str, str]] = []
    if (folder / "index.csv").is_file():
        _, table = read_table(folder / "index.csv")
        rows = [{k: v for k, v in row.items() if not k.endswith("_path")} for _, row in table]
    return _digest(
        {
            "meta": {k: meta.get(k) for k in META_KEYS},
            "cases": rows,
            "arrays": {name: _array_facts(folder / name) for name in ARRAYS},
        }
    )


def dataset_fingerprint(dataset: Any) -> str:
    """The content fingerprint of an opened store (its folder's, whatever split was opened), or of
    an in-memory stand-in: its case ids, mask flags, condition codes, schema, grid, modalities."""
    path = getattr(dataset, "path", None)
    if path is not None and (Path(path) / "meta.json").is_file():
        return store_fingerprint(path)
    schema = getattr(dataset, "schema", None)
    return _digest(
        {
            "case_ids": list(getattr(dataset, "case_ids", [])),
            "has_mask": np.asarray(getattr(dataset, "has_mask", [])).tolist(),
            "cond_cat": np.asarray(getattr(dataset, "cond_cat", [])).tolist(),
            "cond_cont": np.asarray(getattr(dataset, "cond_cont", [])).tolist(),
            "schema": schema.to_dict() if schema is not None else None,
            "size": [int(s) for s in getattr(dataset, "size", [])],
            "modalities": list(getattr(dataset, "modalities", [])),
        }
    )


__all__ = ["META_KEYS", "dataset_fingerprint", "store_fingerprint"]
