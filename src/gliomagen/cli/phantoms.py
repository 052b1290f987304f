"""``gliomagen phantoms``: write the built-in BraTS-like phantom cohort."""

from __future__ import annotations

from pathlib import Path

import typer

from gliomagen.cli._common import user_errors
from gliomagen.cli._options import out_option, quiet_option, workers_option


@user_errors
def phantoms(
    out: Path = out_option(..., "Output folder (BraTS 2023 layout + clinical.csv)."),
    cohorts: str = typer.Option(
        "GLI=200,SSA=24", "--cohorts", help="Cases per cohort, NAME=COUNT[,NAME=COUNT]."
    ),
    resolution: int = typer.Option(
        2, "--resolution", help="Voxel size in mm: 2 (120x120x78, fast) or 1 (240x240x155)."
    ),
    seed: int = typer.Option(0, "--seed", help="Cohort seed; the same seed gives identical files."),
    workers: int = workers_option("Worker processes."),
    quiet: bool = quiet_option(),
) -> None:
    """Write a labelled, BraTS-like phantom cohort (no download): GLI and a shifted, scarce SSA cohort."""
    # scipy-heavy (about 1 s): loaded when the command runs, not at every CLI start
    from gliomagen.data.phantoms import generate_cohort, parse_cohorts

    sizes = parse_cohorts(cohorts)
    generate_cohort(
        out, sizes, resolution=resolution, seed=seed, workers=workers, progress=not quiet
    )
    typer.echo(f"wrote {sum(sizes.values())} phantom cases and {out / 'clinical.csv'}")


def register(app: typer.Typer) -> None:
    """Add the ``phantoms`` command to the ``gliomagen`` app."""
    app.command("phantoms")(phantoms)
