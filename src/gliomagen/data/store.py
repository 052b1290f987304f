"""The on-disk training store: memory-mapped arrays + index table + meta JSON.

Layout (format version 1)::

    STORE/
      meta.json    size, modalities, schema, spacing_mm, canonical_orientation, template_geometry,
                   preprocessing, sources (checksums), splits, split (how: seeded or --split-csv),
                   n_cases, gliomagen_version, ...
      images.npy   float16 [N, C, D, H, W] in [-1, 1], background exactly -1
      masks.npy    uint8 [N, D, H, W], labels {0, 1 NCR, 2 ED, 3 ET}; 255 for a case without a mask
      index.csv    one row per case: case_id, split, has_mask, labels, covariates, paths, geometry
      qc/          montage PNGs of a sample of cases
      skipped.csv  cases left out by --skip-bad, and why (only when there are any)
      .gliomagen-store  the ownership marker: every file above with its size and a cheap digest,
                   and the store's fingerprint (see :mod:`gliomagen.data.store_check`)

A 2D *slice store* (``prepare --slices``, :mod:`gliomagen.data.slices`) has the same layout with
2-D items (images ``[N, C, H, W]``, masks ``[N, H, W]``, one index row per slice, ``spatial_dims``
2 in meta.json) and is read by the same :class:`StoreDataset`.

:func:`build_store` (implemented in :mod:`gliomagen.data.build`, re-exported here) writes a
store; :func:`open_store` gives a torch Dataset of ``(image [C, D, H, W], mask [D, H, W],
cond {"cat", "cont"}, case_id)``. The format's constants, the ``--size`` parser and the split live
in :mod:`gliomagen.data.store_format`, shared with the writers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gliomagen.data.build import build_store
from gliomagen.data.conditions import ConditionSchema
from gliomagen.data.store_check import check_arrays
from gliomagen.data.store_format import (
    FORMAT_VERSION,
    INDEX_COLUMNS,
    NO_MASK,
    SPLIT_FRACTIONS,
    SPLITS,
    assign_splits,
    parse_size,
    read_json,
)
from gliomagen.data.tables import read_table
from gliomagen.errors import GliomagenError

__all__ = ["FORMAT_VERSION", "NO_MASK", "SPLITS", "SPLIT_FRACTIONS", "StoreDataset", "assign_splits",
           "build_store", "open_store", "parse_size"]  # fmt: skip


# -- the dataset -------------------------------------------------------------------------------
class StoreDataset(Dataset):
    """A prepared store (or one split of it) as a torch Dataset.

    Opening checks the store's files (:func:`gliomagen.data.store_check.check_arrays`): a truncated
    or damaged array is a :class:`GliomagenError` naming it, not a crash when it is read.

    ``ds[i] -> (image float32 [C, D, H, W], mask int64 [D, H, W], cond {"cat": int64 [n_cat],
    "cont": float32 [n_cont]}, case_id)`` (``[C, H, W]`` / ``[H, W]`` slices in a slice store);
    a case without a mask has 255 everywhere (see
    :attr:`has_mask`). Arrays are memory-mapped and opened lazily in each DataLoader worker.

    Attributes:
        path, split, meta, schema, modalities, size, spacing_mm: the store's description.
        case_ids: ids in dataset order; ``indices``: their rows in the store arrays.
        rows: raw label values per case: the schema's fields plus ``cohort`` and ``grade`` (``None``
            when unknown); ``schema.encode(row)`` accepts them.
        index_rows: the full ``index.csv`` rows (strings).
        has_mask: ``[n]`` bool; cond_cat ``[n, n_cat]`` int64; cond_cont ``[n, n_cont]`` float32.
    """

    def __init__(self, path: Path | str, split: str | None = None) -> None:
        self.path = Path(path)
        if not (self.path / "meta.json").is_file():
            raise GliomagenError(
                f"{self.path}: not a gliomagen store (no meta.json); run gliomagen prepare"
            )
        if split is not None and split not in SPLITS:
            raise GliomagenError(f"split {split!r}: must be one of {', '.join(SPLITS)} (or all)")
        self.meta: dict[str, Any] = read_json(self.path / "meta.json")
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise GliomagenError(
                f"{self.path}: store format {self.meta.get('format_version')} is not {FORMAT_VERSION}; run prepare again"
            )
        self.split = split
        self.schema = ConditionSchema.from_dict(self.meta["schema"])
        self.modalities: list[str] = list(self.meta["modalities"])
        self.size: tuple[int, ...] = tuple(int(s) for s in self.meta["size"])  # (D, H, W) or (H, W)
        self.spacing_mm: list[float] = list(self.meta["spacing_mm"])
        everything = _read_index(self.path / "index.csv")
        check_arrays(self.path, self.meta, len(everything))
        picked = [(i, r) for i, r in enumerate(everything) if split is None or r["split"] == split]
        self.indices = np.array([i for i, _ in picked], dtype=np.int64)
        self.index_rows: list[dict[str, str]] = [r for _, r in picked]
        self.case_ids: list[str] = [r["case_id"] for r in self.index_rows]
        self.rows: list[dict[str, Any]] = [
            {k: r.get(k) or None for k in ("cohort", "grade")} | self.schema.normalise(r)
            for r in self.index_rows
        ]  # cohort and grade always present (None when unknown); schema.encode(row) accepts it
        self.has_mask = np.array([r["has_mask"] == "1" for r in self.index_rows], dtype=bool)
        self.cond_cat, self.cond_cont = self.schema.encode_many(self.rows)
        self._images: np.ndarray | None = None
        self._masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.case_ids)

    @property
    def spatial_dims(self) -> int:
        """3 for a volume store, 2 for a slice store (whose items are slices, ids ``<case>-<view>-<i>``)."""
        return len(self.size)

    def __getitem__(
        self, i: int
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], str]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} cases")
        i = int(i) % len(self)
        if self._images is None or self._masks is None:
            self._images = np.load(self.path / "images.npy", mmap_mode="r")
            self._masks = np.load(self.path / "masks.npy", mmap_mode="r")
        j = int(self.indices[i])
        image = torch.from_numpy(np.array(self._images[j], dtype=np.float32))  # [C, D, H, W]
        mask = torch.from_numpy(np.array(self._masks[j], dtype=np.int64))  # [D, H, W]
        cond = {
            "cat": torch.from_numpy(self.cond_cat[i].copy()),
            "cont": torch.from_numpy(self.cond_cont[i].copy()),
        }
        return image, mask, cond, self.case_ids[i]

    def geometry(self, i: int) -> dict[str, Any]:
        """Case ``i``'s geometry, for :func:`gliomagen.data.preprocess.to_original_space`."""
        if "geometry" not in self.index_rows[i]:
            raise GliomagenError(
                f"{self.path}: a slice store keeps the geometry per case, in cases.csv"
            )
        return json.loads(self.index_rows[i]["geometry"])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_images"] = state["_masks"] = None  # re-opened lazily in the worker
        return state


def _read_index(path: Path) -> list[dict[str, str]]:
    """A store's ``index.csv`` rows (a spreadsheet's byte order mark is fine).

    Raises:
        GliomagenError: an unreadable table, a required column missing, a ragged row or a split
            that is not train, val or test, naming the file and line.
    """
    _, table = read_table(path, required=INDEX_COLUMNS)
    for line, row in table:
        if row["split"] not in SPLITS:
            raise GliomagenError(
                f"{path} line {line}: split {row['split']!r} is not one of {', '.join(SPLITS)}"
            )
    return [row for _, row in table]


def open_store(path: Path | str, split: str | None = None) -> StoreDataset:
    """Open a store (``split``: ``train``, ``val``, ``test`` or ``None`` for every case)."""
    return StoreDataset(path, split=split)
