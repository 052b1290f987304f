"""Where a store is written: the output folder's checks, its staged temporary folder, the arrays.

A store is built in a hidden folder ``.<name>.tmp-<pid>`` beside ``out`` and swapped in at the end
by :func:`gliomagen.io.atomic.replace_dir`, so an interrupted run leaves no store (and no folder it
created for it); the process id in the name lets a later run remove the leftovers of a killed one,
and only those. The ``.npy`` arrays are written item by item (:class:`NpyWriter`), never all in RAM.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import replace_dir

__all__ = ["NpyWriter", "check_output", "staged_store"]


def check_output(out: Path) -> None:
    """Fail early when ``out`` cannot become a store (creates nothing)."""
    if out.exists() and not out.is_dir():
        raise GliomagenError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "meta.json").is_file():
        raise GliomagenError(
            f"--out {out}: folder exists, is not empty and is not a gliomagen store; not overwriting it"
        )
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise GliomagenError(f"--out {out}: cannot create it, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK):
        raise GliomagenError(f"--out {out}: {ancestor} is not writable")


@contextmanager
def staged_store(out: Path) -> Iterator[Path]:
    """Yield the temporary folder ``.<name>.tmp-<pid>`` beside ``out``; on success it replaces ``out``.

    Leftovers of killed runs are removed first. On any exception the temporary folder and the
    parent folders this call created are removed, and ``out`` is left as it was.

    Raises:
        GliomagenError: the temporary folder cannot be created.
    """
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(out)
        tmp.mkdir()
    except OSError as exc:
        _remove_empty(created)
        raise GliomagenError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    try:
        yield tmp
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this run created (deepest first) if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _remove_stale_temps(out: Path) -> None:
    """Remove temp folders of interrupted runs (their process is gone)."""
    for tmp in [*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")]:
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


class NpyWriter:
    """Write a ``.npy`` array item by item with plain file I/O (bounded memory), then set its length."""

    def __init__(self, path: Path, dtype: Any, item_shape: Sequence[int], capacity: int) -> None:
        self.dtype, self.item_shape = np.dtype(dtype), tuple(item_shape)
        self.item_bytes = int(np.prod(self.item_shape)) * self.dtype.itemsize
        self.fh = open(path, "w+b")  # noqa: SIM115  # closed by close()
        header = self._header(capacity)
        self.offset = len(header)
        self.fh.write(header)
        self.fh.truncate(self.offset + capacity * self.item_bytes)

    def _header(self, n: int, length: int = 0) -> bytes:
        text = repr(
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (n, *self.item_shape),
            }
        )
        body = len(b"\x93NUMPY\x01\x00") + 2 + len(text) + 1
        pad = (length - body) if length else (-body % 64)
        text = text + " " * pad + "\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")

    def write(self, i: int, item: np.ndarray) -> None:
        """Write item ``i`` (shape ``item_shape``, cast to the array's dtype)."""
        arr = np.ascontiguousarray(item, dtype=self.dtype)
        if arr.shape != self.item_shape:
            raise ValueError(f"item shape {arr.shape} != {self.item_shape}")
        self.fh.seek(self.offset + i * self.item_bytes)
        self.fh.write(arr.tobytes())  # one item: ~17 MB at 128^3

    def close(self, n: int) -> None:
        """Set the array's length to ``n`` items (dropping the unused capacity) and close it."""
        if self.fh.closed:
            return
        self.fh.seek(0)
        self.fh.write(self._header(n, self.offset))
        self.fh.truncate(self.offset + n * self.item_bytes)
        self.fh.close()
