"""One atomic writer for files and folders: write under a temporary name beside the target, then
``os.replace`` it into place, so a reader (or a rerun after a crash) sees the old artefact or the
new one, never half of one. The temporary names start with a dot and end in ``.tmp``.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_json(d / "a.json", {"x": float("nan")})
    >>> (d / "a.json").read_text()
    '{\\n "x": null\\n}\\n'
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary file name beside ``path``; on success it replaces ``path``.

    For writers that take a file name (``torch.save``, ``nib.save``, ``savefig``, ``np.save``).
    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(
    path: str | os.PathLike[str], mode: int = 0o755, *, replace: bool = False
) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; on success it is renamed to ``path``.

    By default ``path`` must not exist yet (a folder is never replaced: the caller decides whether
    an existing one may go); with ``replace=True`` a folder already at ``path`` is swapped for the
    new one by :func:`replace_dir`. On any exception the temporary folder is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, mode)
        if replace:
            replace_dir(tmp, path)
        else:
            os.rename(tmp, path)  # fails rather than replace an existing non-empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Move the finished folder ``tmp`` to ``path``, replacing a folder already there.

    The old folder is first renamed aside to ``.<name>.old-<pid>`` beside ``path`` (so a cleaner
    can tell a live run's leftovers from a dead one's), the new one renamed in, then the old one
    removed. A reader sees the old folder or the new one, never a mix (for an instant, none).
    ``tmp`` must be on the same file system as ``path``.

    Returns:
        ``path``.
    """
    path = Path(path)
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.rename(path, old)
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)  # put the old folder back: never leave neither
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)
    return path


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (readers see the old file or the new one, never half)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically (no newline translation)."""
    return write_bytes(path, text.encode("utf-8"))


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def clean_json(x: Any) -> Any:
    """Replace NaN/inf by ``None`` recursively (JSON has no NaN) and numpy scalars by Python ones."""
    if isinstance(x, dict):
        return {k: clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (NaN/inf become null)."""
    text = json.dumps(clean_json(data), indent=1, allow_nan=False, default=_jsonable)
    return write_text(path, text + "\n")
