"""The store format's constants and the pieces its writer and its reader share.

:mod:`gliomagen.data.build` (and :mod:`gliomagen.data.slices`) write a store and
:mod:`gliomagen.data.store` reads one (the layout is described there); both take the format
version, the split names, the no-mask value, the ``--size`` parser, the seeded split, the
``meta.json`` reader and the store's fingerprint from here, so neither imports the other's
internals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.config.grid import plan_grid
from gliomagen.errors import GliomagenError

__all__ = ["ARRAYS", "FORMAT_VERSION", "INDEX_COLUMNS", "NO_MASK", "SPLITS",
           "SPLIT_FRACTIONS", "assign_splits", "check_trainable_size", "parse_size", "read_json"]  # fmt: skip

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
ARRAYS = ("images.npy", "masks.npy")
"""The array files of a store (memory-mapped when read)."""
INDEX_COLUMNS = ("case_id", "split", "has_mask")
"""Columns every store's ``index.csv`` has (a reader refuses a table without them)."""
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


def check_trainable_size(size: Sequence[int], option: str = "--size") -> None:
    """Refuse a grid ``train`` cannot build networks for (:func:`gliomagen.config.grid.plan_grid`:
    sides 16..256 that halve to a start grid of sides 4..8), so ``prepare`` never builds a store
    no model can be trained on.

    Raises:
        GliomagenError: naming ``option``, the size and the rule.
    """
    try:
        plan_grid(size)
    except ValueError as exc:
        shown = ",".join(str(int(s)) for s in size)
        raise GliomagenError(f"{option} {shown}: train cannot use this grid: {exc}") from None


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


def read_json(path: Path) -> dict[str, Any]:
    """Read a store's JSON file (``meta.json``); an unreadable one is a :class:`GliomagenError`."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise GliomagenError(f"{path}: cannot read ({exc})") from None


