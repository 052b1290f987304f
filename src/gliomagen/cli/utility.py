"""``gliomagen utility``: does synthetic data help a segmenter on the scarce cohort?"""

from __future__ import annotations

from pathlib import Path

import typer

from gliomagen.cli._common import int_list, split_list, user_errors
from gliomagen.errors import GliomagenError

_REAL = typer.Option(..., "--real", help="Store of the real cohorts (gliomagen prepare).")
_SYNTHETIC = typer.Option(
    None,
    "--synthetic",
    help="Synthetic cohort: a BraTS-layout folder (gliomagen generate) or a store.",
)
_COHORT = typer.Option(
    "SSA", "--cohort", help="The scarce cohort whose held-out cases are scored."
)
_OUT = typer.Option(..., "--out", help="Output folder: utility.json, utility.png, index.html.")
_ARMS = typer.Option(
    "real,real+large,synthetic,real+synthetic,real+large+synthetic",
    "--arms",
    help="Comma-separated arms; real (the baseline) always runs.",
)
_SEEDS = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds, one run per arm and seed.")
_STEPS = typer.Option(200, "--steps", help="Optimisation steps per run (every arm).")
_BATCH_SIZE = typer.Option(2, "--batch-size", help="Cases per step (every arm).")
_MIX_RATIO = typer.Option(
    0.5, "--mix-ratio", help="Fraction of synthetic cases in the mixed arms."
)
_NETWORK = typer.Option("segresnet", "--network", help="segresnet or unet (MONAI).")
_DEVICE = typer.Option(
    "auto", "--device", help="auto (default: CUDA when a GPU is present, else the CPU), cpu, cuda or cuda:N."
)
_LARGE_COHORT = typer.Option(
    None,
    "--large-cohort",
    help="Comma-separated large cohort(s); default: every other cohort.",
)
_HELDOUT = typer.Option(
    "val+test", "--heldout", help="Scored split(s) of the cohort: val+test or test."
)
_LR = typer.Option(2e-3, "--lr", help="Adam learning rate.")
_INIT_FILTERS = typer.Option(8, "--init-filters", help="Width of the network's first level.")


def register(app: typer.Typer) -> None:
    """Add the ``utility`` command to the ``gliomagen`` app."""
    app.command("utility")(user_errors(utility))


def utility(
    real: Path = _REAL,
    synthetic: Path = _SYNTHETIC,
    cohort: str = _COHORT,
    out: Path = _OUT,
    arms: str = _ARMS,
    seeds: str = _SEEDS,
    steps: int = _STEPS,
    batch_size: int = _BATCH_SIZE,
    mix_ratio: float = _MIX_RATIO,
    network: str = _NETWORK,
    device: str = _DEVICE,
    large_cohort: str = _LARGE_COHORT,
    heldout: str = _HELDOUT,
    lr: float = _LR,
    init_filters: int = _INIT_FILTERS,
) -> None:
    """Train a segmenter in matched arms (real, +large, synthetic, mixes) and score it on real held-out cases."""
    # torch-heavy: loaded when the command runs
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
