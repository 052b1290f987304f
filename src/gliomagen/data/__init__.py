"""Data: BraTS layouts -> preprocessed, memory-mapped training store; the built-in phantom cohort."""

from __future__ import annotations

from typing import Any


def open_store(path: Any, split: str | None = None) -> Any:
    """Open a prepared store as a torch Dataset (see :func:`gliomagen.data.store.open_store`)."""
    # here: the store reader imports torch (seconds); gliomagen.data.phantoms and the other
    # submodules that need no torch stay quick to import
    from gliomagen.data.store import open_store as _open

    return _open(path, split=split)


__all__ = ["open_store"]
