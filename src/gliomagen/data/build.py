"""Build a training store from BraTS cases (the format is described in :mod:`gliomagen.data.store`).

:func:`build_store` streams cases through a process pool (never all in RAM), writes under a
hidden temporary name beside ``out`` and renames it at the end, so an interrupted run leaves no
store; a re-run on unchanged inputs and options does no work (a fingerprint of every input's
path, size and modification time, the labels table and the options is kept in ``meta.json``,
with each file's SHA-256 under ``sources``). Intensity options (``normalize``, ``bias_correction``,
``denoise``, ``nyul_from``; see :class:`gliomagen.data.preprocess.PrepOptions`) are part of that
fingerprint when they differ from the defaults, so changing them rebuilds. With ``nyul`` a second,
in-place pass over ``images.npy`` applies the landmarks learnt on the training split (see
:mod:`gliomagen.data.standardise`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen import MODALITIES, __version__
from gliomagen.data.conditions import COVARIATES, build_schema, parse_label_types, read_label_table
from gliomagen.data.layouts import CaseRecord, find_cases
from gliomagen.data.nifti import sha256
from gliomagen.data.preprocess import (
    PERCENTILES,
    PreparedCase,
    PrepOptions,
    prepare_case,
    template_geometry,
)
from gliomagen.data.qc import save_montage
from gliomagen.data.restoration import DenoiseOptions, N4Options
from gliomagen.data.standardise import (
    ZSCORE_CLIP_SD,
    learn_landmarks,
    load_nyul_standard,
    nyul_meta,
    rewrite_images,
)
from gliomagen.data.store_format import (
    FORMAT_VERSION,
    NO_MASK,
    SPLITS,
    assign_splits,
    parse_size,
    read_json,
)
from gliomagen.errors import GliomagenError

RESERVED_COLUMNS = frozenset({"case_id", "split", "has_mask", "layout", "intensity", "geometry"})
"""Index columns a label may not be named (nor ``*_path``)."""


# -- building ----------------------------------------------------------------------------------
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
) -> Path:
    """Prepare BraTS cases into a store (see the module docstring).

    Args:
        sources: BraTS folders and/or manifest CSVs.
        out: the store folder to create (an existing store there is replaced when done).
        labels_csv: a CSV with ``case_id`` and label columns, joined by case id.
        size: target grid, one number (cube) or three.
        skip_bad: store the good cases and list the bad ones in ``skipped.csv``, instead of failing.
        workers: processes preparing cases in parallel (1 = in this process).
        seed: seed of the train/val/test split.
        progress: show a progress bar and messages on stderr.
        label_types: ``name=categorical|continuous|ignore`` overrides of inferred label types.
        qc_cases: how many cases get a QC montage.
        normalize: ``percentile`` (default), ``zscore`` or ``nyul`` (learnt on the training split).
        bias_correction: N4 bias-field correction: ``True`` (default :class:`N4Options`) or options.
        denoise: non-local means: ``True`` (default :class:`DenoiseOptions`) or options.
        nyul_from: a store prepared with ``normalize="nyul"`` whose landmarks are reused instead
            of learning new ones (needs ``normalize="nyul"``).

    Returns:
        ``out``.

    Raises:
        GliomagenError: bad input or output, naming the case, file and problem; nothing is left
            behind.
    """
    size_t = parse_size(size)
    out = Path(out)
    if workers < 1:
        raise GliomagenError(f"--workers {workers}: must be at least 1")
    _check_output(out)
    cases = find_cases(sources)
    label_cols, label_rows = read_label_table(Path(labels_csv)) if labels_csv else ([], {})
    for name in [*label_cols, *(k for c in cases for k in c.labels)]:
        if name in RESERVED_COLUMNS or name.endswith("_path"):
            raise GliomagenError(f"label column {name!r} is reserved by the store index; rename it")
    known = {c.case_id for c in cases}
    stray = [cid for cid in label_rows if cid not in known]
    if stray:
        raise GliomagenError(
            f"--labels {labels_csv}: {len(stray)} row(s) for unknown cases, e.g. {', '.join(map(repr, stray[:3]))}"
        )
    kinds = parse_label_types(label_types)
    prep, standard = _prep_options(normalize, bias_correction, denoise, nyul_from)
    options = {"size": list(size_t), "seed": seed, "skip_bad": skip_bad, "label_types": kinds,
               "qc_cases": qc_cases, "format_version": FORMAT_VERSION, "gliomagen_version": __version__}  # fmt: skip
    if not prep.is_default:  # absent by default: stores built before these options stay valid
        prep_options = prep.to_dict()
        if standard is not None:
            prep_options["nyul_from"] = {m: v.tolist() for m, v in standard.items()}
        options["preprocessing"] = prep_options
    stamp = _fingerprint(cases, labels_csv, options)
    if (out / "meta.json").is_file() and read_json(out / "meta.json").get(
        "input_fingerprint"
    ) == stamp:
        _say(progress, f"{out}: up to date with its inputs; nothing to do")
        return out
    if not skip_bad:
        bad = next((c for c in cases if c.problem), None)
        if bad is not None:
            raise GliomagenError(f"{bad.case_id}: {bad.problem}")
    created = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(out)
        tmp.mkdir()
    except OSError as exc:
        _remove_empty(created)
        raise GliomagenError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    previous = _sigterm_as_interrupt()
    try:
        _build(
            tmp,
            cases,
            label_cols,
            label_rows,
            size_t,
            skip_bad,
            workers,
            seed,
            progress,
            kinds,
            qc_cases,
            prep,
            standard,
            str(Path(nyul_from).resolve()) if nyul_from else None,
        )
        meta = read_json(tmp / "meta.json")
        meta["input_fingerprint"] = stamp
        meta["options"] = options
        meta["labels_csv"] = str(Path(labels_csv).resolve()) if labels_csv else None
        _write_json(tmp / "meta.json", meta)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return out


def _build(
    tmp: Path,
    cases: list[CaseRecord],
    label_cols: list[str],
    label_rows: dict[str, dict[str, str]],
    size: tuple[int, int, int],
    skip_bad: bool,
    workers: int,
    seed: int,
    progress: bool,
    kinds: dict[str, str],
    qc_cases: int,
    prep: PrepOptions,
    standard: dict[str, np.ndarray] | None,
    nyul_from: str | None,
) -> None:
    skipped = [(c.case_id, c.problem or "") for c in cases if c.problem]
    todo = [c for c in cases if not c.problem]
    images = _NpyWriter(tmp / "images.npy", np.float16, (len(MODALITIES), *size), len(todo))
    masks = _NpyWriter(tmp / "masks.npy", np.uint8, size, len(todo))
    kept: list[tuple[CaseRecord, PreparedCase]] = []
    try:
        rng = np.random.default_rng(seed)
        sample = set(rng.choice(len(todo), size=min(qc_cases, len(todo)), replace=False).tolist())
        qc_dirs = [tmp / "qc" if i in sample else None for i in range(len(todo))]
        nyul = prep.normalize == "nyul"  # montages after the second pass, of the final images
        qc_later: list[int] = []  # rows of the stored cases to draw then
        for record, result, qc_dir in _run(todo, size, workers, progress, qc_dirs, prep, nyul):
            if isinstance(result, GliomagenError):
                if not skip_bad:
                    raise result
                skipped.append((record.case_id, str(result)))
                continue
            n = len(kept)
            if nyul and qc_dir is not None:
                qc_later.append(n)
            images.write(n, result.image)
            masks.write(
                n, result.mask if result.mask is not None else np.full(size, NO_MASK, np.uint8)
            )
            result.image = result.mask = None  # type: ignore[assignment]  # keep only the small parts
            kept.append((record, result))
    finally:
        images.close(len(kept))
        masks.close(len(kept))
    if not kept:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise GliomagenError(f"no case could be prepared: {len(skipped)} skipped{first}")

    rows, sources = _label_rows(kept, label_cols, label_rows)
    keys = [
        "|".join(str(r.get(k) or "") for k in ("cohort", "grade", "has_mask", *label_cols))
        for r in rows
    ]
    splits = assign_splits(keys, seed)
    schema = build_schema(rows, sources, kinds=kinds, train=[s == "train" for s in splits])
    _write_index(tmp / "index.csv", kept, rows, splits, [*sources])
    if skipped:
        with open(tmp / "skipped.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([("case_id", "problem"), *skipped])
    geometries = [p.geometry for _, p in kept]
    train_int = [p.intensity for (_, p), s in zip(kept, splits, strict=True) if s == "train"]
    prep_meta: dict[str, Any] = prep.to_dict()
    if prep.normalize == "zscore":
        prep_meta["zscore"] = {"clip_sd": ZSCORE_CLIP_SD, "mapping": f"z / {ZSCORE_CLIP_SD:g} clipped to [-1, 1], z over the brain voxels"}  # fmt: skip
    if prep.normalize == "nyul":
        if standard is None:
            standard = {m: learn_landmarks([i[m]["nyul"] for i in train_int]) for m in MODALITIES}
        case_lms = [{m: p.intensity[m]["nyul"] for m in MODALITIES} for _, p in kept]
        rewrite_images(tmp / "images.npy", case_lms, standard)
        prep_meta["nyul"] = nyul_meta(standard, len(train_int), nyul_from or "train split")
        _draw_qc(tmp, [(kept[n][0].case_id, n) for n in qc_later])
    if prep.bias_correction or prep.denoise:
        prep_meta["restoration_order"] = "N4, then non-local means, per modality on the native-resolution brain box, before standardisation and resampling"  # fmt: skip
    meta = {
        "format_version": FORMAT_VERSION,
        "size": list(size),
        "modalities": list(MODALITIES),
        "schema": schema.to_dict(),
        "spacing_mm": [float(np.median([g["spacing_mm"] for g in geometries]))] * 3,
        "canonical_orientation": "RAS",
        "template_geometry": template_geometry(geometries),
        "preprocessing": {
            "percentiles": list(PERCENTILES),
            "intensity_range": [-1.0, 1.0],
            "background": -1.0,
            "brain": "voxels differing from the border background in any modality, plus the tumour",
            "crop": "brain bounding box, padded symmetrically to the grid's aspect ratio",
            "resampling": {"images": "linear", "masks": "nearest"},
            "label_map": {
                "2021": {"0": 0, "1": 1, "2": 2, "4": 3},
                "2023": {"0": 0, "1": 1, "2": 2, "3": 3},
            },
            "reference_range": {
                m: [
                    float(np.median([i[m]["p_lo"] for i in train_int])),
                    float(np.median([i[m]["p_hi"] for i in train_int])),
                ]
                for m in MODALITIES
            },
            **prep_meta,
        },
        "sources": {r.case_id: p.checksums for r, p in kept},
        "splits": {s: splits.count(s) for s in SPLITS},
        "n_cases": len(kept),
        "n_with_mask": int(sum(r["has_mask"] for r in rows)),
        "skipped": [{"case_id": c, "problem": p} for c, p in skipped],
        "gliomagen_version": __version__,
    }
    _write_json(tmp / "meta.json", meta)


def _prep_options(
    normalize: str,
    bias_correction: bool | N4Options,
    denoise: bool | DenoiseOptions,
    nyul_from: Path | str | None,
) -> tuple[PrepOptions, dict[str, np.ndarray] | None]:
    """Check the intensity options; read ``nyul_from``'s landmarks (``None`` when not given)."""
    n4 = N4Options() if bias_correction is True else (bias_correction or None)
    nlm = DenoiseOptions() if denoise is True else (denoise or None)
    if n4 is not None and not isinstance(n4, N4Options):
        raise GliomagenError(f"--bias-correction {bias_correction!r}: expected on/off or N4Options")
    if nlm is not None and not isinstance(nlm, DenoiseOptions):
        raise GliomagenError(f"--denoise {denoise!r}: expected on/off or DenoiseOptions")
    prep = PrepOptions(normalize, n4, nlm)
    if nyul_from is None:
        return prep, None
    if normalize != "nyul":
        raise GliomagenError(f"--nyul-from {nyul_from}: only with --normalize nyul")
    return prep, load_nyul_standard(nyul_from)


def _draw_qc(tmp: Path, cases: list[tuple[str, int]]) -> None:
    """Montages of stored cases ``(case_id, row)`` from the final arrays."""
    if not cases:
        return
    images = np.load(tmp / "images.npy", mmap_mode="r")  # [N, C, D, H, W]
    masks = np.load(tmp / "masks.npy", mmap_mode="r")  # [N, D, H, W]
    for cid, n in cases:
        mask = np.asarray(masks[n])
        save_montage(
            np.asarray(images[n], dtype=np.float32),
            None if (mask == NO_MASK).all() else mask,
            tmp / "qc" / f"{cid}.png",
            title=cid,
        )
    del images, masks


def _prepare_task(
    record: CaseRecord, size: tuple[int, int, int], qc_dir: Path | None, prep: PrepOptions
) -> PreparedCase:
    """One worker job: prepare a case and, when it is in the QC sample, draw its montage."""
    # the default pipeline keeps the two-argument call (tests stand in for it with that signature)
    result = prepare_case(record, size) if prep.is_default else prepare_case(record, size, prep)
    if qc_dir is not None:
        image = result.image.astype(np.float32)  # [C, D, H, W]
        save_montage(image, result.mask, qc_dir / f"{record.case_id}.png", title=record.case_id)
    return result


def _run(
    todo: list[CaseRecord],
    size: tuple[int, int, int],
    workers: int,
    progress: bool,
    qc_dirs: list[Path | None],
    prep: PrepOptions,
    qc_later: bool = False,
) -> Iterator[tuple[CaseRecord, PreparedCase | GliomagenError, Path | None]]:
    """Prepare cases in order, streaming: at most ``2 * workers`` results are held at once.

    Yields ``(record, result, qc_dir)``; with ``qc_later`` the workers draw no montage (the caller
    draws the final images later).
    """
    from tqdm.auto import tqdm  # disable=None: no bar when stderr is not a terminal

    bar = tqdm(total=len(todo), unit="case", desc="prepare", disable=None if progress else True)
    if workers == 1 or len(todo) <= 1:
        with bar:
            for record, qc_dir in zip(todo, qc_dirs, strict=True):
                try:
                    result: PreparedCase | GliomagenError = _prepare_task(
                        record, size, None if qc_later else qc_dir, prep
                    )
                except GliomagenError as exc:
                    result = exc
                bar.update()
                yield record, result, qc_dir
        return
    method = "fork" if sys.platform.startswith("linux") else "spawn"  # workers need no torch
    with ProcessPoolExecutor(workers, get_context(method), initializer=_ignore_sigint) as pool, bar:
        jobs = iter(zip(todo, qc_dirs, strict=True))
        pending: list[tuple[CaseRecord, Path | None, Future[PreparedCase]]] = []

        def submit() -> None:
            job = next(jobs, None)
            if job is not None:
                qc_dir = None if qc_later else job[1]
                future = pool.submit(_prepare_task, job[0], size, qc_dir, prep)
                pending.append((job[0], job[1], future))

        for _ in range(2 * workers):
            submit()
        try:
            while pending:
                record, qc_dir, future = pending.pop(0)
                try:
                    result = future.result()
                except GliomagenError as exc:
                    result = exc
                except BrokenProcessPool:
                    raise GliomagenError(
                        f"{record.case_id}: a worker process died (out of memory?); try fewer --workers"
                    ) from None
                submit()
                bar.update()
                yield record, result, qc_dir
        finally:
            for _, _, future in pending:
                future.cancel()


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C and SIGTERM to the parent, which stops them and removes the temp store."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _sigterm_as_interrupt() -> Any:
    """Turn SIGTERM (e.g. a batch-job time limit) into KeyboardInterrupt, so the temp store is
    removed and the workers stopped; returns the previous handler (``None`` off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def _label_rows(
    kept: list[tuple[CaseRecord, PreparedCase]],
    label_cols: list[str],
    label_rows: dict[str, dict[str, str]],
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Raw label values per case and the source of each label field (in schema order)."""
    sources: dict[str, str] = {"cohort": "id", "grade": "folder"}
    for record, _ in kept:
        for col in record.labels:
            sources.setdefault(col, "manifest")
    for col in label_cols:
        sources[col] = "labels-csv"
    for cov in COVARIATES:
        sources.setdefault(cov, "mask")
    rows = []
    for record, prepared in kept:
        row: dict[str, Any] = {"cohort": record.cohort, "grade": record.grade, **record.labels}
        row.update(prepared.covariates)
        row.update({k: v for k, v in label_rows.get(record.case_id, {}).items() if v != ""})
        row["has_mask"] = record.seg is not None
        rows.append(row)
    return rows, sources


def _write_index(
    path: Path,
    kept: list[tuple[CaseRecord, PreparedCase]],
    rows: list[dict[str, Any]],
    splits: list[str],
    fields: list[str],
) -> None:
    header = ["case_id", "split", "has_mask", *[f for f in fields if f not in ("case_id", "split", "has_mask")],
              "layout", *[f"{m}_path" for m in MODALITIES], "seg_path", "intensity", "geometry"]  # fmt: skip
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for (record, prepared), row, split in zip(kept, rows, splits, strict=True):
            line = {f: "" if row.get(f) is None else row[f] for f in fields}
            line.update(
                case_id=record.case_id,
                split=split,
                has_mask=int(bool(row["has_mask"])),
                layout=record.layout,
            )
            line.update({f"{m}_path": str(record.images[m].resolve()) for m in MODALITIES})
            line["seg_path"] = str(record.seg.resolve()) if record.seg is not None else ""
            line["intensity"] = json.dumps(prepared.intensity, separators=(",", ":"))
            line["geometry"] = json.dumps(prepared.geometry, separators=(",", ":"))
            writer.writerow(line)


# -- files -------------------------------------------------------------------------------------
class _NpyWriter:
    """Write a ``.npy`` array item by item with plain file I/O (bounded memory), then set its length."""

    def __init__(self, path: Path, dtype: Any, item_shape: Sequence[int], capacity: int) -> None:
        self.dtype, self.item_shape = np.dtype(dtype), tuple(item_shape)
        self.item_bytes = int(np.prod(self.item_shape)) * self.dtype.itemsize
        self.fh = open(path, "w+b")  # noqa: SIM115  # closed by close()
        header = self._header(capacity)
        self.offset = len(header)
        self.fh.write(header)
        self.fh.truncate(self.offset + capacity * self.item_bytes)

    def _header(self, n: int, length: int = 0) -> bytes:
        text = repr(
            {
                "descr": np.lib.format.dtype_to_descr(self.dtype),
                "fortran_order": False,
                "shape": (n, *self.item_shape),
            }
        )
        body = len(b"\x93NUMPY\x01\x00") + 2 + len(text) + 1
        pad = (length - body) if length else (-body % 64)
        text = text + " " * pad + "\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1")

    def write(self, i: int, item: np.ndarray) -> None:
        arr = np.ascontiguousarray(item, dtype=self.dtype)
        if arr.shape != self.item_shape:
            raise ValueError(f"item shape {arr.shape} != {self.item_shape}")
        self.fh.seek(self.offset + i * self.item_bytes)
        self.fh.write(arr.tobytes())  # one item: ~17 MB at 128^3

    def close(self, n: int) -> None:
        if self.fh.closed:
            return
        self.fh.seek(0)
        self.fh.write(self._header(n, self.offset))
        self.fh.truncate(self.offset + n * self.item_bytes)
        self.fh.close()


def _fingerprint(
    cases: list[CaseRecord], labels_csv: Path | str | None, options: dict[str, Any]
) -> str:
    """A hash of every input file's path, size and mtime, the labels table and the options."""
    files = [str(p.resolve()) for c in cases for p in c.files()]
    files += [str(c.folder.resolve()) for c in cases if c.layout == "manifest"]
    stats = []
    for f in sorted(set(files)):
        st = os.stat(f) if os.path.exists(f) else None
        stats.append([f, st.st_size if st else -1, st.st_mtime_ns if st else -1])
    problems = sorted((c.case_id, c.problem or "") for c in cases)
    labels = sha256(Path(labels_csv)) if labels_csv else None
    blob = json.dumps([stats, problems, labels, options], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _check_output(out: Path) -> None:
    """Fail early when ``out`` cannot become a store (creates nothing)."""
    if out.exists() and not out.is_dir():
        raise GliomagenError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "meta.json").is_file():
        raise GliomagenError(
            f"--out {out}: folder exists, is not empty and is not a gliomagen store; not overwriting it"
        )
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise GliomagenError(f"--out {out}: cannot create it, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK):
        raise GliomagenError(f"--out {out}: {ancestor} is not writable")


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this run created (deepest first) if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _remove_stale_temps(out: Path) -> None:
    """Remove temp folders of interrupted runs (their process is gone)."""
    for tmp in [*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")]:
        try:
            pid = int(tmp.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def _replace_dir(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr)
