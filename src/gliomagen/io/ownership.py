"""Ownership markers: a folder says which gliomagen command wrote it, and which files it wrote.

A command that may later *replace* a folder it wrote (``prepare --out``) leaves a hidden JSON
marker ``.gliomagen-<kind>`` in it::

    {"kind": "store", "format": 1, "created_by": "gliomagen 0.4.0", "fingerprint": "<hex>",
     "files": {"meta.json": {"size": 1234, "digest": "<hex>"}, "qc/a.png": {...}, ...}}

Before replacing the folder the command checks that the marker is there, of its kind, and that
the folder holds no file the marker does not list (:func:`foreign_entries`): a folder someone else
wrote, or one a user added files to, is never replaced. The file digests (:func:`quick_digest`,
the size and the first and last MiB, so a multi-GiB array costs two reads) let a reader notice a
truncated or damaged file without reading it whole.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("x")
    >>> _ = write_marker(d, "demo", 1, fingerprint="f")
    >>> read_marker(d, "demo")["files"]["a.txt"]["size"], foreign_entries(d, read_marker(d, "demo"))
    (1, [])
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gliomagen import __version__
from gliomagen.io.atomic import write_json

__all__ = ["CLUTTER", "DIGEST_CHUNK", "entries", "foreign_entries", "marker_path", "quick_digest",
           "read_marker", "write_marker"]  # fmt: skip

DIGEST_CHUNK = 1 << 20
"""Bytes read from each end of a file by :func:`quick_digest` (1 MiB)."""

CLUTTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
"""Files a file browser drops into any folder it shows; never counted as someone's data."""


def marker_path(folder: str | os.PathLike[str], kind: str) -> Path:
    """The marker file of ``kind`` in ``folder``: ``folder/.gliomagen-<kind>``."""
    return Path(folder) / f".gliomagen-{kind}"


def quick_digest(path: str | os.PathLike[str], chunk: int = DIGEST_CHUNK) -> str:
    """SHA-256 of a file's size, its first ``chunk`` bytes and its last ``chunk`` bytes.

    A file of at most ``2 * chunk`` bytes is hashed whole. Truncation, growth and damage at either
    end change the digest; a change in the middle of a big file does not (it is not read).
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        h.update(str(size).encode() + b"\0")
        if size <= 2 * chunk:
            h.update(fh.read())
        else:
            h.update(fh.read(chunk))
            fh.seek(size - chunk)
            h.update(fh.read(chunk))
    return h.hexdigest()


def entries(folder: str | os.PathLike[str]) -> list[str]:
    """Every file and link under ``folder``, as sorted ``/``-separated relative paths.

    Links are listed, never followed (a link to a folder is one entry); folders are not listed.
    """
    root = Path(folder)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        links = [d for d in dirnames if (here / d).is_symlink()]  # os.walk lists them as folders
        dirnames[:] = [d for d in dirnames if d not in links]
        out.extend((here / f).relative_to(root).as_posix() for f in [*filenames, *links])
    return sorted(out)


def write_marker(
    folder: str | os.PathLike[str],
    kind: str,
    format_version: int,
    *,
    fingerprint: str,
    files: Iterable[str] | None = None,
) -> Path:
    """Record that gliomagen wrote ``folder``: its kind, format, fingerprint and files' digests.

    Args:
        folder: the finished folder (write the marker last).
        kind: what the folder is (``store``, ...); names the marker file.
        format_version: the folder format's version.
        fingerprint: the folder's identity as its kind defines it.
        files: the files to list (default: every file in ``folder``).

    Returns:
        The marker's path.
    """
    root = Path(folder)
    marker = marker_path(root, kind)
    names = [n for n in (entries(root) if files is None else files) if n != marker.name]
    listed = {
        n: {"size": (root / n).stat().st_size, "digest": quick_digest(root / n)} for n in names
    }
    data = {"kind": kind, "format": format_version, "created_by": f"gliomagen {__version__}",
            "fingerprint": fingerprint, "files": listed}  # fmt: skip
    return write_json(marker, data)


def read_marker(folder: str | os.PathLike[str], kind: str) -> dict[str, Any] | None:
    """The marker of ``kind`` in ``folder``; ``None`` when there is none.

    Raises:
        ValueError: a marker file is there but is not a readable marker of ``kind``.
    """
    path = marker_path(folder, kind)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable marker ({exc})") from None
    if (
        not isinstance(data, dict)
        or data.get("kind") != kind
        or not isinstance(data.get("files"), dict)
    ):
        raise ValueError(f"{path}: not a gliomagen {kind} marker")
    return data


def foreign_entries(folder: str | os.PathLike[str], marker: dict[str, Any]) -> list[str]:
    """Entries of ``folder`` its ``marker`` does not list (the marker itself and :data:`CLUTTER` aside)."""
    known = set(marker["files"]) | {marker_path(folder, str(marker["kind"])).name}
    return [e for e in entries(folder) if e not in known and Path(e).name not in CLUTTER]
