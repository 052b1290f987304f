"""The cases of the downstream segmentation benchmark: pools, val and test cases, in memory.

:func:`load_benchmark_data` opens the real store and sorts its cases with a mask by the store's
own split (``gliomagen prepare --split-csv`` fixes it):

- ``real``: the scarce cohort's *train* cases, or the ``real_cases`` among them (in that order; the
  benchmark's nested n = 8 / 16 / 32 subsets); no val or test case can enter a training pool;
- ``large``: the large cohorts' *train* cases; ``real+large``: both;
- ``val``: the scarce cohort's val cases (the checkpoint of every arm is chosen on them);
- ``heldout``: the scarce cohort's scored cases (``test``; ``val+test`` only without selection);
- ``SOURCE@Mx``: ``M`` x n cases of a synthetic cohort (ingested once onto the real grid,
  :func:`synthetic_store`) that follow the real cases' mix of labels (:func:`matched_subset`).

Every case used is read once into a :class:`CaseBank` (float16 images, uint8 labels), which the
training processes share.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen.data.store import build_store, open_store
from gliomagen.errors import GliomagenError
from gliomagen.evaluation import segmentation as seg

HELDOUT: dict[str, tuple[str, ...]] = {"val+test": ("val", "test"), "test": ("test",)}
"""Which real splits of the scarce cohort are scored."""

MATCH_KEYS: tuple[str, ...] = ("cohort", "grade")
"""Labels whose mix a synthetic pool follows (those the synthetic cohort records)."""


@dataclass(frozen=True)
class CaseRef:
    """One case of an opened store: the dataset, its index there, its id and raw labels."""

    dataset: Any
    index: int
    case_id: str
    row: Mapping[str, Any]


def store_cases(ds: Any, cohorts: set[str] | None = None) -> list[CaseRef]:
    """The cases of an opened store that have a mask (and belong to ``cohorts``, if given)."""
    has_mask = np.asarray(ds.has_mask, dtype=bool)
    rows = getattr(ds, "index_rows", ds.rows)  # every index.csv column, not only the schema's
    return [
        CaseRef(ds, i, str(cid), rows[i])
        for i, cid in enumerate(ds.case_ids)
        if has_mask[i] and (cohorts is None or str(rows[i].get("cohort", "")) in cohorts)
    ]


def _tree_key(folder: Path, size: Sequence[int]) -> str:
    h = hashlib.sha256(json.dumps([int(s) for s in size]).encode())
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (p.name.endswith((".nii.gz", ".nii")) or p.name == "clinical.csv"):
            st = p.stat()
            h.update(f"{p.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def synthetic_store(
    synthetic: str | Path, size: Sequence[int], cache_dir: str | Path, option: str = "--synthetic"
) -> Path:
    """A store of a synthetic cohort on the real store's grid (built once, then reused).

    Args:
        synthetic: a store (folder with ``meta.json``) or a BraTS-layout folder of cases, e.g. the
            output of ``gliomagen generate``; its ``clinical.csv`` is passed as the labels CSV.
        size: the real store's ``[D, H, W]``.
        cache_dir: where an ingested folder's store is kept, keyed by a hash of its files.
        option: the option named in errors.

    Returns:
        The path of a store of ``size``.
    """
    src = Path(synthetic)
    if not src.is_dir():
        raise GliomagenError(f"{option} {src}: no such folder")
    if (src / "meta.json").is_file():
        meta = json.loads((src / "meta.json").read_text())
        if [int(s) for s in meta.get("size", [])] != [int(s) for s in size]:
            raise GliomagenError(
                f"{option} {src}: store size {meta.get('size')} differs from the real store's {list(size)}"
            )
        return src
    out = Path(cache_dir) / f"synthetic-{_tree_key(src, size)}"  # build_store skips an up-to-date one
    clinical = src / "clinical.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    built = build_store(
        [src], out, labels_csv=clinical if clinical.is_file() else None,
        size=tuple(int(s) for s in size), seed=0, progress=False,
    )  # fmt: skip
    return Path(built)


def _label(row: Mapping[str, Any], key: str) -> str:
    v = row.get(key)
    return "" if v is None or str(v) in ("nan", "None") else str(v)


def matched_subset(
    cases: Sequence[CaseRef],
    reference: Sequence[CaseRef],
    multiple: int,
    keys: Sequence[str] = MATCH_KEYS,
    option: str = "--synthetic",
) -> list[CaseRef]:
    """``multiple`` x ``len(reference)`` cases whose labels follow the reference cases' mix.

    For every combination of the ``keys`` that the synthetic cases record (e.g. ``cohort=SSA,
    grade=LGG``), ``multiple`` x its count among the reference cases are taken, the first ones in
    ``cases`` order, so the pool of a smaller multiple is a subset of a larger one's.

    Raises:
        GliomagenError: too few synthetic cases of some combination (naming it and ``option``).
    """
    used = [k for k in keys if any(_label(c.row, k) for c in cases)]
    need = Counter(tuple(_label(c.row, k) for k in used) for c in reference)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, c in enumerate(cases):
        groups.setdefault(tuple(_label(c.row, k) for k in used), []).append(i)
    picked: list[int] = []
    for stratum, count in sorted(need.items()):
        have = groups.get(stratum, [])
        if len(have) < multiple * count:
            what = ", ".join(f"{k}={v or '?'}" for k, v in zip(used, stratum, strict=True)) or "any"
            raise GliomagenError(
                f"{option}: {multiple} x {count} = {multiple * count} cases with {what} needed "
                f"(the real training cases' mix), only {len(have)} there"
            )
        picked += have[: multiple * count]
    return [cases[i] for i in sorted(picked)]


@dataclass
class CaseBank:
    """Every case a benchmark reads, in memory: float16 images, uint8 labels, their ids."""

    ids: list[str]
    images: np.ndarray  # float16 [N, C, D, H, W]
    labels: np.ndarray  # uint8 [N, D, H, W]

    def take(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images float32 [n, C, D, H, W], labels int64 [n, D, H, W])`` of bank rows ``idx``."""
        ii = np.asarray(list(idx), dtype=np.int64)
        return (
            torch.from_numpy(self.images[ii].astype(np.float32)),
            torch.from_numpy(self.labels[ii].astype(np.int64)),
        )


def read_bank(groups: Mapping[str, Sequence[CaseRef]]) -> tuple[CaseBank, dict[str, list[int]]]:
    """Read the cases of every group once into a bank; returns it and each group's bank rows."""
    keys: dict[tuple[str, int], int] = {}
    refs: list[CaseRef] = []
    index: dict[str, list[int]] = {}
    for name, cases in groups.items():
        rows = []
        for c in cases:
            key = (str(c.dataset.path), int(c.dataset.indices[c.index]))
            if key not in keys:
                keys[key] = len(refs)
                refs.append(c)
            rows.append(keys[key])
        index[name] = rows
    if not refs:
        raise GliomagenError("utility: no cases to read")
    first = refs[0].dataset
    images = np.empty((len(refs), len(first.modalities), *first.size), np.float16)
    labels = np.empty((len(refs), *first.size), np.uint8)
    opened: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (path, row), k in keys.items():
        if path not in opened:
            opened[path] = (
                np.load(Path(path) / "images.npy", mmap_mode="r"),
                np.load(Path(path) / "masks.npy", mmap_mode="r"),
            )
        images[k], labels[k] = opened[path][0][row], opened[path][1][row]
    return CaseBank([c.case_id for c in refs], images, labels), index


@dataclass
class BenchmarkData:
    """The cases of a benchmark: pools, val and scored held-out cases, the grid, the bank."""

    pools: dict[str, list[CaseRef]]  # "real", "large", "real+large", "SOURCE@Mx"
    heldout: list[CaseRef]
    cohort: str
    large_cohorts: list[str]
    size: tuple[int, int, int]
    spacing: list[float]
    synthetic_store: Path | None = None
    val: list[CaseRef] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)  # source name -> its store
    bank: CaseBank | None = None
    index: dict[str, list[int]] = field(default_factory=dict)  # pool / "val" / "heldout" -> rows

    @property
    def n_real(self) -> int:
        """The number of scarce training cases (n)."""
        return len(self.pools["real"])


def read_case_ids(path: str | Path) -> list[str]:
    """Case ids from a file: one per line, or a CSV with a ``case_id`` column (blank lines and
    ``#`` comments skipped), in file order.

    Raises:
        GliomagenError: the file cannot be read or lists no id (naming ``--real-cases``).
    """
    try:
        lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise GliomagenError(f"--real-cases {path}: cannot read it ({exc})") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if lines and "case_id" in [c.strip() for c in lines[0].split(",")]:
        col = [c.strip() for c in lines[0].split(",")].index("case_id")
        ids = [row[col].strip() for row in csv.reader(lines[1:]) if len(row) > col and row[col].strip()]
    else:
        ids = lines
    if not ids:
        raise GliomagenError(f"--real-cases {path}: lists no case id")
    return ids


def _real_subset(real: list[CaseRef], wanted: Sequence[str], cohort: str, store: Any) -> list[CaseRef]:
    by_id = {c.case_id: c for c in real}
    missing = [c for c in wanted if c not in by_id]
    if missing:
        raise GliomagenError(
            f"--real-cases: {missing[0]} (and {len(missing) - 1} more) is not a train case of "
            f"{cohort} with a mask in {store}; a val or test case never trains a segmenter"
        )
    if len(set(wanted)) != len(wanted):
        raise GliomagenError("--real-cases: a case id is listed twice")
    return [by_id[c] for c in wanted]


def _cohorts(real_store: str | Path, splits: Mapping[str, Any], cohort: str,
             large_cohort: str | Sequence[str] | None) -> list[str]:  # fmt: skip
    """The large cohorts (default: every other cohort of the store), checked."""
    cohorts = sorted(
        {str(r.get("cohort", "")) for ds in splits.values() for r in ds.index_rows}
    )
    if cohort not in cohorts:
        raise GliomagenError(
            f"--cohort {cohort}: not in {real_store} (cohorts: {', '.join(cohorts)})"
        )
    if large_cohort is None:
        return [c for c in cohorts if c != cohort]
    large = [large_cohort] if isinstance(large_cohort, str) else list(large_cohort)
    bad = [c for c in large if c not in cohorts or c == cohort]
    if bad:
        raise GliomagenError(
            f"--large-cohort {','.join(bad)}: not another cohort of {real_store} ({', '.join(cohorts)})"
        )
    return large


def load_benchmark_data(
    real_store: str | Path,
    synthetic: str | Path | None,
    cohort: str,
    *,
    large_cohort: str | Sequence[str] | None = None,
    heldout: str = "test",
    needs_large: bool = True,
    needs_synthetic: bool = True,
    cache_dir: str | Path = "cache",
    stand_in: str | Path | None = None,
    real_cases: Sequence[str] | None = None,
    multiples: Sequence[int] = (1,),
    needs_val: bool = False,
    read: bool = True,
) -> BenchmarkData:
    """Open the real store (and ingest the synthetic cohorts) and sort the cases into pools.

    See the module docstring for the pools. ``stand_in`` is a second synthetic source (pools
    ``stand-in@Mx``); ``real_cases`` restricts ``real`` to those train case ids; ``multiples``
    are the synthetic pool sizes in units of n; ``read=False`` skips reading the arrays.

    Raises:
        GliomagenError: naming the option, when a needed pool is empty, a listed case is not a
            scarce training case, or a synthetic cohort is too small for its multiples.
    """
    splits = {s: open_store(real_store, split=s) for s in ("train", "val", "test")}
    size = tuple(int(s) for s in splits["train"].size)
    if len(size) == 2:
        raise GliomagenError(
            f"--real {real_store}: a 2D slice store; the downstream benchmark segments 3D volumes (prepare without --slices)"
        )
    seg.check_size(size, str(real_store))
    large = _cohorts(real_store, splits, cohort, large_cohort)
    real = store_cases(splits["train"], {cohort})
    if real_cases is not None:
        real = _real_subset(real, list(real_cases), cohort, real_store)
    large_cases = store_cases(splits["train"], set(large))
    val = store_cases(splits["val"], {cohort})
    held = [c for s in HELDOUT[heldout] for c in store_cases(splits[s], {cohort})]
    if not real:
        raise GliomagenError(f"--cohort {cohort}: no train cases with a mask in {real_store}")
    if not held:
        raise GliomagenError(
            f"--cohort {cohort}: no {heldout} cases with a mask in {real_store} to score"
        )
    if needs_val and not val:
        raise GliomagenError(
            f"--val-every: {real_store} has no val cases of {cohort} with a mask to choose "
            "checkpoints on; prepare a val split or use --val-every 0"
        )
    if needs_large and not large_cases:
        raise GliomagenError(
            f"--large-cohort: {real_store} has no train cases with a mask outside {cohort} for the +large arms"
        )
    if needs_synthetic and synthetic is None:
        raise GliomagenError("--synthetic: a synthetic cohort is required by the synthetic arms")
    pools: dict[str, list[CaseRef]] = {"real": real, "large": large_cases, "real+large": real + large_cases}
    stores: dict[str, Path] = {}
    for name, folder, option in (("synthetic", synthetic, "--synthetic"), ("stand-in", stand_in, "--stand-in")):
        if folder is None:
            continue
        stores[name] = synthetic_store(folder, size, cache_dir, option)
        cases = store_cases(open_store(stores[name], split=None))
        if not cases:
            raise GliomagenError(f"{option} {folder}: no synthetic cases with a mask")
        for m in sorted({int(m) for m in multiples}):
            pools[f"{name}@{m}x"] = matched_subset(cases, real, m, option=option)
    data = BenchmarkData(
        pools, held, cohort, large, size, [float(s) for s in splits["train"].spacing_mm],  # type: ignore[arg-type]
        stores.get("synthetic"), val, stores,
    )  # fmt: skip
    if read:
        data.bank, data.index = read_bank({**pools, "val": val, "heldout": held})
    return data
