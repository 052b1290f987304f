"""Where a store is written: the output folder's checks, its staged temporary folder, the arrays.

``--out`` must be a new folder or a store gliomagen wrote (:func:`staged_store` checks it with
:func:`gliomagen.data.store_check.why_not_ours` before writing) and must lie apart from every input
(:func:`check_apart`). A store is built in a hidden folder ``.<name>.tmp-<pid>`` beside ``out``,
sealed with its ownership marker and swapped in at the end by
:func:`gliomagen.io.atomic.replace_dir`, so an interrupted or failed run (a full disk included)
leaves no store, no temporary folder and no folder it created for it, and the old store as it was;
the process id in the name lets a later run remove the leftovers of a killed one, and only those.
The ``.npy`` arrays are written item by item (:class:`NpyWriter`), never all in RAM.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.data.layouts import CaseRecord
from gliomagen.data.store_check import seal_store, why_not_ours
from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import replace_dir

__all__ = ["NpyWriter", "check_apart", "check_output", "staged_store"]


def check_output(out: Path) -> None:
    """Fail early when ``out`` cannot become a store (creates nothing).

    Whether an existing folder may be replaced is checked by :func:`staged_store`, just before
    anything is written (a store that is up to date is left alone, whatever else it holds).
    """
    if out.exists() and not out.is_dir():
        raise GliomagenError(f"--out {out}: exists and is not a folder")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise GliomagenError(f"--out {out}: cannot create it, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK):
        raise GliomagenError(f"--out {out}: {ancestor} is not writable")


def check_apart(
    out: Path,
    sources: Sequence[Path | str],
    cases: Sequence[CaseRecord],
    labels_csv: Path | str | None = None,
) -> None:
    """Refuse an ``out`` that is, holds or lies inside an input folder, or holds an input file.

    Input folders are the source folders and the folders of every case file; input files are the
    case files, manifests and the ``--labels`` table. Paths are compared with links resolved, so a
    link into an input is caught too.
    """
    target = out.resolve()
    folders = {Path(s).resolve() for s in sources if Path(s).is_dir()}
    folders |= {f.resolve().parent for c in cases for f in c.files()}
    for folder in sorted(folders):
        if folder == target:
            raise GliomagenError(f"--out {out}: is the input folder {folder}; choose another folder")
        if folder in target.parents:
            raise GliomagenError(f"--out {out}: is inside the input folder {folder}; choose a folder outside the inputs")
        if target in folder.parents:
            raise GliomagenError(f"--out {out}: holds the input folder {folder}; choose a folder outside the inputs")
    tables = [Path(s) for s in sources if Path(s).is_file()] + ([Path(labels_csv)] if labels_csv else [])
    for table in tables:
        if target in table.resolve().parents:
            raise GliomagenError(f"--out {out}: holds the input table {table}; choose a folder outside the inputs")


@contextmanager
def staged_store(out: Path) -> Iterator[Path]:
    """Yield the temporary folder ``.<name>.tmp-<pid>`` beside ``out``; on success it is sealed
    (:func:`~gliomagen.data.store_check.seal_store`) and replaces ``out``.

    ``out`` may be missing, an empty folder or a store gliomagen wrote that holds nothing else
    (:func:`~gliomagen.data.store_check.why_not_ours`); anything else is refused before anything is
    written. Leftovers of killed runs are removed first. On any exception the temporary folder and
    the parent folders this call created are removed, and ``out`` is left as it was.

    Raises:
        GliomagenError: ``out`` is not a store gliomagen may replace, the temporary folder cannot
            be created, or writing failed (a full disk, a quota, ...): one line naming the path
            and the reason.
    """
    why = why_not_ours(out) if out.is_dir() and any(out.iterdir()) else None
    if why is not None:
        raise GliomagenError(f"--out {out}: {why}; not overwriting it")
    out = out.resolve() if out.is_symlink() else out  # a link to a store: replace what it points to
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
        seal_store(tmp)
        replace_dir(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise GliomagenError(_write_error(exc, tmp, out)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise


def _write_error(exc: OSError, tmp: Path, out: Path) -> str:
    """``<path>: <reason> (...)`` for an error while writing the store (the path as it would be in ``out``)."""
    where = str(exc.filename) if exc.filename else str(out)
    if where.startswith(str(tmp)):
        where = str(out) + where[len(str(tmp)) :]
    kept = "the old store is unchanged" if out.exists() else "nothing was left behind"
    return f"{where}: {exc.strerror or exc} (the store was not written; {kept})"


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this run created (deepest first) if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _remove_stale_temps(out: Path) -> None:
    """Clear the leftovers of interrupted runs (their process is gone).

    A temporary store is removed. An old store set aside by a run killed while swapping stores in
    (``.<name>.old-<pid>``) is put back when ``out`` is missing (it is then the only copy), else
    removed.
    """
    for tmp in [*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")]:
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            if ".old-" in tmp.name and not out.exists() and not out.is_symlink():
                os.rename(tmp, out)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


class NpyWriter:
    """Write a ``.npy`` array item by item with plain file I/O (bounded memory), then set its length.

    An error while writing (a full disk, ...) is an :class:`OSError` naming the file.
    """

    def __init__(self, path: Path, dtype: Any, item_shape: Sequence[int], capacity: int) -> None:
        self.path = path
        self.dtype, self.item_shape = np.dtype(dtype), tuple(item_shape)
        self.item_bytes = int(np.prod(self.item_shape)) * self.dtype.itemsize
        self.fh = open(path, "w+b")  # noqa: SIM115  # closed by close()
        header = self._header(capacity)
        self.offset = len(header)
        with self._naming_errors():
            self.fh.write(header)
            self.fh.truncate(self.offset + capacity * self.item_bytes)

    @contextmanager
    def _naming_errors(self) -> Iterator[None]:
        """Give an OSError raised while writing this file the file's name."""
        try:
            yield
        except OSError as exc:
            if not exc.filename:
                exc.filename = str(self.path)
            raise

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
        with self._naming_errors():
            self.fh.seek(self.offset + i * self.item_bytes)
            self.fh.write(arr.tobytes())  # one item: ~17 MB at 128^3

    def close(self, n: int) -> None:
        """Set the array's length to ``n`` items (dropping the unused capacity) and close it."""
        if self.fh.closed:
            return
        with self._naming_errors():
            try:
                self.fh.seek(0)
                self.fh.write(self._header(n, self.offset))
                self.fh.truncate(self.offset + n * self.item_bytes)
            finally:
                self.fh.close()
