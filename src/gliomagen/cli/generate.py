"""``gliomagen generate`` (a synthetic BraTS-layout cohort) and ``gliomagen interpolate`` (latent walks)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer

from gliomagen.cli._common import fail, user_errors
from gliomagen.cli._options import CHECKPOINT_HELP, COUNT, DEVICE_HELP, out_option, quiet_option
from gliomagen.errors import GliomagenError


def _command_line() -> str:
    return shlex.join(["gliomagen", *sys.argv[1:]])


_CHECKPOINT = typer.Option(..., "--checkpoint", help=CHECKPOINT_HELP)
_GEN_OUT = out_option(
    ...,
    "Output folder (new or empty); written under a temporary name and renamed when complete.",
)
_N = typer.Option(None, *COUNT, help="Number of cases (seeds --seed, --seed + 1, ...); or --seeds.")
_SEED_LIST = typer.Option(
    None,
    "--seeds",
    help="One case per seed, e.g. 0-99,123 (ranges inclusive); instead of --n and --seed.",
)
_ID_PREFIX = typer.Option(
    None,
    "--id-prefix",
    help="Case ids are ID_PREFIX-s000123 (the seed); default SYN-<first 8 hex digits of the "
    "checkpoint's sha256>, so cohorts of different models never share an id.",
)
_GEN_CONDITION = typer.Option(
    [],
    "--condition",
    help="name=value for every case; repeat for several fields (e.g. grade=HGG).",
)
_CONDITIONS_CSV = typer.Option(
    None,
    "--conditions-csv",
    help="CSV of condition rows with an optional weight column: the cohort follows that mixture.",
)
_GEN_TRUNCATION = typer.Option(
    1.0,
    "--truncation",
    help="psi >= 0: pull w toward the mean w of each case's condition (1 = none, 0 = the mean; "
    "above 1 extrapolates, with a warning).",
)
_GEN_SEED = typer.Option(None, "--seed", help="Case i uses seed SEED + i (default 0).")
_BATCH_SIZE = typer.Option(
    4,
    "--batch-size",
    help="Cases per generator call on a GPU (the CPU runs one at a time, for bit-exact cases).",
)
_DEVICE = typer.Option(
    "auto",
    "--device",
    help=f"{DEVICE_HELP}. The CPU gives bit-identical cases for a seed.",
)
_SPACE = typer.Option(
    None,
    "--space",
    help="brats (the default in 3D): the training data's file grid, i.e. the most common grid of "
    "the store's input files with its shape, voxel size, affine and voxel order: for BraTS data "
    "the 240x240x155 BraTS/SRI24 grid at 1 mm, for `phantoms --resolution 2` 120x120x78 at "
    "2 mm; images are resampled linearly (background outside the generated field of view), "
    "masks by nearest neighbour (a checkpoint whose store recorded no template geometry "
    "needs native). native: the generator's own grid (the store's --size, e.g. "
    "128^3, at the store's voxel size, placed where preprocessing took a typical training "
    "brain from); a 2D model writes its slices there.",
)
_FORMAT = typer.Option("float32", "--format", help="Image voxel type: float32 or int16.")
_MIX_SEED = typer.Option(
    None, "--mix-seed", help="Style mixing: fine styles from seed MIX_SEED + i."
)
_MIX_LAYER = typer.Option(
    None, "--mix-layer", help="Style mixing: first style input taken from --mix-seed."
)
_NOISE = typer.Option(
    "random", "--noise", help="Noise inputs: random (seeded per case), const or none."
)
_LATENT_PRIOR = typer.Option(
    None,
    "--latent-prior",
    help="fitted: z from the Gaussian fitted to the encoded training cases (the default for "
    "models trained with model.latent_prior=fitted); normal: z ~ N(0, I) (the default otherwise).",
)
_UNSET = typer.Option(
    "drawn",
    "--unset",
    help="Conditions a case's request leaves unset: drawn (default: from a training case drawn "
    "given the conditions that are set, so grade=LGG gets an LGG case's enhancing fraction; "
    "written in clinical.csv, recorded in manifest.json); blended (each number between two such "
    "training cases, so clinical.csv repeats no training patient's numbers; categories from one); "
    "or unknown (the model's unknown slot, "
    "the training mean of a number). A checkpoint without its training cases' conditions "
    "leaves them unknown (and says so).",
)
_ANATOMY_FROM = typer.Option(
    [], "--anatomy-from",
    help="name=value (repeatable), e.g. cohort=GLI: each case's coarse styles (tumour position and "
    "extent, head shape) come from its own seed under these values, the rest (contrast, texture, "
    "the scanner's look) from its own conditions. For a scarce cohort whose tumours look like a "
    "large one's: its own anatomy copies its few training tumours (see the README). 3D models.",
)
_ANATOMY_LAYER = typer.Option(
    None, "--anatomy-layer", help="Crossover style input of --anatomy-from (default 2: the coarsest level)."
)
_QUIET = quiet_option()


def generate(
    checkpoint: Path = _CHECKPOINT,
    out: Path = _GEN_OUT,
    n: int | None = _N,
    seeds: str | None = _SEED_LIST,
    id_prefix: str | None = _ID_PREFIX,
    condition: list[str] = _GEN_CONDITION,
    conditions_csv: Path | None = _CONDITIONS_CSV,
    truncation: float = _GEN_TRUNCATION,
    seed: int | None = _GEN_SEED,
    batch_size: int = _BATCH_SIZE,
    device: str = _DEVICE,
    space: str | None = _SPACE,
    fmt: str = _FORMAT,
    mix_seed: int | None = _MIX_SEED,
    mix_layer: int | None = _MIX_LAYER,
    noise: str = _NOISE,
    latent_prior: str | None = _LATENT_PRIOR,
    unset: str = _UNSET,
    anatomy_from: list[str] = _ANATOMY_FROM,
    anatomy_layer: int | None = _ANATOMY_LAYER,
    quiet: bool = _QUIET,
) -> None:
    """Generate a synthetic cohort: ID/ID-{t1n,t1c,t2w,t2f,seg}.nii.gz, clinical.csv, manifest.json.

    One case per seed, with the seed in its id (ID = SYN-1a2b3c4d-s000123).

    clinical.csv: the seed, the conditions each case was generated with (requested, or drawn
    given them: --unset) and the covariates measured on each mask as `prepare` measures them
    (wt_volume_ml, enhancing_fraction, hemisphere; a covariate that is a condition keeps the
    requested or drawn value, and the measured one where it stayed unknown).

    A 2D model (trained on a `prepare --slices` store) writes slices: 2-D NIfTI and PNG per
    modality, the mask and an overlay PNG per slice, and overview.png; --condition view=axial
    picks the view (unset: the views in turn) and position=0..1 the slice (unset: drawn).
    """
    # torch-heavy: loaded when the command runs
    from gliomagen.generation import generate_cohort
    from gliomagen.generation.ids import parse_seeds
    from gliomagen.generation.plan import split_assignments

    if (mix_seed is None) != (mix_layer is None):
        raise fail("--mix-seed and --mix-layer go together")
    if seeds is not None and (n is not None or seed is not None):
        raise fail(
            "--seeds and --n/--seed exclude each other: give --seeds LIST or --n N [--seed S]"
        )
    seed_list = parse_seeds(seeds) if seeds is not None else None
    conditions = split_assignments(condition, "--condition") if condition else None
    path = generate_cohort(
        checkpoint,
        out,
        n,
        seeds=seed_list,
        id_prefix=id_prefix,
        conditions=conditions,
        conditions_csv=conditions_csv,
        truncation=truncation,
        seed=seed or 0,
        batch_size=batch_size,
        device=device,
        space=space,
        fmt=fmt,
        mix=None if mix_seed is None or mix_layer is None else (mix_seed, mix_layer),
        progress=not quiet,
        noise_mode=noise,
        command_line=_command_line(),
        latent_prior=latent_prior,
        unset=unset,
        anatomy_from=split_assignments(anatomy_from, "--anatomy-from") if anatomy_from else None,
        anatomy_layer=anatomy_layer,
    )
    count = len(seed_list) if seed_list is not None else n
    typer.echo(
        f"wrote {count} {'slices' if (path / 'overview.png').is_file() else 'cases'} to {path}"
    )
    manifest = Path(path) / "manifest.json"
    drawn = json.loads(manifest.read_text()).get("conditions_drawn") if manifest.is_file() else None
    if unset != "unknown" and isinstance(drawn, str):  # an old checkpoint: say what it did instead
        typer.echo(f"conditions the request leaves unset: {drawn}")


def _seed_pair(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise GliomagenError(f"--seeds {text!r}: expected two integers A,B") from None
    if len(seeds) != 2:
        raise GliomagenError(f"--seeds {text!r}: expected two integers A,B")
    return seeds


_WALK_OUT = out_option(..., "Folder for interpolation.png and interpolation.gif.")
_SEEDS = typer.Option(None, "--seeds", help="Walk between two seeds: A,B.")
_CONDITIONS = typer.Option(
    None, "--conditions", help='Walk between two conditions at --seed: "grade=LGG" "grade=HGG".'
)
_WALK_CONDITION = typer.Option(
    [], "--condition", help="name=value held fixed during a --seeds walk."
)
_WALK_SEED = typer.Option(0, "--seed", help="Seed of a --conditions walk.")
_STEPS = typer.Option(8, "--steps", help="Frames, both ends included.")
_WALK_TRUNCATION = typer.Option(
    1.0,
    "--truncation",
    help="psi >= 0 toward each end's condition mean (1 = none; above 1 extrapolates, with a warning).",
)
_MODALITY = typer.Option("t1c", "--modality", help="Modality shown (t1n, t1c, t2w or t2f).")


def interpolate(
    checkpoint: Path = _CHECKPOINT,
    out: Path = _WALK_OUT,
    seeds: str | None = _SEEDS,
    conditions: tuple[str, str] | None = _CONDITIONS,
    condition: list[str] = _WALK_CONDITION,
    seed: int = _WALK_SEED,
    steps: int = _STEPS,
    truncation: float = _WALK_TRUNCATION,
    modality: str = _MODALITY,
    device: str = _DEVICE,
) -> None:
    """Interpolate in w between two seeds or two conditions: a PNG strip and an animated GIF."""
    # torch-heavy: loaded when the command runs
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
