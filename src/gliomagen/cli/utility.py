"""``gliomagen utility``: does synthetic data help a segmenter on the scarce cohort?"""

from __future__ import annotations

from pathlib import Path

import typer

from gliomagen.cli._common import int_list, split_list, user_errors
from gliomagen.errors import GliomagenError


def register(app: typer.Typer) -> None:
    """Add the ``utility`` command to the ``gliomagen`` app."""

    @app.command("utility")
    @user_errors
    def utility(
        real: Path = typer.Option(
            ..., "--real", help="Store of the real cohorts (gliomagen prepare)."
        ),
        synthetic: Path = typer.Option(
            None,
            "--synthetic",
            help="Synthetic cohort: a BraTS-layout folder (gliomagen generate) or a store.",
        ),
        cohort: str = typer.Option(
            "SSA", "--cohort", help="The scarce cohort whose held-out cases are scored."
        ),
        out: Path = typer.Option(
            ..., "--out", help="Output folder: utility.json, utility.png, index.html."
        ),
        arms: str = typer.Option(
            "real,real+large,synthetic,real+synthetic,real+large+synthetic",
            "--arms",
            help="Comma-separated arms; real (the baseline) always runs.",
        ),
        seeds: str = typer.Option(
            "0,1,2", "--seeds", help="Comma-separated seeds, one run per arm and seed."
        ),
        steps: int = typer.Option(200, "--steps", help="Optimisation steps per run (every arm)."),
        batch_size: int = typer.Option(2, "--batch-size", help="Cases per step (every arm)."),
        mix_ratio: float = typer.Option(
            0.5, "--mix-ratio", help="Fraction of synthetic cases in the mixed arms."
        ),
        network: str = typer.Option("segresnet", "--network", help="segresnet or unet (MONAI)."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        large_cohort: str = typer.Option(
            None,
            "--large-cohort",
            help="Comma-separated large cohort(s); default: every other cohort.",
        ),
        heldout: str = typer.Option(
            "val+test", "--heldout", help="Scored split(s) of the cohort: val+test or test."
        ),
        lr: float = typer.Option(2e-3, "--lr", help="Adam learning rate."),
        init_filters: int = typer.Option(
            8, "--init-filters", help="Width of the network's first level."
        ),
    ) -> None:
        """Train a segmenter in matched arms (real, +large, synthetic, mixes) and score it on real held-out cases."""
        from gliomagen.evaluation.utility import format_table, run_utility

        if not real.is_dir():
            raise GliomagenError(f"--real {real}: no such store folder")
        if synthetic is not None and not synthetic.is_dir():
            raise GliomagenError(f"--synthetic {synthetic}: no such folder")
        if init_filters < 1:
            raise GliomagenError(f"--init-filters {init_filters}: must be at least 1")
        report = run_utility(
            real,
            synthetic,
            cohort,
            out,
            arms=split_list(arms),
            seeds=int_list(seeds, "--seeds"),
            steps=steps,
            batch_size=batch_size,
            mix_ratio=mix_ratio,
            network=network,
            device=device,
            large_cohort=split_list(large_cohort) if large_cohort else None,
            heldout=heldout,
            lr=lr,
            init_filters=init_filters,
        )
        typer.echo(format_table(report))
        typer.echo(f"wrote {out / 'utility.json'}, {out / 'utility.png'}, {out / 'index.html'}")
