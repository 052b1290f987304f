"""``gliomagen generate`` (a synthetic BraTS-layout cohort) and ``gliomagen interpolate`` (latent walks)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from gliomagen.cli._common import fail, user_errors
from gliomagen.errors import GliomagenError


def _command_line() -> str:
    return shlex.join(["gliomagen", *sys.argv[1:]])


def generate(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="Checkpoint written by `gliomagen train`."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (new or empty)."),
    n: int = typer.Option(..., "--n", help="Number of cases."),
    condition: list[str] = typer.Option(
        [],
        "--condition",
        help="name=value for every case; repeat for several fields (e.g. grade=HGG).",
    ),
    conditions_csv: Path | None = typer.Option(
        None,
        "--conditions-csv",
        help="CSV of condition rows with an optional weight column: the cohort follows that mixture.",
    ),
    truncation: float = typer.Option(
        1.0,
        "--truncation",
        help="psi: pull w toward the mean w of each case's condition (1 = none, 0 = the mean).",
    ),
    seed: int = typer.Option(0, "--seed", help="Case i uses seed SEED + i."),
    batch_size: int = typer.Option(
        4,
        "--batch-size",
        help="Cases per generator call on a GPU (the CPU runs one at a time, for bit-exact cases).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    space: str | None = typer.Option(
        None,
        "--space",
        help="brats: 1 mm 240x240x155 grid of the training data (the default in 3D); native: the "
        "generator's grid (a 2D model writes its slices there).",
    ),
    fmt: str = typer.Option("float32", "--format", help="Image voxel type: float32 or int16."),
    mix_seed: int | None = typer.Option(
        None, "--mix-seed", help="Style mixing: fine styles from seed MIX_SEED + i."
    ),
    mix_layer: int | None = typer.Option(
        None, "--mix-layer", help="Style mixing: first style input taken from --mix-seed."
    ),
    noise: str = typer.Option(
        "random", "--noise", help="Noise inputs: random (seeded per case), const or none."
    ),
    latent_prior: str | None = typer.Option(
        None,
        "--latent-prior",
        help="fitted: z from the Gaussian fitted to the encoded training cases (the default for "
        "models trained with model.latent_prior=fitted); normal: z ~ N(0, I) (the default otherwise).",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Generate a synthetic cohort: SYN-xxxxx/SYN-xxxxx-{t1n,t1c,t2w,t2f,seg}.nii.gz, clinical.csv, manifest.json.

    A 2D model (trained on a `prepare --slices` store) writes slices: 2-D NIfTI and PNG per
    modality, the mask and an overlay PNG per slice, and overview.png; --condition view=axial
    picks the view (unset: the views in turn) and position=0..1 the slice (unset: drawn).
    """
    from gliomagen.generation import generate_cohort
    from gliomagen.generation.plan import split_assignments

    if (mix_seed is None) != (mix_layer is None):
        raise fail("--mix-seed and --mix-layer go together")
    conditions = split_assignments(condition, "--condition") if condition else None
    path = generate_cohort(
        checkpoint,
        out,
        n,
        conditions=conditions,
        conditions_csv=conditions_csv,
        truncation=truncation,
        seed=seed,
        batch_size=batch_size,
        device=device,
        space=space,
        fmt=fmt,
        mix=None if mix_seed is None or mix_layer is None else (mix_seed, mix_layer),
        progress=not quiet,
        noise_mode=noise,
        command_line=_command_line(),
        latent_prior=latent_prior,
    )
    typer.echo(f"wrote {n} {'slices' if (path / 'overview.png').is_file() else 'cases'} to {path}")


def _seed_pair(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise GliomagenError(f"--seeds {text!r}: expected two integers A,B") from None
    if len(seeds) != 2:
        raise GliomagenError(f"--seeds {text!r}: expected two integers A,B")
    return seeds


def interpolate(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="Checkpoint written by `gliomagen train`."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for interpolation.png and interpolation.gif."
    ),
    seeds: str | None = typer.Option(None, "--seeds", help="Walk between two seeds: A,B."),
    conditions: tuple[str, str] | None = typer.Option(
        None, "--conditions", help='Walk between two conditions at --seed: "grade=LGG" "grade=HGG".'
    ),
    condition: list[str] = typer.Option(
        [], "--condition", help="name=value held fixed during a --seeds walk."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of a --conditions walk."),
    steps: int = typer.Option(8, "--steps", help="Frames, both ends included."),
    truncation: float = typer.Option(
        1.0, "--truncation", help="psi toward each end's condition mean."
    ),
    modality: str = typer.Option(
        "t1c", "--modality", help="Modality shown (t1n, t1c, t2w or t2f)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Interpolate in w between two seeds or two conditions: a PNG strip and an animated GIF."""
    from gliomagen.generation.interpolate import interpolate as run
    from gliomagen.generation.plan import split_assignments

    if (seeds is None) == (conditions is None):
        raise fail("interpolate: give either --seeds A,B or --conditions A B")
    fixed = split_assignments(condition, "--condition") if condition else None
    paths = run(
        checkpoint,
        out,
        seeds=_seed_pair(seeds) if seeds is not None else None,
        conditions=list(conditions) if conditions is not None else None,
        condition=fixed,
        seed=seed,
        steps=steps,
        truncation=truncation,
        modality=modality,
        device=device,
    )
    typer.echo(f"wrote {paths['png']} and {paths['gif']}")


def register(app: typer.Typer) -> None:
    """Add ``generate`` and ``interpolate`` to the ``gliomagen`` app."""
    app.command("generate")(user_errors(generate))
    app.command("interpolate")(user_errors(interpolate))
