"""The on-disk training store: memory-mapped arrays + index table + meta JSON.

Layout (format version 1)::

    STORE/
      meta.json    size, modalities, schema, spacing_mm, canonical_orientation, template_geometry,
                   preprocessing, sources (checksums), splits, n_cases, gliomagen_version, ...
      images.npy   float16 [N, C, D, H, W] in [-1, 1], background exactly -1
      masks.npy    uint8 [N, D, H, W], labels {0, 1 NCR, 2 ED, 3 ET}; 255 for a case without a mask
      index.csv    one row per case: case_id, split, has_mask, labels, covariates, paths, geometry
      qc/          montage PNGs of a sample of cases
      skipped.csv  cases left out by --skip-bad, and why (only when there are any)

A 2D *slice store* (``prepare --slices``, :mod:`gliomagen.data.slices`) has the same layout with
2-D items (images ``[N, C, H, W]``, masks ``[N, H, W]``, one index row per slice, ``spatial_dims``
2 in meta.json) and is read by the same :class:`StoreDataset`.

:func:`build_store` (implemented in :mod:`gliomagen.data.build`) writes a store;
:func:`open_store` gives a torch Dataset of ``(image [C, D, H, W], mask [D, H, W],
cond {"cat", "cont"}, case_id)``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gliomagen.data.conditions import ConditionSchema
from gliomagen.errors import GliomagenError

if TYPE_CHECKING:  # at run time build_store is imported on first use (see __getattr__)
    from gliomagen.data.build import build_store

__all__ = ["FORMAT_VERSION", "NO_MASK", "SPLITS", "SPLIT_FRACTIONS", "StoreDataset", "assign_splits",
           "build_store", "open_store", "parse_size"]  # fmt: skip


FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
NO_MASK = 255
"""Mask value filling every voxel of a case that has no mask."""


def parse_size(value: int | str | Sequence[int]) -> tuple[int, int, int]:
    """``64`` / ``"64"`` -> ``(64, 64, 64)``; ``"96,112,96"`` -> ``(96, 112, 96)``."""
    if isinstance(value, int | np.integer):
        parts: list[Any] = [int(value)] * 3
    elif isinstance(value, str):
        parts = [p.strip() for p in value.replace("x", ",").split(",") if p.strip()]
        parts = parts * 3 if len(parts) == 1 else parts
    else:
        parts = list(value)
    try:
        size = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 3 or not all(4 <= s <= 1024 for s in size):
        raise GliomagenError(
            f"--size {value!r}: expected one number or three (e.g. 128 or 96,112,96), each 4..1024"
        )
    return size


def assign_splits(
    keys: Sequence[str], seed: int, fractions: Sequence[float] = SPLIT_FRACTIONS
) -> list[str]:
    """A deterministic, seeded train/val/test split stratified by ``keys`` (one per case).

    Cases are ordered by stratum (shuffled within it, seeded) and the val/test picks are spread
    evenly over that order, so every stratum gets about its share; ``round(f * n)`` cases go to
    val and to test, at least one to train.

    Example:
        >>> s = assign_splits(["GLI"] * 10 + ["SSA"] * 10, seed=0)
        >>> [s.count(k) for k in ("train", "val", "test")], s[10:].count("train")
        ([16, 2, 2], 8)
    """
    n = len(keys)
    n_val, n_test = (int(np.floor(f * n + 0.5)) for f in fractions[1:3])
    while n_val + n_test >= n and n > 0:
        n_val, n_test = (n_val - 1, n_test) if n_val >= n_test else (n_val, n_test - 1)
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(n)
    order = sorted(range(n), key=lambda i: (keys[i], tiebreak[i]))
    out = ["train"] * n
    picks = n_val + n_test
    if picks:
        phase = rng.random()
        # interleave val and test among the picks in proportion to their counts
        kinds = [k for _, k in sorted(
            [((j + 0.5) / n_val, "val") for j in range(n_val)] + [((j + 0.5) / n_test, "test") for j in range(n_test)]
        )]  # fmt: skip
        for j, kind in enumerate(kinds):
            out[order[int((j + phase) * n / picks)]] = kind  # distinct: n / picks > 1
    return out


def __getattr__(name: str) -> Any:
    """``build_store`` lives in :mod:`gliomagen.data.build` (imported on first use)."""
    if name == "build_store":
        from gliomagen.data.build import build_store

        return build_store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise GliomagenError(f"{path}: cannot read ({exc})") from None


# -- the dataset -------------------------------------------------------------------------------
class StoreDataset(Dataset):
    """A prepared store (or one split of it) as a torch Dataset.

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
        self.meta: dict[str, Any] = _read_json(self.path / "meta.json")
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise GliomagenError(
                f"{self.path}: store format {self.meta.get('format_version')} is not {FORMAT_VERSION}; run prepare again"
            )
        self.split = split
        self.schema = ConditionSchema.from_dict(self.meta["schema"])
        self.modalities: list[str] = list(self.meta["modalities"])
        self.size: tuple[int, ...] = tuple(int(s) for s in self.meta["size"])  # (D, H, W) or (H, W)
        self.spacing_mm: list[float] = list(self.meta["spacing_mm"])
        with open(self.path / "index.csv", newline="") as fh:
            everything = list(csv.DictReader(fh))
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


def open_store(path: Path | str, split: str | None = None) -> StoreDataset:
    """Open a store (``split``: ``train``, ``val``, ``test`` or ``None`` for every case)."""
    return StoreDataset(path, split=split)
