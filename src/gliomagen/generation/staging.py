"""The cohort folder: checked first, written whole under a temporary name, renamed at the end.

A cohort is written into a hidden folder beside ``--out`` (:func:`gliomagen.io.atomic.atomic_dir`)
and renamed to ``--out`` only once every case, ``clinical.csv`` and ``manifest.json`` are there.
So ``--out`` holds a whole cohort or nothing: a failed run (a full disk, an error) removes its
temporary folder; a killed one (``kill -9``, a power cut) leaves only that hidden folder, which the
next run for the same ``--out`` removes when it is ours (it holds :data:`MARKER`, naming a process
of this machine that no longer runs) and otherwise leaves alone. Write errors (``ENOSPC`` and any
other ``OSError``) become one :class:`GliomagenError` line naming the path.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import atomic_dir

MARKER = ".gliomagen-generate.json"
"""File in a temporary cohort folder that marks it as ours: ``{"pid", "host"}`` of the writer."""


def check_out(out: Path) -> Path:
    """``out`` if it can take a new cohort: it does not exist or is an empty folder.

    Raises:
        GliomagenError: ``out`` is a file, already holds a cohort, or holds anything else.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GliomagenError(f"--out {out}: exists and is not a folder")
    if out.is_dir():
        entries = {p.name for p in out.iterdir()}
        if {"manifest.json", "clinical.csv"} & entries:
            raise GliomagenError(
                f"--out {out}: already holds a cohort; choose an empty or new folder"
            )
        if entries:
            raise GliomagenError(f"--out {out}: is not empty; choose an empty or new folder")
    return out


@contextmanager
def staged_cohort(out: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it becomes ``out`` (see the module).

    Raises:
        GliomagenError: the folder cannot be created, or a write inside it fails (``OSError``);
            nothing is left at ``out`` then, and the temporary folder is removed.
    """
    out = Path(out)
    remove_stale(out)
    tmp: Path | None = None
    try:
        with atomic_dir(out) as tmp:
            (tmp / MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
            yield tmp
            (tmp / MARKER).unlink()
    except OSError as exc:
        if tmp is None:  # the temporary folder could not be made
            raise GliomagenError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
        raise GliomagenError(write_failure(exc, tmp, out)) from None


def write_failure(exc: OSError, tmp: Path, out: Path) -> str:
    """One line for a failed write: the file (as it would have been named under ``out``) and why."""
    name = exc.filename if isinstance(exc.filename, str) else None
    where = Path(name) if name else out
    if where.is_relative_to(tmp):
        where = out / where.relative_to(tmp)
    why = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {why} (nothing was written to --out {out})"


def remove_stale(out: Path) -> list[Path]:
    """Remove the temporary folders of earlier, killed runs for ``out`` (ours only; see the module).

    Returns:
        The folders removed.
    """
    removed = []
    for tmp in Path(out).parent.glob(f".{Path(out).name}.*.tmp"):
        if tmp.is_dir() and _abandoned(tmp / MARKER):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _abandoned(marker: Path) -> bool:
    """True when ``marker`` names a process of this machine that no longer runs."""
    try:
        owner = json.loads(marker.read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not ours, or not readable: leave it
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # runs, under another user
    return False
