"""The ``gliomagen`` command (typer).

Each subcommand lives in its own module of this package and registers itself through
``register(app)``; the modules are thin: they parse options, call the Python API and turn a
:class:`gliomagen.errors.GliomagenError` into one line on stderr and exit code 2. The group
(:class:`gliomagen.cli._common.OneLineGroup`) keeps every other message to one line too: usage
errors, warnings, and ``error: interrupted`` after Ctrl-C (exit 130) or SIGTERM (exit 143).
``--help`` is plain click text (no rich boxes), wrapped to the terminal and never cut; the option
names shared by the commands are in :mod:`gliomagen.cli._options`.
"""

from __future__ import annotations

import importlib
import sys

import typer

from gliomagen import __version__
from gliomagen.cli._common import OneLineGroup

app = typer.Typer(
    name="gliomagen",
    cls=OneLineGroup,
    help="Conditional 3D StyleGAN for multi-parametric glioma MRI: "
    "phantoms -> prepare -> train -> generate -> evaluate -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Subcommand modules, in pipeline order. A module listed here defines ``register(app)``.
_COMMAND_MODULES = (
    "phantoms",
    "prepare",
    "train",
    "generate",
    "evaluate",
    "utility",
    "export",
    "bench",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gliomagen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """gliomagen: synthesise multi-parametric brain MRI of glioma patients with a conditional 3D StyleGAN."""


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"gliomagen.cli.{name}")
        except ModuleNotFoundError as exc:  # a command whose module has not landed yet
            if exc.name == f"gliomagen.cli.{name}":
                continue
            raise
        module.register(app)


_register_all()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``gliomagen`` script."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="gliomagen")
