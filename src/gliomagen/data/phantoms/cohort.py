"""A whole phantom cohort on disk: BraTS 2023 folders, ``clinical.csv``, in parallel.

Cases are independent (each seeded from ``(seed, cohort, index)``), so they are drawn by a pool of
worker processes in any order and the files are the same for any number of workers.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing as mp
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from gliomagen import __version__
from gliomagen.data.phantoms.anatomy import load_template
from gliomagen.data.phantoms.case import case_id, make_case, write_case
from gliomagen.data.phantoms.fields import RESOLUTIONS
from gliomagen.data.phantoms.params import DEFAULT_COHORTS, PhantomParams
from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import write_text

CLINICAL_COLUMNS: tuple[str, ...] = ("case_id", "cohort", "grade", "age", "sex")
"""Columns of ``clinical.csv``."""

_CASE_DIR = re.compile(r"^BraTS-[A-Za-z]+-\d{5}-\d{3}$")


def parse_cohorts(text: str, known: Iterable[str] | None = None) -> dict[str, int]:
    """Parse ``GLI=200,SSA=24`` into ``{"GLI": 200, "SSA": 24}``.

    Args:
        text: comma-separated ``NAME=COUNT`` items.
        known: allowed cohort names (default: the cohorts of :class:`PhantomParams`).

    Raises:
        GliomagenError: a malformed item, an unknown cohort, a repeated cohort or a bad count.
    """
    known = tuple(PhantomParams().cohorts if known is None else known)
    out: dict[str, int] = {}
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise GliomagenError(
            f"--cohorts {text!r}: expected NAME=COUNT[,NAME=COUNT], e.g. GLI=200,SSA=24"
        )
    for item in items:
        name, sep, count = (s.strip() for s in item.partition("="))
        if not sep or not count.isdigit():
            raise GliomagenError(
                f"--cohorts {text!r}: {item!r} is not NAME=COUNT with a whole number, e.g. GLI=200"
            )
        if name not in known:
            raise GliomagenError(
                f"--cohorts {text!r}: unknown cohort {name!r}; known cohorts: {', '.join(known)}"
            )
        if name in out:
            raise GliomagenError(f"--cohorts {text!r}: cohort {name} is given twice")
        out[name] = int(count)
    return out


def _check(
    cohorts: Mapping[str, int], params: PhantomParams, resolution: int, seed: int, workers: int
) -> None:
    if resolution not in RESOLUTIONS:
        raise GliomagenError(f"--resolution {resolution}: must be 1 or 2 (mm)")
    if seed < 0:
        raise GliomagenError(f"--seed {seed}: must be >= 0")
    if workers < 1:
        raise GliomagenError(f"--workers {workers}: must be >= 1")
    for name, n in cohorts.items():
        if name not in params.cohorts:
            raise GliomagenError(
                f"--cohorts: unknown cohort {name!r}; known cohorts: {', '.join(params.cohorts)}"
            )
        if not 0 <= int(n) <= 100000:
            raise GliomagenError(f"--cohorts: {name}={n} must be between 0 and 100000 cases")
    if sum(int(n) for n in cohorts.values()) == 0:
        raise GliomagenError(
            "--cohorts: the cohort is empty; ask for at least one case, e.g. GLI=10"
        )


def _prepare_out(out: Path, wanted: set[str]) -> None:
    """Create ``out`` and check it is a writable folder holding no other phantom cases, nor a case
    folder of this cohort that gliomagen phantoms did not write (it would be replaced)."""
    clash = sorted(p.name for p in out.iterdir() if p.name in wanted) if out.is_dir() else []
    if clash and not _written_by_phantoms(out):
        more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
        raise GliomagenError(
            f"--out {out}: holds case folder {clash[0]}{more}, which gliomagen phantoms did not "
            "write (no phantoms.json beside it); not replacing it, use an empty folder"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise GliomagenError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    stale = sorted(
        p.name
        for p in out.iterdir()
        if p.is_dir() and _CASE_DIR.match(p.name) and p.name not in wanted
    )
    if stale:
        raise GliomagenError(
            f"--out {out}: already holds {len(stale)} case folder(s) that are not part of this "
            "cohort "
            f"(e.g. {stale[0]}); use an empty folder"
        )


def _written_by_phantoms(out: Path) -> bool:
    """Whether ``out`` holds the ``phantoms.json`` a phantom cohort starts with (so its case folders
    are phantoms, which a new run may replace)."""
    try:
        info = json.loads((out / "phantoms.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(info, dict) and info.get("generator") == "gliomagen phantoms"


def _one(task: tuple[str, int, int, int, Path, PhantomParams]) -> dict[str, object]:
    cohort, index, seed, resolution, out, params = task
    case = make_case(cohort, index, seed=seed, resolution=resolution, params=params)
    write_case(case, out)
    return case.clinical()


def _run(
    tasks: list[tuple[str, int, int, int, Path, PhantomParams]], workers: int
) -> Iterator[dict[str, object]]:
    if workers == 1 or len(tasks) == 1:
        yield from map(_one, tasks)
        return
    # fork shares the template the parent loaded; elsewhere each worker loads it once.
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx)
    try:
        yield from pool.map(_one, tasks, chunksize=1)
    finally:  # on an error or Ctrl-C, drop the cases not started yet
        pool.shutdown(wait=True, cancel_futures=True)


def generate_cohort(
    out: Path | str,
    cohorts: Mapping[str, int] | None = None,
    resolution: int = 2,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    params: PhantomParams | None = None,
) -> Path:
    """Write a phantom cohort in the BraTS 2023 layout.

    Layout: ``out/BraTS-GLI-00000-000/BraTS-GLI-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (and
    ``BraTS-SSA-...``), ``out/clinical.csv`` (case_id, cohort, grade, age, sex) and
    ``out/phantoms.json`` (how the cohort was made, written first). Each case folder and each file
    at the top is written under a temporary name and renamed into place. An existing case folder
    is replaced only in a folder that holds a phantom cohort's ``phantoms.json``.

    Args:
        out: output folder (created; must not hold other phantom case folders, nor folders of
            this cohort's case ids that a phantom run did not write).
        cohorts: cases per cohort (default ``GLI=200, SSA=24``).
        resolution: voxel size in mm: 2 (120x120x78, the fast path) or 1 (240x240x155).
        seed: cohort seed (>= 0); the same seed gives byte-identical files.
        workers: worker processes.
        progress: show a progress bar.
        params: phantom parameters (default :class:`PhantomParams`).

    Returns:
        ``out``.

    Example:
        >>> generate_cohort("phantoms", {"GLI": 20, "SSA": 4}, workers=2)  # doctest: +SKIP
    """
    out = Path(out)
    params = params or PhantomParams()
    cohorts = (
        dict(DEFAULT_COHORTS) if cohorts is None else {str(k): int(v) for k, v in cohorts.items()}
    )
    _check(cohorts, params, resolution, seed, workers)
    tasks = [(c, i, seed, resolution, out, params) for c, n in cohorts.items() for i in range(n)]
    _prepare_out(out, {case_id(c, i) for c, i, *_ in tasks})
    _write_info(out, seed, resolution, cohorts, len(tasks))  # first: marks the folder as phantoms
    load_template(resolution, params.anatomy)  # once, before forking
    rows = list(
        tqdm(
            _run(tasks, workers),
            total=len(tasks),
            desc="phantoms",
            unit="case",
            disable=not progress,
        )
    )
    _write_clinical(out, rows)
    return out


def _write_info(out: Path, seed: int, resolution: int, cohorts: dict[str, int], n_cases: int) -> None:
    """Write ``phantoms.json`` (how the cohort is made), before any case: it marks ``out`` as a
    phantom cohort, whose case folders a rerun may replace."""
    info = {
        "generator": "gliomagen phantoms",
        "gliomagen_version": __version__,
        "seed": seed,
        "resolution_mm": resolution,
        "cohorts": cohorts,
        "n_cases": n_cases,
    }
    write_text(out / "phantoms.json", json.dumps(info, indent=2) + "\n")


def _write_clinical(out: Path, rows: list[dict[str, object]]) -> None:
    """Write ``clinical.csv``: one row per case."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CLINICAL_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "clinical.csv", buf.getvalue())
