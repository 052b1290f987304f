"""Build a training store from BraTS cases (the format is described in :mod:`gliomagen.data.store`).

:func:`build_store` streams cases through a process pool (never all in RAM), writes under a
hidden temporary name beside ``out`` and renames it at the end, so an interrupted run leaves no
store; a re-run on unchanged inputs and options does no work (a fingerprint of every input's
path, size and modification time, the labels table and the options is kept in ``meta.json``,
with each file's SHA-256 under ``sources``). Intensity options (``normalize``, ``bias_correction``,
``denoise``, ``nyul_from``; see :class:`gliomagen.data.preprocess.PrepOptions`) are part of that
fingerprint when they differ from the defaults, so changing them rebuilds. With ``nyul`` a second,
in-place pass over ``images.npy`` applies the landmarks learnt on the training split (see
:mod:`gliomagen.data.standardise`). The split is seeded and stratified
(:func:`~gliomagen.data.store_format.assign_splits`) unless ``split_csv`` fixes it from a table
(:mod:`gliomagen.data.splits`); ``meta.json`` says which under ``split``, and the table's content
is part of the fingerprint, so another table rebuilds.

The pieces: :mod:`~gliomagen.data.build_inputs` (checks, options, fingerprint),
:mod:`~gliomagen.data.build_workers` (the worker pool), :mod:`~gliomagen.data.build_index`
(``index.csv`` and ``meta.json``) and :mod:`~gliomagen.data.store_output` (the staged folder and
the streamed arrays).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen import MODALITIES
from gliomagen.data.build_index import (
    Kept,
    label_rows,
    split_keys,
    store_meta,
    write_index,
    write_skipped,
)
from gliomagen.data.build_inputs import (
    RESERVED_COLUMNS,
    check_label_columns,
    input_fingerprint,
    is_up_to_date,
    prep_options,
    store_options,
)
from gliomagen.data.build_workers import prepare_cases, say, sigterm_as_interrupt
from gliomagen.data.labels import (
    build_schema,
    label_usage,
    parse_label_types,
    read_label_table,
)
from gliomagen.data.layouts import CaseRecord, find_cases
from gliomagen.data.preprocess import PrepOptions
from gliomagen.data.qc import write_rows_qc
from gliomagen.data.restoration import DenoiseOptions, N4Options
from gliomagen.data.splits import apply_split_csv, read_split_csv, split_record
from gliomagen.data.standardise import ZSCORE_CLIP_SD, learn_landmarks, nyul_meta, rewrite_images
from gliomagen.data.store_format import NO_MASK, assign_splits, check_trainable_size, parse_size
from gliomagen.data.store_output import NpyWriter, check_apart, check_output, staged_store
from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import write_text

__all__ = ["RESERVED_COLUMNS", "build_store"]


@dataclass(frozen=True)
class _Job:
    """What one build does with its cases (the checked options of :func:`build_store`)."""

    label_cols: list[str]
    label_rows: dict[str, dict[str, str]]
    size: tuple[int, int, int]
    skip_bad: bool
    workers: int
    seed: int
    progress: bool
    kinds: dict[str, str]
    qc_cases: int
    prep: PrepOptions
    standard: dict[str, np.ndarray] | None
    nyul_from: str | None
    split_csv: Path | None = None
    split_table: dict[str, str] | None = None


def build_store(
    sources: Sequence[Path | str],
    out: Path | str,
    *,
    labels_csv: Path | str | None = None,
    size: int | str | Sequence[int] = 128,
    skip_bad: bool = False,
    workers: int = 1,
    seed: int = 0,
    progress: bool = True,
    label_types: Sequence[str] = (),
    qc_cases: int = 8,
    normalize: str = "percentile",
    bias_correction: bool | N4Options = False,
    denoise: bool | DenoiseOptions = False,
    nyul_from: Path | str | None = None,
    split_csv: Path | str | None = None,
) -> Path:
    """Prepare BraTS cases into a store (see the module docstring).

    Args:
        sources: BraTS folders and/or manifest CSVs.
        out: the store folder to create: a new or empty folder, or a store gliomagen wrote (replaced
            when done); never a folder holding anything else, nor one in or around the inputs.
        labels_csv: a CSV with ``case_id`` and label columns, joined by case id.
        size: target grid, one number (cube) or three.
        skip_bad: store the good cases and list the bad ones in ``skipped.csv``, instead of failing.
        workers: processes preparing cases in parallel (1 = in this process).
        seed: seed of the train/val/test split (ignored with ``split_csv``: the QC sample is
            then drawn with seed 0).
        progress: show a progress bar and messages on stderr.
        label_types: ``name=categorical|continuous|ignore`` overrides of inferred label types.
        qc_cases: how many cases get a QC montage.
        normalize: ``percentile`` (default), ``zscore`` or ``nyul`` (learnt on the training split).
        bias_correction: N4 bias-field correction: ``True`` (default :class:`N4Options`) or options.
        denoise: non-local means: ``True`` (default :class:`DenoiseOptions`) or options.
        nyul_from: a store prepared with ``normalize="nyul"`` whose landmarks are reused instead
            of learning new ones (needs ``normalize="nyul"``).
        split_csv: a table ``case_id,split`` fixing each case's split instead of the seeded one
            (:mod:`gliomagen.data.splits`); it must name every case to prepare (cases skipped by
            ``skip_bad`` may be named or not) and no other.

    Returns:
        ``out``.

    Raises:
        GliomagenError: bad input or output, naming the case, file and problem, or a failed write
            (a full disk); nothing is left behind and an old store at ``out`` is kept.
    """
    size_t = parse_size(size)
    check_trainable_size(size_t)
    out = Path(out)
    if workers < 1:
        raise GliomagenError(f"--workers {workers}: must be at least 1")
    check_output(out)
    cases = find_cases(sources)
    check_apart(out, sources, cases, labels_csv)
    if split_csv is not None:
        check_apart(out, [], [], split_csv)
    label_cols, label_table = read_label_table(Path(labels_csv)) if labels_csv else ([], {})
    check_label_columns(cases, label_cols, label_table, labels_csv)
    split_table = _check_split_csv(cases, split_csv, skip_bad)
    seed = 0 if split_csv is not None else seed
    kinds = parse_label_types(label_types)
    prep, standard = prep_options(normalize, bias_correction, denoise, nyul_from)
    options = store_options(size_t, seed, skip_bad, kinds, qc_cases, prep, standard, split_csv)
    stamp = input_fingerprint(cases, labels_csv, options)
    if is_up_to_date(out, stamp):
        say(progress, f"{out}: up to date with its inputs; nothing to do")
        return out
    if not skip_bad:
        bad = next((c for c in cases if c.problem), None)
        if bad is not None:
            raise GliomagenError(f"{bad.case_id}: {bad.problem}")
    nyul_path = str(Path(nyul_from).resolve()) if nyul_from else None
    job = _Job(label_cols, label_table, size_t, skip_bad, workers, seed, progress, kinds,
               qc_cases, prep, standard, nyul_path, Path(split_csv) if split_csv else None,
               split_table)  # fmt: skip
    previous = sigterm_as_interrupt()
    try:
        with staged_store(out) as tmp:
            meta = _build(tmp, cases, job)
            meta["input_fingerprint"] = stamp
            meta["options"] = options
            meta["split"] = split_record(split_csv, seed)
            meta["labels_csv"] = str(Path(labels_csv).resolve()) if labels_csv else None
            write_text(tmp / "meta.json", json.dumps(meta, indent=1))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return out


def _check_split_csv(
    cases: list[CaseRecord], split_csv: Path | str | None, skip_bad: bool
) -> dict[str, str] | None:
    """Read ``split_csv`` and check it against the cases found, before any work (``None``
    without one); cases already known to be bad are left out with ``skip_bad``."""
    if split_csv is None:
        return None
    table = read_split_csv(Path(split_csv))
    bad = {c.case_id for c in cases if c.problem and skip_bad}
    todo = [c.case_id for c in cases if c.case_id not in bad]
    apply_split_csv(todo, table, split_csv, skipped=bad)
    return table


def _build(tmp: Path, cases: list[CaseRecord], job: _Job) -> dict[str, Any]:
    """Write the arrays, ``index.csv`` and ``skipped.csv`` into ``tmp``; return the store's meta."""
    skipped = [(c.case_id, c.problem or "") for c in cases if c.problem]
    kept, qc_later = _write_arrays(tmp, [c for c in cases if not c.problem], job, skipped)
    if not kept:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise GliomagenError(f"no case could be prepared: {len(skipped)} skipped{first}")
    rows, sources = label_rows(kept, job.label_cols, job.label_rows)
    if job.split_table is None:
        splits = assign_splits(split_keys(rows, job.label_cols), job.seed)
    else:  # cases that failed in preparation (with skip_bad) may be in the table
        ids, gone = [r.case_id for r, _ in kept], [c for c, _ in skipped]
        splits = apply_split_csv(ids, job.split_table, job.split_csv or "", skipped=gone)
    schema = build_schema(rows, sources, kinds=job.kinds, train=[s == "train" for s in splits])
    write_index(tmp / "index.csv", kept, rows, splits, [*sources])
    if skipped:
        write_skipped(tmp / "skipped.csv", skipped)
    train_int = [p.intensity for (_, p), s in zip(kept, splits, strict=True) if s == "train"]
    prep_meta = _intensity_meta(tmp, kept, train_int, job, qc_later)
    meta = store_meta(kept, rows, splits, skipped, schema, job.size, train_int, prep_meta)
    meta["labels"] = label_usage(sources, job.kinds, schema)
    return meta


def _write_arrays(
    tmp: Path, todo: list[CaseRecord], job: _Job, skipped: list[tuple[str, str]]
) -> tuple[Kept, list[int]]:
    """Prepare the cases into ``images.npy`` and ``masks.npy`` (streaming).

    Cases that fail are appended to ``skipped`` with ``skip_bad`` (else their error is raised).

    Returns:
        ``(kept, qc_later)``: the stored cases and, with ``nyul``, the rows whose QC montage is
        drawn after the second pass.
    """
    images = NpyWriter(tmp / "images.npy", np.float16, (len(MODALITIES), *job.size), len(todo))
    masks = NpyWriter(tmp / "masks.npy", np.uint8, job.size, len(todo))
    kept: Kept = []
    qc_later: list[int] = []  # rows of the stored cases to draw then
    try:
        rng = np.random.default_rng(job.seed)
        sample = set(
            rng.choice(len(todo), size=min(job.qc_cases, len(todo)), replace=False).tolist()
        )
        qc_dirs = [tmp / "qc" if i in sample else None for i in range(len(todo))]
        nyul = job.prep.normalize == "nyul"  # montages after the second pass, of the final images
        results = prepare_cases(todo, job.size, job.workers, job.progress, qc_dirs, job.prep, nyul)
        for record, result, qc_dir in results:
            if isinstance(result, GliomagenError):
                if not job.skip_bad:
                    raise result
                skipped.append((record.case_id, str(result)))
                continue
            n = len(kept)
            if nyul and qc_dir is not None:
                qc_later.append(n)
            images.write(n, result.image)
            no_mask = np.full(job.size, NO_MASK, np.uint8)
            masks.write(n, result.mask if result.mask is not None else no_mask)
            result.image = result.mask = None  # type: ignore[assignment]  # keep only the small parts
            kept.append((record, result))
    finally:
        images.close(len(kept))
        masks.close(len(kept))
    return kept, qc_later


def _intensity_meta(
    tmp: Path,
    kept: Kept,
    train_int: list[dict[str, dict[str, Any]]],
    job: _Job,
    qc_later: list[int],
) -> dict[str, Any]:
    """The intensity options and what they learnt; with ``nyul``, the second pass and its QC."""
    prep, standard = job.prep, job.standard
    prep_meta: dict[str, Any] = prep.to_dict()
    if prep.normalize == "zscore":
        prep_meta["zscore"] = {"clip_sd": ZSCORE_CLIP_SD, "mapping": f"z / {ZSCORE_CLIP_SD:g} clipped to [-1, 1], z over the brain voxels"}  # fmt: skip
    if prep.normalize == "nyul":
        if standard is None:
            scans = [i for i in train_int if "nyul" in i[MODALITIES[0]]]  # not generated cases
            if not scans:
                raise GliomagenError(
                    "--normalize nyul: the training split holds only generated cases (they keep their "
                    "generator's scale), so there are no landmarks to learn; use --nyul-from STORE"
                )
            standard = {m: learn_landmarks([i[m]["nyul"] for i in scans]) for m in MODALITIES}
        # a generated case is already on the generator's scale: its own landmarks are the standard
        case_lms = [{m: p.intensity[m].get("nyul", standard[m]) for m in MODALITIES} for _, p in kept]
        rewrite_images(tmp / "images.npy", case_lms, standard)
        prep_meta["nyul"] = nyul_meta(standard, len(train_int), job.nyul_from or "train split")
        write_rows_qc(tmp, [(kept[n][0].case_id, n) for n in qc_later])
    if prep.bias_correction or prep.denoise:
        prep_meta["restoration_order"] = "N4, then non-local means, per modality on the native-resolution brain box, before standardisation and resampling"  # fmt: skip
    return prep_meta
