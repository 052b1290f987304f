"""An output folder written whole: staged under a hidden temporary name, renamed at the end.

``generate --out`` and ``evaluate --out`` (and any command that writes a folder of results) write
into a hidden folder beside the target (:func:`gliomagen.io.atomic.atomic_dir`) and rename it into
place only when everything is there, so the target holds a whole result or nothing (or, when
replacing an earlier result, the old one). A failed run (a full disk, an error) removes its
temporary folder; a killed one (``kill -9``, a power cut) leaves only that hidden folder, which the
next run for the same target removes when it is ours (it holds :data:`MARKER`, naming a process of
this machine that no longer runs) and otherwise leaves alone. A write error (``ENOSPC`` or any
other ``OSError``) becomes one :class:`GliomagenError` line naming the file as it would have been
called under the target.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import atomic_dir

MARKER = ".gliomagen-staging.json"
"""File in a temporary output folder that marks it as ours: ``{"pid", "host"}`` of the writer."""

_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")


@contextmanager
def staged_dir(out: str | os.PathLike[str], *, replace: bool = False, left: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it becomes ``out``.

    Args:
        out: the target folder (new, or empty, or, with ``replace``, an earlier result).
        replace: an existing ``out`` is replaced whole (``atomic_dir(replace=True)``).
        left: what a failure leaves, for the error line (e.g. ``nothing was written to --out X``).

    Raises:
        GliomagenError: the temporary folder cannot be made, or a write inside it fails; the
            temporary folder is removed and ``out`` is as it was.
    """
    out = Path(out)
    remove_stale(out)
    tmp: Path | None = None
    try:
        with atomic_dir(out, replace=replace) as tmp:
            (tmp / MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
            yield tmp
            (tmp / MARKER).unlink()
    except OSError as exc:
        if tmp is None:
            raise GliomagenError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
        raise write_error(exc, tmp, out, left) from None


def shown_path(path: str | os.PathLike[str] | None, tmp: Path, out: Path) -> Path:
    """``path`` as it is called once the temporary folder ``tmp`` has become ``out``.

    A file under ``tmp`` is shown under ``out``, and an atomic writer's temporary name
    (``.NAME.xxxx.tmp``) as ``NAME``; no path is ``out`` itself.
    """
    if path is None:
        return out
    shown = Path(path)
    if shown.is_relative_to(tmp):
        shown = out / shown.relative_to(tmp)
    hidden = _TMP_NAME.match(shown.name)
    return shown.with_name(hidden.group("name")) if hidden else shown


def write_error(exc: OSError, tmp: Path, out: Path, left: str) -> GliomagenError:
    """One line for a failed write: the file (:func:`shown_path`), the reason, and ``left``."""
    name = exc.filename if isinstance(exc.filename, (str, os.PathLike)) else None
    why = exc.strerror or str(exc) or type(exc).__name__
    return GliomagenError(f"{shown_path(name, tmp, out)}: {why} ({left})")


def remove_stale(out: str | os.PathLike[str]) -> list[Path]:
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


__all__ = ["MARKER", "remove_stale", "shown_path", "staged_dir", "write_error"]
