"""The cohort folder: checked first, written whole under a temporary name, renamed at the end.

A cohort is written into a hidden folder beside ``--out`` (:func:`gliomagen.io.staging.staged_dir`)
and renamed to ``--out`` only once every case, ``clinical.csv`` and ``manifest.json`` are there.
So ``--out`` holds a whole cohort or nothing; a killed run's hidden folder is removed by the next
run for the same ``--out``; write errors (``ENOSPC`` and any other ``OSError``) become one
:class:`GliomagenError` line naming the path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gliomagen.errors import GliomagenError
from gliomagen.io.staging import staged_dir


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
    with staged_dir(out, left=f"nothing was written to --out {out}") as tmp:
        yield tmp
