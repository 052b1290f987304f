"""The options every command spells the same way, and the help texts they share.

One name for one thing across commands (old spellings stay as aliases where they differed):

* ``-o/--out``: where a command writes its output (a folder, except where a command's help says
  it also takes a file name of the old form);
* ``-j/--workers``: worker processes;
* ``-n/--n``: a number of cases;
* ``-q/--quiet``: no progress bar or progress messages (results, warnings and errors still print);
* ``--device``: ``auto`` (the default: CUDA when a GPU is present, else the CPU), ``cpu``,
  ``cuda`` or ``cuda:N``, on every command that runs a network;
* ``--checkpoint``: a checkpoint file or a run folder (:data:`CHECKPOINT_TAKES`).

:data:`OUT`, :data:`QUIET`, :data:`WORKERS` and :data:`COUNT` are the names (long first), which
``tests/test_cli_consistency.py`` checks every command against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from gliomagen.errors import GliomagenError

OUT = ("--out", "-o")
"""The output option's names."""

QUIET = ("--quiet", "-q")
"""The no-progress option's names."""

WORKERS = ("--workers", "-j")
"""The worker-processes option's names."""

COUNT = ("--n", "-n")
"""The number-of-cases option's names."""

QUIET_HELP = "No progress bar or progress messages (results, warnings and errors still print)."

DEVICE_HELP = "auto (default: CUDA when a GPU is present, else the CPU), cpu, cuda or cuda:N"
"""The start of every ``--device`` help text (commands add what runs there)."""

CHECKPOINT_TAKES = (
    "a checkpoint (.pt) written by `gliomagen train`, or a RUN folder (its newest checkpoint), "
    "i.e. RUN/checkpoints/step-*.pt with the highest step (RUN/checkpoints works too); not "
    "best.pt: pass RUN/checkpoints/best.pt for the best checkpoint by validation."
)
"""What ``--checkpoint`` takes (:func:`gliomagen.io.checkpoint.resolve_checkpoint`)."""

CHECKPOINT_HELP = f"The generator: {CHECKPOINT_TAKES}"
"""The help of ``generate`` and ``interpolate``'s ``--checkpoint``."""


def out_option(default: Any, help: str, *aliases: str) -> Any:
    """``-o/--out`` (plus ``aliases``, older names of the same option)."""
    return typer.Option(default, *OUT, *aliases, help=help)


def quiet_option(help: str = QUIET_HELP) -> Any:
    """``-q/--quiet``, off by default."""
    return typer.Option(False, *QUIET, help=help)


def workers_option(help: str) -> Any:
    """``-j/--workers``, 1 by default."""
    return typer.Option(1, *WORKERS, help=help)


def out_file(out: Path, default_name: str) -> Path:
    """The file an ``--out`` that takes a folder writes: ``out/default_name``, or ``out`` itself
    when it names a file in the older form (a name with a suffix that is not an existing folder,
    e.g. ``results.json``)."""
    if out.is_dir() or not out.suffix:
        return out / default_name
    return out


STORE_OPTION_HELP = (
    "The same as the positional STORE (every command that reads a store takes --store)."
)


def store_option() -> Any:
    """``--store``: the store as an option, beside a command's positional STORE."""
    return typer.Option(None, "--store", help=STORE_OPTION_HELP, show_default=False)


def one_store(positional: Path | None, option: Path | None) -> Path:
    """The store given once, as the positional STORE or as ``--store``; one error line otherwise."""
    given = [p for p in (positional, option) if p is not None]
    if len(given) != 1:
        what = "twice" if given else "not given"
        raise GliomagenError(f"STORE: {what}; give it once, as STORE or as --store STORE")
    return given[0]
