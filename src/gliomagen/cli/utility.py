"""``gliomagen utility``: does synthetic data help a segmenter on the scarce cohort?"""

from __future__ import annotations

from pathlib import Path

import typer

from gliomagen.cli._common import int_list, split_list, user_errors
from gliomagen.cli._options import out_option, quiet_option
from gliomagen.errors import GliomagenError

_REAL = typer.Option(
    ...,
    "--real",
    "--store",
    help="Store of the real cohorts (gliomagen prepare); --store is the same option.",
)
_SYNTHETIC = typer.Option(
    None,
    "--synthetic",
    help="Synthetic cohort: a BraTS-layout folder (gliomagen generate) or a store.",
)
_COHORT = typer.Option("SSA", "--cohort", help="The scarce cohort whose held-out cases are scored.")
_OUT = out_option(..., "Output folder: utility.json, utility.png, index.html.")
_ARMS = typer.Option(
    "real,real+large,large-then-real,real+synthetic,real+large+synthetic,large-then-real+synthetic,synthetic",
    "--arms",
    help="Comma-separated arms: real, real+large (joint), large-then-real (pretrain on the large "
    "cohort, fine-tune on the scarce one), each +synthetic, synthetic alone; SYNTHETIC-ARM@Mx for "
    "M x n synthetic cases. real (the baseline) always runs.",
)
_SEEDS = typer.Option("0,1,2", "--seeds", help="Comma-separated seeds, one run per arm and seed.")
_STEPS = typer.Option(
    2000,
    "--steps",
    help="Optimisation steps per run (every arm; after pretraining). The real arm must converge "
    "(the report checks it); arms with more data keep improving longer.",
)
_BATCH_SIZE = typer.Option(2, "--batch-size", help="Cases per step (every arm).")
_MIX_RATIO = typer.Option(0.5, "--mix-ratio", help="Fraction of synthetic cases in the mixed arms.")
_NETWORK = typer.Option("segresnet", "--network", help="segresnet or unet (MONAI).")
_DEVICE = typer.Option(
    "auto",
    "--device",
    help="auto (default: CUDA when a GPU is present, else the CPU), cpu, cuda or cuda:N.",
)
_LARGE_COHORT = typer.Option(
    None,
    "--large-cohort",
    help="Comma-separated large cohort(s); default: every other cohort.",
)
_HELDOUT = typer.Option(
    "test",
    "--heldout",
    help="Scored split(s) of the cohort: test, or val+test (only with --val-every 0: val chooses "
    "checkpoints otherwise).",
)
_VAL_EVERY = typer.Option(
    100,
    "--val-every",
    help="Steps between scores on the cohort's val split; each arm keeps its best-val weights "
    "(0: the last weights).",
)
_PRETRAIN_STEPS = typer.Option(
    None, "--pretrain-steps", help="Large-cohort steps of large-then-real (default: --steps)."
)
_MULTIPLES = typer.Option(
    "1",
    "--synthetic-multiple",
    help="Comma-separated synthetic pool sizes in units of n, e.g. 1,4 (cases follow the real "
    "training cases' mix of cohort and grade).",
)
_REAL_CASES = typer.Option(
    None,
    "--real-cases",
    help="File of case ids (one per line, or a CSV with case_id): the cohort's train cases to use "
    "(default: all of them).",
)
_JOBS = typer.Option(1, "--jobs", help="Runs in parallel, as processes with --threads each.")
_THREADS = typer.Option(
    None,
    "--threads",
    help="torch CPU threads per run (default: torch's own here, 1 per --jobs process).",
)
_OUTPUTS = typer.Option(
    "regions",
    "--outputs",
    help="regions (WT/TC/ET sigmoids, Dice + BCE: BraTS region-based) or labels (4-class softmax).",
)
_DISCRIMINATOR = typer.Option(
    None,
    "--discriminator",
    help="The checkpoint (or RUN folder) of the generator that made --synthetic: the privacy "
    "report adds the membership attack through its discriminator's score of the scarce training "
    "and held-out cases (full-volume models).",
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
    val_every: int = _VAL_EVERY,
    pretrain_steps: int = _PRETRAIN_STEPS,
    synthetic_multiple: str = _MULTIPLES,
    real_cases: Path = _REAL_CASES,
    jobs: int = _JOBS,
    threads: int | None = _THREADS,
    outputs: str = _OUTPUTS,
    discriminator: Path = _DISCRIMINATOR,
    quiet: bool = quiet_option(),
) -> None:
    """Train a segmenter in matched arms (real, +large, large-then-real, synthetic mixes), choose
    each arm's checkpoint on the cohort's val cases and score it on its real test cases."""
    # torch-heavy: loaded when the command runs
    from gliomagen.evaluation.utility import format_table, read_case_ids, run_utility

    if not real.is_dir():
        raise GliomagenError(f"--real {real}: no such store folder")
    if synthetic is not None and not synthetic.is_dir():
        raise GliomagenError(f"--synthetic {synthetic}: no such folder")
    if real_cases is not None and not real_cases.is_file():
        raise GliomagenError(f"--real-cases {real_cases}: no such file")
    if discriminator is not None:
        if synthetic is None:
            raise GliomagenError(
                "--discriminator: needs --synthetic (the cohort its generator made)"
            )
        if not discriminator.exists():
            raise GliomagenError(
                f"--discriminator {discriminator}: no such checkpoint or run folder"
            )
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
        val_every=val_every,
        pretrain_steps=pretrain_steps,
        synthetic_multiples=int_list(synthetic_multiple, "--synthetic-multiple"),
        real_cases=None if real_cases is None else read_case_ids(real_cases),
        jobs=jobs,
        threads=threads,
        outputs=outputs,
        discriminator=discriminator,
        progress=not quiet,
    )
    typer.echo(format_table(report))
    typer.echo(f"wrote {out / 'utility.json'}, {out / 'utility.png'}, {out / 'index.html'}")
