"""``gliomagen export``: hand cohorts and models to other tools (nnU-Net v2, a model card)."""

from __future__ import annotations

from pathlib import Path

import typer

from gliomagen.cli._common import user_errors

export_app = typer.Typer(
    name="export",
    help="Hand cohorts and models to other tools: an nnU-Net v2 raw dataset, a model card.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COHORTS = typer.Argument(
    ...,
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
_RAW = typer.Option(
    ..., "--out", help="The nnU-Net raw folder ($nnUNet_raw); DatasetNNN_NAME is written inside."
)
_COPY = typer.Option(
    False, "--copy", help="Copy every file (default: hard links where the file system allows)."
)
_QUIET = typer.Option(False, "--quiet", help="No progress bar.")
_SOURCE = typer.Argument(
    ...,
    help="A run folder (its newest checkpoint) or a checkpoint file (.pt, e.g. RUN/checkpoints/best.pt).",
    show_default=False,
)
_CARD_OUT = typer.Option(
    None, "--out", help="Markdown file to write (default: print the card on stdout)."
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
    source: Path = _SOURCE,
    out: Path | None = _CARD_OUT,
    store: Path | None = _STORE,
) -> None:
    """Write a model card (Markdown): training data, recipe, length, validation, conditions, limits."""
    # torch-heavy (checkpoint loading, the validation records' module): loaded when the command runs
    from gliomagen.export.card import model_card, write_model_card

    if out is None:
        typer.echo(model_card(source, store), nl=False)
        return
    typer.echo(f"wrote {write_model_card(source, out, store)}")
