"""``gliomagen export``: hand cohorts and models to other tools (nnU-Net v2, a model card)."""

from __future__ import annotations

from pathlib import Path

import typer

from gliomagen.cli._common import FullHelpGroup, user_errors
from gliomagen.cli._options import CHECKPOINT_TAKES, out_file, out_option, quiet_option
from gliomagen.errors import GliomagenError

CARD_NAME = "MODEL_CARD.md"
"""The card's file name in an ``export card --out`` folder."""

export_app = typer.Typer(
    name="export",
    cls=FullHelpGroup,
    help="Hand cohorts and models to other tools: an nnU-Net v2 raw dataset, a model card.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COHORTS = typer.Argument(
    ...,
    metavar="COHORTS",
    help="Cohort folders written by `gliomagen generate`, BraTS-layout folders of real cases "
    "(2018-2024 names) or manifest CSVs; several merge (case ids must be unique).",
    show_default=False,
)
_DATASET_ID = typer.Option(
    ..., "--dataset-id", help="nnU-Net dataset id, 1..999 (the folder is DatasetNNN_NAME)."
)
_NAME = typer.Option(
    ..., "--name", help="Dataset name: letters, digits, '_' or '-' (e.g. BraTSSynth)."
)
_RAW = out_option(..., "The nnU-Net raw folder ($nnUNet_raw); DatasetNNN_NAME is written inside.")
_COPY = typer.Option(
    False, "--copy", help="Copy every file (default: hard links where the file system allows)."
)
_QUIET = quiet_option()
_SOURCE = typer.Argument(
    None,
    metavar="RUN|CHECKPOINT",
    help=f"The model (or give it as --checkpoint): {CHECKPOINT_TAKES}",
    show_default=False,
)
_CHECKPOINT = typer.Option(
    None,
    "--checkpoint",
    help="The same as the positional RUN|CHECKPOINT (the option name generate and evaluate use).",
)
_CARD_OUT = out_option(
    None,
    f"Folder to write {CARD_NAME} in, or a file name with a suffix (e.g. card.md, the older "
    "form); default: print the card on stdout.",
)
_STORE = typer.Option(
    None,
    "--store",
    help="The training store folder (default: the one the run's log.txt names); gives the "
    "store's fingerprint, label counts and the phantom check.",
)


def register(app: typer.Typer) -> None:
    """Add the ``export`` command group to the ``gliomagen`` app."""
    app.add_typer(export_app, name="export")


@export_app.command("nnunet")
@user_errors
def nnunet(
    cohorts: list[Path] = _COHORTS,
    dataset_id: int = _DATASET_ID,
    name: str = _NAME,
    out: Path = _RAW,
    copy: bool = _COPY,
    quiet: bool = _QUIET,
) -> None:
    """Write cohorts as an nnU-Net v2 raw dataset RAW/DatasetNNN_NAME for region-based BraTS training.

    imagesTr/CASE_0000..0003.nii.gz (t1n, t1c, t2w, t2f), labelsTr/CASE.nii.gz (1 NCR, 2 ED, 3 ET;
    BraTS 2021 label 4 becomes 3), dataset.json with the regions whole tumor, tumor core and
    enhancing tumor. Then: nnUNetv2_plan_and_preprocess -d N --verify_dataset_integrity.
    """
    # nibabel and the data layer load when the command runs, so `gliomagen --help` stays quick
    from gliomagen.export.nnunet import export_nnunet

    result = export_nnunet(cohorts, out, dataset_id, name, copy=copy, progress=not quiet)
    typer.echo(result.summary())


@export_app.command("card")
@user_errors
def card(
    source: Path | None = _SOURCE,
    checkpoint: Path | None = _CHECKPOINT,
    out: Path | None = _CARD_OUT,
    store: Path | None = _STORE,
) -> None:
    """Write a model card (Markdown): training data, recipe, length, validation, conditions, limits."""
    # torch-heavy (checkpoint loading, the validation records' module): loaded when the command runs
    from gliomagen.export.card import model_card, write_model_card

    given = [p for p in (source, checkpoint) if p is not None]
    if len(given) != 1:
        raise GliomagenError(
            "export card: give the model once, as RUN|CHECKPOINT or as --checkpoint RUN|CHECKPOINT"
        )
    (model,) = given
    if out is None:
        typer.echo(model_card(model, store), nl=False)
        return
    typer.echo(f"wrote {write_model_card(model, out_file(out, CARD_NAME), store)}")


GENERATOR_NAME = "generator.pt"
"""The file's name in an ``export generator --out`` folder."""

_GEN_OUT = out_option(
    ...,
    f"Folder to write {GENERATOR_NAME} in (made if missing), or a file name with a suffix (e.g. "
    "ssa-model.pt); an existing file is replaced only when gliomagen exported it.",
)
_DTYPE = typer.Option(
    "float16",
    "--dtype",
    help="Storage type of the generator's weights: float16 (half the size; rebuilt in float32 "
    "on load), bfloat16 or float32 (exact).",
)
_NOTE = typer.Option(
    None, "--note", help="A sentence kept in the file, e.g. what the model was trained on."
)


@export_app.command("generator")
@user_errors
def generator(
    source: Path | None = _SOURCE,
    checkpoint: Path | None = _CHECKPOINT,
    out: Path = _GEN_OUT,
    dtype: str = _DTYPE,
    note: str | None = _NOTE,
) -> None:
    """Write a sampling-only checkpoint: G_ema and what rebuilds it, without D, optimisers or RNG states.

    About a tenth of a training checkpoint in float16. generate, evaluate --checkpoint and export
    card read it; train --init and --resume need a training checkpoint.
    """
    from gliomagen.export.generator import export_generator

    given = [p for p in (source, checkpoint) if p is not None]
    if len(given) != 1:
        raise GliomagenError(
            "export generator: give the model once, as RUN|CHECKPOINT or as --checkpoint RUN|CHECKPOINT"
        )
    rec = export_generator(given[0], out_file(out, GENERATOR_NAME), dtype=dtype, note=note)
    typer.echo(
        f"wrote {rec['path']} ({rec['bytes'] / 1e6:.1f} MB, {rec['dtype']}, step {rec['step']:,})"
    )
