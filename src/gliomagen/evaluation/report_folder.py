"""A report folder (``evaluate --out``, ``utility --out``, ``report``): written whole or not at all.

* :func:`check_out` runs before any work: ``--out`` may be new, an empty folder, or a report an
  earlier run wrote (which the new one replaces); anything else is refused and left untouched.
* :func:`staged_report` yields a temporary folder beside ``--out``
  (:func:`gliomagen.io.atomic.atomic_dir`) that takes ``--out``'s place only once every file is
  written, replacing an earlier report (:func:`gliomagen.io.atomic.replace_dir`). A failed run
  removes it; a killed one leaves ``--out`` as it was, and a hidden ``.NAME.*.tmp`` folder beside
  it that the next run for the same ``--out`` removes (:func:`gliomagen.io.staging.staged_dir`,
  as for ``generate``'s cohorts).
* :func:`write_files` writes several files into an existing folder (``gliomagen report``,
  ``utility --out``): each under a temporary name first, then all renamed, so a full disk
  changes none of them.

A write error (``ENOSPC`` or any other ``OSError``) becomes one :class:`GliomagenError` line,
``<path>: <reason> (...)``, naming the file as it would have been called in ``--out``.

A folder is an earlier report when it holds nothing but a report's files (:data:`REPORT_FILES`),
among them a ``metrics.json`` with a ``format_version``, and ``figures/`` holds only PNG files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import atomic_path
from gliomagen.io.staging import staged_dir, write_error

REPORT_FILES = {"metrics.json", "index.html", "figures"}
"""Every name an evaluation report folder may hold."""



def _is_metrics(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "format_version" in data


def is_report(folder: Path) -> bool:
    """True when ``folder`` holds nothing but a gliomagen report's files (see the module)."""
    folder = Path(folder)
    names = {p.name for p in folder.iterdir()}
    if "metrics.json" not in names or not names <= REPORT_FILES:
        return False
    figures = folder / "figures"
    if figures.exists() and not (
        figures.is_dir() and all(p.is_file() and p.suffix == ".png" for p in figures.iterdir())
    ):
        return False
    return _is_metrics(folder / "metrics.json")


def check_out(out: Path) -> bool:
    """Check that ``out`` may take a new report; True when an earlier report is there.

    Raises:
        GliomagenError: ``out`` is a file, or a folder that holds anything but a report.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GliomagenError(f"--out {out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    if not is_report(out):
        raise GliomagenError(
            f"--out {out}: is not empty and not a gliomagen report; choose a new or empty folder "
            "(it was left untouched)"
        )
    return True


@contextmanager
def staged_report(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it takes ``out``'s place (see the module).

    Raises:
        GliomagenError: ``out`` may not be replaced (:func:`check_out`, checked again at the end), or
            a write failed; ``out`` is left as it was and the temporary folder removed.
    """
    out = Path(out)
    replace = check_out(out)
    with staged_dir(out, replace=replace, left=f"--out {out} was left as it was") as tmp:
        yield tmp
        if check_out(out) != replace:  # something appeared at --out meanwhile
            raise GliomagenError(f"--out {out}: changed while the report was written; run again")


def write_files(
    folder: str | os.PathLike[str], writers: Mapping[str, Callable[[Path], object]]
) -> list[Path]:
    """Write several files into ``folder``: every one in full first, then all renamed into place.

    Args:
        folder: an existing folder.
        writers: file name -> a function that writes the file's content to the path it is given
            (a temporary name beside the file).

    Returns:
        The paths written.

    Raises:
        GliomagenError: a write failed; none of the files was changed.
    """
    folder = Path(folder)
    try:
        with ExitStack() as stack:
            for name, write in writers.items():
                write(stack.enter_context(atomic_path(folder / name)))
    except OSError as exc:
        raise write_error(exc, folder, folder, f"no file in {folder} was changed") from None
    return [folder / name for name in writers]
