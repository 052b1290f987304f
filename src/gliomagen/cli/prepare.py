"""``gliomagen prepare`` (BraTS folders -> store) and ``gliomagen inspect`` (what a store holds)."""

from __future__ import annotations

import functools
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from gliomagen.cli._common import user_errors
from gliomagen.cli._options import one_store, out_option, quiet_option, store_option, workers_option
from gliomagen.data.tables import DataWarning
from gliomagen.errors import GliomagenError

F = TypeVar("F", bound=Callable[..., Any])


def warning_lines(func: F) -> F:
    """Decorate a command so each :class:`DataWarning` is one ``warning: ...`` line on stderr,
    printed when it is raised (every time, not once per place)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("always", DataWarning)
            default = warnings.showwarning

            def show(message: Any, category: Any, *rest: Any, **kw: Any) -> None:
                if issubclass(category, DataWarning):
                    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)
                else:
                    default(message, category, *rest, **kw)

            warnings.showwarning = show
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def register(app: typer.Typer) -> None:
    """Add the ``prepare`` and ``inspect`` commands to ``app``."""
    app.command("prepare")(prepare)
    app.command("inspect")(inspect)


_SOURCES = typer.Argument(
    ...,
    metavar="SOURCES",
    help="BraTS folders (2018-2024 layouts) and/or manifest CSVs (case_id,t1n,t1c,t2w,t2f[,seg],labels...).",
)
_OUT = out_option(
    ...,
    "Store folder to create (a store gliomagen wrote there is replaced; any other folder, "
    "or one in or around the inputs, is refused); --store is the same option.",
    "--store",
)
_LABELS = typer.Option(
    None, "--labels", help="CSV with case_id and label columns, joined by case id."
)
_SIZE = typer.Option(
    None,
    "--size",
    help="Grid: one number (cube) or three, e.g. 96,112,96 (default 128), each side at least 16. "
    "With --slices: the side of the square slices (default 256).",
)
_SLICES = typer.Option(
    False,
    "--slices",
    help="Make a 2D slice store: the cases on a cubic grid of side --size, cut into axial, "
    "coronal and sagittal slices (every modality and the mask); the conditions gain view and "
    "position (0..1 along the view's axis); the split is by case.",
)
_VIEWS = typer.Option(
    None, "--views", help="With --slices: views to cut, e.g. axial,sagittal (default: all three)."
)
_MIN_BRAIN_FRACTION = typer.Option(
    None,
    "--min-brain-fraction",
    help="With --slices: leave out slices whose brain covers less than this fraction of the "
    "slice (default 0.1; slices without brain are always left out).",
)
_SLICE_STEP = typer.Option(
    None, "--slice-step", help="With --slices: keep every N-th slice of each view (default 1)."
)
_SKIP_BAD = typer.Option(
    False, "--skip-bad", help="Store the good cases; list bad ones in STORE/skipped.csv."
)
_WORKERS = workers_option("Cases prepared in parallel (processes).")
_SEED = typer.Option(
    0,
    "--seed",
    help="Seed of the train/val/test split (stratified, 80/10/10); ignored with --split-csv.",
)
_SPLIT_CSV = typer.Option(
    None,
    "--split-csv",
    help="CSV with columns case_id,split (train, val or test, any case) fixing each case's split "
    "instead of the seeded one, e.g. to give a generator and a segmenter the same training "
    "cases; it must name every case to prepare and no other (cases --skip-bad leaves out may be "
    "named). With --slices every slice is in its case's split. Recorded in STORE/meta.json; "
    "another table rebuilds the store.",
)
_LABEL_TYPE = typer.Option(
    [],
    "--label-type",
    help="Override an inferred label type: NAME=categorical|continuous|ignore (repeatable).",
)
_QC = typer.Option(8, "--qc", help="Number of cases drawn as QC montages in STORE/qc/.")
_NORMALIZE = typer.Option(
    "percentile",
    "--normalize",
    help="Intensity standardisation inside the brain, per modality, to [-1, 1] (background -1): "
    "percentile (0.5/99.5 percentiles -> -1/1, the default); zscore (mean/sd of the brain, "
    "+-3 sd -> [-1, 1], clipped); nyul (Nyul-Udupa histogram standardisation: landmarks at the "
    "0.5, 10, 20..90, 99.5 percentiles learnt on the training split, applied piecewise-linearly "
    "to every case, saved in meta.json). Cases that gliomagen generate wrote are exempt: they "
    "get back their generator's own scale (the linear map in their cohort's manifest.json).",
)
_NYUL_FROM = typer.Option(
    None,
    "--nyul-from",
    help="With --normalize nyul: reuse the landmarks of this store instead of learning new ones.",
)
_BIAS_CORRECTION = typer.Option(
    False,
    "--bias-correction",
    help="N4 bias-field correction (SimpleITK) of each image before standardisation; costs "
    "about 20 s per modality of a 1 mm case at --n4-shrink 4.",
)
_N4_SHRINK = typer.Option(
    4,
    "--n4-shrink",
    help="N4 fits the field on the image shrunk by this factor per axis (1..16; smaller is slower).",
)
_DENOISE = typer.Option(
    False,
    "--denoise",
    help="Non-local means denoising (scikit-image) of each image before standardisation, h from "
    "the estimated noise sigma; about 20-30 s per modality of a 1 mm case.",
)
_DENOISE_STRENGTH = typer.Option(
    0.8,
    "--denoise-strength",
    help="Non-local means h = strength x estimated noise sigma (0..5].",
)
_QUIET = quiet_option()


@user_errors
@warning_lines
def prepare(
    sources: list[Path] = _SOURCES,
    out: Path = _OUT,
    labels: Path | None = _LABELS,
    size: str | None = _SIZE,
    slices: bool = _SLICES,
    views: str | None = _VIEWS,
    min_brain_fraction: float | None = _MIN_BRAIN_FRACTION,
    slice_step: int | None = _SLICE_STEP,
    skip_bad: bool = _SKIP_BAD,
    workers: int = _WORKERS,
    seed: int = _SEED,
    split_csv: Path | None = _SPLIT_CSV,
    label_type: list[str] = _LABEL_TYPE,
    qc: int = _QC,
    normalize: str = _NORMALIZE,
    nyul_from: Path | None = _NYUL_FROM,
    bias_correction: bool = _BIAS_CORRECTION,
    n4_shrink: int = _N4_SHRINK,
    denoise: bool = _DENOISE,
    denoise_strength: float = _DENOISE_STRENGTH,
    quiet: bool = _QUIET,
) -> None:
    """Preprocess BraTS cases into a memory-mapped training store.

    Bias correction and denoising run on each image's native-resolution brain box (before
    resampling), in that order, then standardisation; all options are recorded in
    STORE/meta.json ("preprocessing"), and changing one rebuilds the store.
    """
    # numpy (about 0.2 s): loaded when the command runs, not at every CLI start
    from gliomagen.data.restoration import DenoiseOptions, N4Options

    n4_options = N4Options(shrink=n4_shrink)  # checked even when off: a bad value is a typo
    nlm_options = DenoiseOptions(strength=denoise_strength)
    common: dict[str, Any] = {
        "labels_csv": labels, "skip_bad": skip_bad, "workers": workers, "seed": seed,
        "split_csv": split_csv, "label_types": label_type, "qc_cases": qc, "normalize": normalize,
        "bias_correction": n4_options if bias_correction else False,
        "denoise": nlm_options if denoise else False, "nyul_from": nyul_from,
        "progress": not quiet,
    }  # fmt: skip
    if slices:
        path = _build_slices(sources, out, size, views, min_brain_fraction, slice_step, common)
    else:
        slice_options = {
            "--views": views,
            "--min-brain-fraction": min_brain_fraction,
            "--slice-step": slice_step,
        }
        given = [name for name, value in slice_options.items() if value is not None]
        if given:
            raise GliomagenError(f"{given[0]}: only with --slices")
        from gliomagen.data.store import build_store  # torch-heavy: loaded when the command runs

        path = build_store(sources, out, size=size or "128", **common)
    _summary(path, show_cases=0)


def _build_slices(
    sources: list[Path],
    out: Path,
    size: str | None,
    views: str | None,
    min_brain_fraction: float | None,
    slice_step: int | None,
    common: dict[str, Any],
) -> Path:
    """``prepare --slices``: the slice store, with the slice options' defaults filled in."""
    # torch-heavy: loaded when the command runs
    from gliomagen.data.slices import (
        DEFAULT_MIN_BRAIN_FRACTION,
        DEFAULT_SLICE_SIZE,
        VIEWS,
        build_slice_store,
    )

    return build_slice_store(
        sources, out, size=size or DEFAULT_SLICE_SIZE, views=views or VIEWS,
        min_brain_fraction=DEFAULT_MIN_BRAIN_FRACTION if min_brain_fraction is None else min_brain_fraction,
        slice_step=1 if slice_step is None else slice_step, **common,
    )  # fmt: skip


@user_errors
@warning_lines
def inspect(
    store: Path | None = typer.Argument(
        None,
        metavar="STORE",
        help="A store made by gliomagen prepare; or give it as --store.",
        show_default=False,
    ),
    all_cases: bool = typer.Option(False, "--all", help="List every case (default: the first 50)."),
    store_opt: Path | None = store_option(),
) -> None:
    """Print a store's cases, label counts and split sizes."""
    _summary(one_store(store, store_opt), show_cases=None if all_cases else 50)


def _summary(path: Path, show_cases: int | None) -> None:
    """Print what a store holds: size, grid, splits, labels, the QC folder or (some) cases."""
    from gliomagen.data.store import open_store  # torch-heavy: loaded when the command runs

    ds = open_store(path)
    _describe_store(ds, path)
    _describe_labels(ds)
    if show_cases == 0:
        qc = Path(path) / "qc"
        if qc.is_dir() and any(qc.glob("*.png")):  # none with --qc 0
            typer.echo(f"qc         {qc}")
        return
    _list_cases(ds, show_cases)


def _describe_store(ds: Any, path: Path) -> None:
    """The store's size, grid, splits and skipped cases."""
    meta = ds.meta
    echo = typer.echo
    echo(f"store      {path}")
    if ds.spatial_dims == 2:  # a slice store (gliomagen.data.slices)
        per_view = ", ".join(f"{v} {n}" for v, n in meta["slices"]["per_view"].items())
        echo(
            f"slices     {len(ds)} from {meta['n_cases']} cases ({int(ds.has_mask.sum())} with a tumour mask); {per_view}"
        )
        echo(
            f"grid       {' x '.join(map(str, ds.size))} slices of a {ds.size[0]}^3 grid, {ds.spacing_mm[0]:.3g} mm pixels, RAS; modalities {' '.join(ds.modalities)}"
        )
        cases = ", ".join(f"{k} {v}" for k, v in meta["case_splits"].items())
        splits = ", ".join(f"{k} {v}" for k, v in meta["splits"].items())
        echo(f"splits     {splits} slices (by case: {cases}){_split_source(meta)}")
    else:
        echo(f"cases      {len(ds)} ({int(ds.has_mask.sum())} with a tumour mask)")
        echo(
            f"grid       {' x '.join(map(str, ds.size))}, {ds.spacing_mm[0]:.3g} mm voxels, RAS; modalities {' '.join(ds.modalities)}"
        )
        splits = ", ".join(f"{k} {v}" for k, v in meta["splits"].items())
        echo(f"splits     {splits}{_split_source(meta)}")
    if meta.get("skipped"):
        echo(f"skipped    {len(meta['skipped'])} case(s), see {Path(path) / 'skipped.csv'}")


def _split_source(meta: dict[str, Any]) -> str:
    """`` (from --split-csv FILE)`` for a store whose split a table fixed, else nothing."""
    split = meta.get("split") or {}
    return f" (from --split-csv {split.get('file')})" if split.get("method") == "split-csv" else ""


_DECIDED_BY = {"values": "kind inferred from the values", "--label-type": "kind from --label-type"}


def _describe_labels(ds: Any) -> None:
    """One line per label: kind, values, source and what decided the kind; then the labels left out."""
    usage: dict[str, dict[str, str]] = (
        ds.meta.get("labels") or {}
    )  # stores since labels were recorded
    typer.echo("labels")
    for fld in ds.schema.fields:
        values = [r[fld.name] for r in ds.rows]
        missing = sum(v is None for v in values)
        if fld.kind == "categorical":
            counts = Counter(v for v in values if v is not None)
            text = ", ".join(f"{c} {counts.get(c, 0)}" for c in fld.categories)
        else:
            nums = [v for v in values if v is not None]
            text = (
                f"mean {fld.mean:.4g}, std {fld.std:.4g} (train); range {min(nums):.4g}..{max(nums):.4g}"
                if nums
                else ""
            )
        by = _DECIDED_BY.get(usage.get(fld.name, {}).get("by", ""))
        typer.echo(
            f"  {fld.name:<20} {fld.kind:<11} {text}{f', missing {missing}' if missing else ''}  [{fld.source}]{f' ({by})' if by else ''}"
        )
    for name, use in usage.items():
        if use.get("kind") == "left out":
            typer.echo(f"  {name:<20} {'left out':<11} ({use.get('by')})  [{use.get('source')}]")


def _list_cases(ds: Any, show_cases: int | None) -> None:
    """The table of cases (the first ``show_cases``, or all) with their split, mask and labels."""
    echo = typer.echo
    echo("cases")
    names = [f.name for f in ds.schema.fields]
    shown = ds.index_rows if show_cases is None else ds.index_rows[:show_cases]
    table = [["case_id", "split", "mask", *names]]
    for row, raw in zip(shown, ds.rows, strict=False):
        vals = [_cell(raw[n]) for n in names]
        table.append(
            [row["case_id"], row["split"], "yes" if row["has_mask"] == "1" else "no", *vals]
        )
    widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]
    for r in table:
        echo("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    if show_cases is not None and len(ds) > show_cases:
        echo(f"  ... {len(ds) - show_cases} more (use --all)")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
