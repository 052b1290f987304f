"""The run folder: checked before anything is written, created only once every check has passed.

:class:`RunFolder` keeps three promises of a run:

- nothing is written before the run's checks pass (a refused ``--resume`` or a bad store leaves
  the folder as it was: no TensorBoard file, no log line, no new folder);
- a run that fails before its first optimiser step leaves no new folder behind: the folder (and
  any parent) it created is removed again; a folder that existed is never removed;
- a write that fails (a full disk) is one line, :class:`~gliomagen.io.checkpoint.WriteError`
  ``<path>: <reason>`` (:func:`writing`), and the temporary files a killed run left half written
  are cleared when the next run starts.
"""

from __future__ import annotations

import errno
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gliomagen.errors import GliomagenError
from gliomagen.io.checkpoint import (
    CHECKPOINT_DIR,
    WriteError,
    list_checkpoints,
    remove_partial_writes,
)

PARTIAL_WRITE_FOLDERS = (".", CHECKPOINT_DIR, "samples")
"""Sub-folders of a run whose atomic writers may leave temporary files when killed."""

DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})
"""OSError numbers that say a write failed, whatever the file."""


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an OSError raised inside into a :class:`~gliomagen.io.checkpoint.WriteError` naming
    ``path`` (one line ``<path>: <reason>``)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(path, exc) from None


def disk_error(exc: OSError, run_dir: str | Path) -> OSError:
    """A one-line :class:`~gliomagen.io.checkpoint.WriteError` for an OSError of a file (named:
    its name, else the run folder) or of the disk; any other OSError (a network error of a
    data-parallel run) as it is."""
    if isinstance(exc, GliomagenError) or (exc.filename is None and exc.errno not in DISK_ERRNOS):
        return exc
    return WriteError(exc.filename if exc.filename is not None else run_dir, exc)


def warn(message: str) -> None:
    """Print one ``warning: <message>`` line on stderr."""
    print(f"warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


class RunFolder:
    """A run's folder on one worker (only the main worker writes).

    Args:
        path: the run folder.
        is_main: whether this worker writes.
    """

    def __init__(self, path: str | Path, is_main: bool = True) -> None:
        self.path, self.is_main = Path(path), is_main
        self.created: Path | None = None  # the top folder this run made (removed on early failure)

    def check(self, resume: bool) -> None:
        """Refuse a ``--resume`` without checkpoints, and a new run over an old one's checkpoints.

        Raises:
            GliomagenError: naming the folder and what to do.
        """
        if self.path.exists() and not self.path.is_dir():
            raise GliomagenError(f"{self.path}: exists and is not a folder; choose another --run")
        has = bool(list_checkpoints(self.path))
        if resume and not has:
            raise GliomagenError(f"--resume: {self.path} has no checkpoints to resume from")
        if not resume and has:
            raise GliomagenError(
                f"{self.path} already holds checkpoints; pass --resume or choose another --run"
            )

    def create(self) -> list[Path]:
        """Make the folder (main worker) and clear the temporary files a killed run left.

        Returns:
            The temporary files removed.
        """
        if not self.is_main:
            return []
        top = self.path
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        with writing(self.path):
            existed = self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
        self.created = None if existed else top
        return [p for sub in PARTIAL_WRITE_FOLDERS for p in remove_partial_writes(self.path / sub)]

    def discard_if_new(self) -> None:
        """Remove the folder (and the parents) this run created; an existing folder stays."""
        if self.is_main and self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
            self.created = None

    def keep(self) -> None:
        """The run has done a step: its folder stays whatever happens next."""
        self.created = None


__all__ = ["DISK_ERRNOS", "PARTIAL_WRITE_FOLDERS", "RunFolder", "disk_error", "warn", "writing"]
