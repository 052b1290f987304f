"""Resolve the ``--real``, ``--train`` and ``--synthetic`` arguments into :class:`CaseSet` objects.

* ``STORE`` or ``STORE:split`` (``train``, ``val``, ``test``): a prepared store, read through its
  memory-mapped arrays.
* A folder of NIfTI cases in a BraTS layout (e.g. the output of ``gliomagen generate``): prepared
  with the real store's pipeline (:func:`gliomagen.data.store.build_store`: crop, resample,
  normalise) at the real store's grid size into a cache folder, so both sets are on one grid and
  one intensity scale. The cohort's ``clinical.csv`` (written by ``generate``), when present,
  gives each case's *requested* conditions. A folder that looks like a cohort of ``generate``
  must be a complete one (:func:`check_cohort`); other folders (real BraTS cases, phantoms) are
  read as they are.
* With 2-D real slices (a slice store): a folder of 2-D slices written by ``gliomagen generate``
  from a 2D model, read back onto the network's scale with the intensity ranges of its
  manifest (:func:`gliomagen.generation.slices2d.read_slice_cohort`), its ``clinical.csv`` giving
  the requested conditions (view and position included).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen import MODALITIES
from gliomagen.data.labels import COVARIATES
from gliomagen.data.store import build_store, open_store
from gliomagen.errors import GliomagenError
from gliomagen.evaluation.cache import default_cache_dir
from gliomagen.evaluation.cases import CaseSet
from gliomagen.generation.slices2d import read_slice_cohort
from gliomagen.io.staging import MARKER as STAGING_MARKER

SPLITS = ("train", "val", "test")
MAX_BREAKDOWN_CATEGORIES = 12
CLINICAL_CSV = "clinical.csv"
IGNORED_CLINICAL = ("seed", "mix_seed", *COVARIATES)  # the covariates are measured again on ingest
MANIFEST = "manifest.json"
GENERATED_ID = re.compile(r"^(SYN-\d{5}|.+-s\d{6,})$")
"""A case id of ``gliomagen generate``: ``PREFIX-s000123`` (and ``SYN-00012`` before the ids named
the seed)."""


def split_spec(spec: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``"runs/store:test"`` -> ``(Path("runs/store"), "test")``; a path without a split -> ``(path, None)``."""
    text = os.fspath(spec)
    head, sep, tail = text.rpartition(":")
    if sep and tail in SPLITS and head:
        return Path(head), tail
    return Path(text), None


def breakdown_fields(schema: Any) -> list[str]:
    """Categorical fields to break figures down by: not derived from the mask, at most 12 categories."""
    return [
        f.name for f in schema.categorical
        if f.source != "mask" and 1 <= len(f.categories) <= MAX_BREAKDOWN_CATEGORIES
    ]  # fmt: skip


def from_store(path: Path, split: str | None, role: str) -> CaseSet:
    """A store (or one split) as a CaseSet backed by its memory-mapped arrays."""

    ds = open_store(path, split=split)
    if len(ds) == 0:
        raise GliomagenError(f"{role} {path}{':' + split if split else ''}: no cases in this split")
    images = np.load(path / "images.npy", mmap_mode="r")
    masks = np.load(path / "masks.npy", mmap_mode="r")
    name = f"{path.name}:{split}" if split else path.name
    voxel = tuple(float(s) for s in ds.spacing_mm)
    return CaseSet(
        name=name, case_ids=list(ds.case_ids), labels=[dict(r) for r in ds.rows],
        shape=(len(ds.modalities), *ds.size), images=images, masks=masks, indices=np.asarray(ds.indices),
        spacing_mm=voxel, categorical=breakdown_fields(ds.schema),  # type: ignore[arg-type]
        derived=[f.name for f in ds.schema.fields if f.source == "mask"],
    )  # fmt: skip


def held_out_split(path: Path) -> str:
    """The default held-out split of a store: ``test``, else ``val``."""

    ds = open_store(path)
    counts = {s: int(n) for s, n in ds.meta.get("splits", {}).items()}
    for split in ("test", "val"):
        if counts.get(split, 0) > 0:
            return split
    raise GliomagenError(
        f"--real {path}: the store has no test or val cases; give --real STORE:split"
    )


def ingest_folder(
    folder: Path, size: Sequence[int], cache_dir: Path | None = None, progress: bool = False
) -> Path:
    """Prepare a folder of NIfTI cases into a cached store at ``size`` and return its path.

    The cache folder is keyed by the folder's absolute path and the size; ``build_store`` itself
    skips the work when the inputs are unchanged.
    """
    if not folder.is_dir():
        raise GliomagenError(f"--synthetic {folder}: not a folder or store")
    key = hashlib.sha256(f"{folder.resolve()}|{list(size)}".encode()).hexdigest()[:16]
    out = Path(cache_dir or default_cache_dir()) / "ingested" / f"{folder.name}-{key}"
    clinical = folder / CLINICAL_CSV
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        build_store(
            [folder], out, labels_csv=clinical if clinical.is_file() else None, size=list(size),
            progress=progress, qc_cases=0, label_types=[f"{c}=ignore" for c in IGNORED_CLINICAL if _has_column(clinical, c)],
        )  # fmt: skip
    except OSError as exc:  # the cache is needed here: the cases are read from the prepared store
        where = exc.filename if isinstance(exc.filename, str) else out
        raise GliomagenError(
            f"{where}: {exc.strerror or exc} (preparing --synthetic {folder} in the cache; "
            "set GLIOMAGEN_CACHE to a disk with room)"
        ) from None
    return out


def looks_generated(folder: Path) -> bool:
    """True when ``folder`` looks like a cohort of ``gliomagen generate`` (whole or partial).

    That is: it has a ``manifest.json``, the marker of generate's temporary folder, a
    ``clinical.csv`` whose columns start with ``case_id,seed``, or a case folder named like a
    generated case (:data:`GENERATED_ID`). Real BraTS cases and phantoms have none of these.
    """
    if (folder / MANIFEST).exists() or (folder / STAGING_MARKER).exists():
        return True
    if _header(folder / CLINICAL_CSV)[:2] == ["case_id", "seed"]:
        return True
    return any(p.is_dir() and GENERATED_ID.match(p.name) for p in folder.iterdir())


def check_cohort(folder: Path) -> None:
    """Refuse a folder that looks like a cohort of ``generate`` (:func:`looks_generated`) but is
    not a complete one: no ``manifest.json`` or ``clinical.csv``, generate's temporary folder, or a
    case of the manifest missing on disk or without all its files (the manifest's ``case_ids``;
    a manifest without them, from older versions, by its ``n_cases``). Other folders pass.

    Raises:
        GliomagenError: ``<folder>: not a complete gliomagen cohort (...)``, naming the first
            missing case.
    """
    if not looks_generated(folder):
        return
    problem = _cohort_problem(folder)
    if problem:
        raise GliomagenError(f"{folder}: not a complete gliomagen cohort ({problem})")


def _cohort_problem(folder: Path) -> str | None:
    """Why the generated cohort ``folder`` is not complete, or ``None``."""
    if (folder / STAGING_MARKER).exists():
        return "the temporary folder of a generate that is running or was stopped"
    if not (folder / MANIFEST).is_file():
        return f"no {MANIFEST}: its generate did not finish; generate it again"
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{MANIFEST} cannot be read: {exc}"
    if not isinstance(manifest, dict):
        return f"{MANIFEST} is not a gliomagen manifest"
    if not (folder / CLINICAL_CSV).is_file():
        return f"no {CLINICAL_CSV}"
    names = [*(manifest.get("modalities") or MODALITIES), "seg"]
    ids = manifest.get("case_ids")
    if isinstance(ids, list):
        for cid in ids:
            lacking = _case_problem(folder / str(cid), names)
            if lacking:
                return f"case {cid} of {MANIFEST} is {lacking}"
        return None
    n = manifest.get("n_cases", manifest.get("n"))
    if not isinstance(n, int):
        return f"{MANIFEST} lists no case_ids and no n_cases"
    cases = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    complete = [p for p in cases if not _case_problem(p, names)]
    if len(complete) < n:
        first = next((p for p in cases if _case_problem(p, names)), None)
        where = f"; {first.name} is {_case_problem(first, names)}" if first else ""
        return f"{MANIFEST} lists {n} cases, {len(complete)} are complete on disk{where}"
    return None


def _case_problem(case: Path, names: Sequence[str]) -> str | None:
    """``"missing"`` or ``"incomplete (no ID-t2f.nii.gz)"`` for a case folder without all its files."""
    if not case.is_dir():
        return "missing"
    for name in names:
        stem = f"{case.name}-{name}"
        if not ((case / f"{stem}.nii.gz").is_file() or (case / f"{stem}.nii").is_file()):
            return f"incomplete (no {stem}.nii.gz)"
    return None


def _is_2d_cohort(folder: Path) -> bool:
    try:
        return json.loads((folder / "manifest.json").read_text()).get("spatial_dims") == 2
    except (OSError, ValueError, AttributeError):
        return False


def from_slice_folder(folder: Path, side: int, role: str) -> CaseSet:
    """A 2D cohort folder of ``gliomagen generate`` as a CaseSet of ``side x side`` slices (in memory)."""
    if not folder.is_dir():
        raise GliomagenError(f"{role} {folder}: not a folder or store")
    images, masks, ids, labels, spacing = read_slice_cohort(folder, side)
    return CaseSet.from_arrays(
        images, masks, case_ids=ids, labels=labels, name=folder.name, spacing_mm=spacing
    )


def _header(csv_path: Path) -> list[str]:
    """The column names of a CSV file (none when it is missing)."""
    if not csv_path.is_file():
        return []
    with open(csv_path, newline="") as fh:
        return fh.readline().strip().split(",")


def _has_column(csv_path: Path, column: str) -> bool:
    return column in _header(csv_path)


def resolve(
    spec: CaseSet | str | os.PathLike[str],
    role: str,
    *,
    default_split: str | None = None,
    size: Sequence[int] | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> CaseSet:
    """Turn a CLI/API argument into a CaseSet.

    Args:
        spec: a CaseSet (returned as is), ``STORE[:split]`` or a NIfTI folder.
        role: option name for messages (``--real``, ``--train``, ``--synthetic``).
        default_split: split used when ``spec`` names a store without one.
        size: grid of the real store, for ingesting a NIfTI folder.
        cache_dir: where ingested folders are cached.
        progress: show preparation progress.
    """
    if isinstance(spec, CaseSet):
        return spec
    path, split = split_spec(spec)
    if (path / "meta.json").is_file():
        return from_store(path, split or default_split, role)
    if split is not None:
        raise GliomagenError(f"{role} {spec}: {path} is not a gliomagen store (no meta.json)")
    if not path.exists():
        raise GliomagenError(f"{role} {path}: not found")
    if size is None:
        raise GliomagenError(
            f"{role} {path}: not a gliomagen store (no meta.json); run gliomagen prepare"
        )
    if path.is_dir():
        check_cohort(path)
    if len(size) == 2:
        return from_slice_folder(path, int(size[0]), role)
    if _is_2d_cohort(path):
        raise GliomagenError(f"{role} {path}: holds 2D slices but the real cases are 3D volumes")
    cases = from_store(ingest_folder(path, size, cache_dir, progress), None, role)
    cases.name = path.name
    return cases
