"""``gliomagen evaluate`` (metrics + HTML report of a synthetic cohort) and ``gliomagen report`` (rebuild it)."""

from __future__ import annotations

from pathlib import Path

import typer

from gliomagen.cli._common import user_errors
from gliomagen.cli._options import CHECKPOINT_TAKES, DEVICE_HELP, out_option, quiet_option
from gliomagen.errors import GliomagenError

_REAL = typer.Option(
    ...,
    "--real",
    "--store",
    help="Held-out real cases: STORE:split, or STORE (its test split, else val); --store is the "
    "same option.",
)
_SYNTHETIC = typer.Option(
    ...,
    "--synthetic",
    help="Synthetic cases: a folder of NIfTI cases (a cohort from generate must be complete) or a store.",
)
_OUT = out_option(
    ...,
    "Report folder: index.html, metrics.json, figures/; written whole at the end (an earlier "
    "report there is replaced; any other non-empty folder is refused).",
)
_TRAIN = typer.Option(
    None,
    "--train",
    help="Real training cases, STORE:train (default: the train split of --real's store).",
)
_EXTRACTOR = typer.Option(
    "probe", "--extractor", help="Feature extractor: probe, medicalnet or slices."
)
_WEIGHTS = typer.Option(
    None,
    "--weights",
    help="medicalnet: a MedicalNet .pth state_dict (loaded weights_only); slices: a TorchScript 2D network, e.g. an InceptionV3 for 2D FID/KID on slice stores (TorchScript runs code: use only files you trust).",
)
_SLICE_SIZE = typer.Option(
    None,
    "--slice-size",
    help="--extractor slices: resize slices to this square side first (e.g. 299 for InceptionV3).",
)
_CHECKPOINT = typer.Option(
    None,
    "--checkpoint",
    help="The generator whose w space held-out cases are projected into (the reconstruction "
    "audit) and, with --judge, that the conditioning judge samples: " + CHECKPOINT_TAKES,
)
_RUN = typer.Option(None, "--run", help="Run folder whose training curves go into the report.")
_BOOTSTRAP = typer.Option(
    100, "--bootstrap", help="Bootstrap resamples for the confidence intervals."
)
_SEED = typer.Option(0, "--seed", help="Seed of every random choice (pairs, bootstrap, probe).")
_PAIRS = typer.Option(100, "--pairs", help="MS-SSIM pairs per set and condition (diversity).")
_PROBE_STEPS = typer.Option(300, "--probe-steps", help="Training steps of the probe extractor.")
_PROBE_SIZE = typer.Option(32, "--probe-size", help="Longest side of the probe's input grid.")
_RECONSTRUCT = typer.Option(
    8, "--reconstruct", help="Held-out cases to project (with --checkpoint)."
)
_JUDGE = typer.Option(
    0,
    "--judge",
    help="Conditioning judge (needs --checkpoint): generate N samples per grade (HGG, LGG) and per "
    "value of --judge-by, the other conditions drawn as `gliomagen generate` draws them, seeded by "
    "--seed; report each value's faithful HGG / LGG rate with a 95% Wilson interval against the "
    "targets 0.8 / 0.9, beside the same rates of the --train cases. 0 = off.",
)
_JUDGE_BY = typer.Option(
    "cohort",
    "--judge-by",
    help="--judge: the categorical condition of the checkpoint to judge per value (not grade).",
)
_JUDGE_TRUNCATION = typer.Option(
    1.0,
    "--judge-truncation",
    help="--judge: truncate each sample's w toward its condition's mean by this psi in (0, 1] "
    "(1 = none), as `gliomagen generate --truncation` samples.",
)
_BATCH_SIZE = typer.Option(4, "--batch-size", help="Cases per batch when reading and extracting.")
_DEVICE = typer.Option(
    "auto",
    "--device",
    help=f"Where the networks run (features, probe, projection): {DEVICE_HELP}.",
)
_QUIET = quiet_option()


def evaluate(
    real: str = _REAL,
    synthetic: str = _SYNTHETIC,
    out: Path = _OUT,
    train: str | None = _TRAIN,
    extractor: str = _EXTRACTOR,
    weights: Path | None = _WEIGHTS,
    slice_size: int | None = _SLICE_SIZE,
    checkpoint: Path | None = _CHECKPOINT,
    run: Path | None = _RUN,
    bootstrap: int = _BOOTSTRAP,
    seed: int = _SEED,
    pairs: int = _PAIRS,
    probe_steps: int = _PROBE_STEPS,
    probe_size: int = _PROBE_SIZE,
    reconstruct: int = _RECONSTRUCT,
    judge: int = _JUDGE,
    judge_by: str = _JUDGE_BY,
    judge_truncation: float = _JUDGE_TRUNCATION,
    batch_size: int = _BATCH_SIZE,
    device: str = _DEVICE,
    quiet: bool = _QUIET,
) -> None:
    """Evaluate a synthetic cohort against held-out real cases: FD/KID/PRDC with a real-vs-real floor,
    diversity, memorisation, conditional fidelity, mask and intensity realism (and, with --judge, the
    checkpoint's conditioning judge); writes an HTML report."""
    # torch-heavy: loaded when the command runs, so `gliomagen --help` starts fast
    from gliomagen.evaluation.judge_section import summary_line
    from gliomagen.evaluation.probe import ProbeOptions
    from gliomagen.report.html import evaluate_report as run_evaluation

    if bootstrap < 0:
        raise GliomagenError(f"--bootstrap {bootstrap}: must be >= 0")
    if pairs < 1:
        raise GliomagenError(f"--pairs {pairs}: must be >= 1")
    if batch_size < 1:
        raise GliomagenError(f"--batch-size {batch_size}: must be >= 1")
    if probe_steps < 1:
        raise GliomagenError(f"--probe-steps {probe_steps}: must be >= 1")
    if slice_size is not None and not 16 <= slice_size <= 1024:
        raise GliomagenError(f"--slice-size {slice_size}: must be in 16..1024")
    metrics = run_evaluation(
        real, synthetic, out, train=train, extractor=extractor, weights=weights, checkpoint=checkpoint, run=run,
        n_boot=bootstrap, seed=seed, n_pairs=pairs, batch_size=batch_size, n_reconstruct=reconstruct,
        n_judge=judge, judge_by=judge_by, judge_truncation=judge_truncation,
        probe_options=ProbeOptions(size=probe_size, steps=probe_steps, seed=seed), device=device,
        progress=not quiet, slice_size=slice_size,
    )  # fmt: skip
    if metrics.get("conditioning_judge"):
        typer.echo(summary_line(metrics["conditioning_judge"]))
    overall = metrics["distances"]["all"]
    fd_syn = overall.get("synthetic", {}).get("fd", {}).get("value")
    fd_floor = overall.get("floor", {}).get("fd", {}).get("value")
    memo = metrics["memorisation"]
    typer.echo(
        f"FD {fd_syn:.4g} (floor {fd_floor:.4g}); {memo['n_flagged']} of {len(memo['cases'])} synthetic cases "
        f"flagged for memorisation; report: {Path(out) / 'index.html'}"
        if fd_syn is not None and fd_floor is not None
        else f"report: {Path(out) / 'index.html'}"
    )


def report(
    path: Path = typer.Argument(
        ..., metavar="PATH", help="A report folder (with metrics.json) or a run folder."
    ),
    run: Path | None = typer.Option(
        None, "--run", help="Run folder whose current training curves to use."
    ),
) -> None:
    """Rebuild index.html from metrics.json (and the run folder's training curves)."""
    # torch-heavy (the page imports the evaluation pipeline): loaded when the command runs
    from gliomagen.report.html import rebuild

    for page in rebuild(path, run=run):
        typer.echo(str(page))


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``report`` to the ``gliomagen`` command."""
    app.command("evaluate")(user_errors(evaluate))
    app.command("report")(user_errors(report))
