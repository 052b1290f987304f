"""The cases of the downstream segmentation benchmark: the real store's pools, the held-out cases
and the synthetic cohort (ingested once onto the real grid).

:func:`load_benchmark_data` opens the real store, ingests the synthetic cohort
(:func:`synthetic_store`) and sorts the cases with a mask into the pools of
:mod:`gliomagen.evaluation.utility`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.data.store import build_store, open_store
from gliomagen.errors import GliomagenError
from gliomagen.evaluation import segmentation as seg

HELDOUT: dict[str, tuple[str, ...]] = {"val+test": ("val", "test"), "test": ("test",)}
"""Which real splits of the scarce cohort are scored."""


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


def synthetic_store(synthetic: str | Path, size: Sequence[int], cache_dir: str | Path) -> Path:
    """A store of a synthetic cohort on the real store's grid (built once, then reused).

    Args:
        synthetic: a store (folder with ``meta.json``) or a BraTS-layout folder of cases, e.g. the
            output of ``gliomagen generate``; its ``clinical.csv`` is passed as the labels CSV.
        size: the real store's ``[D, H, W]``.
        cache_dir: where an ingested folder's store is kept, keyed by a hash of its files.

    Returns:
        The path of a store of ``size``.
    """
    src = Path(synthetic)
    if not src.is_dir():
        raise GliomagenError(f"--synthetic {src}: no such folder")
    if (src / "meta.json").is_file():
        meta = json.loads((src / "meta.json").read_text())
        if [int(s) for s in meta.get("size", [])] != [int(s) for s in size]:
            raise GliomagenError(
                f"--synthetic {src}: store size {meta.get('size')} differs from the real store's {list(size)}"
            )
        return src
    out = Path(cache_dir) / f"synthetic-{_tree_key(src, size)}"
    if (out / "meta.json").is_file():
        return out
    clinical = src / "clinical.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    built = build_store(
        [src],
        out,
        labels_csv=clinical if clinical.is_file() else None,
        size=tuple(int(s) for s in size),
        seed=0,
        progress=False,
    )
    return Path(built)


@dataclass
class BenchmarkData:
    """The cases of a benchmark: training pools, the scored held-out cases, the grid."""

    pools: dict[str, list[CaseRef]]  # "real", "large", "real+large", "synthetic"
    heldout: list[CaseRef]
    cohort: str
    large_cohorts: list[str]
    size: tuple[int, int, int]
    spacing: list[float]
    synthetic_store: Path | None = None


def load_benchmark_data(
    real_store: str | Path,
    synthetic: str | Path | None,
    cohort: str,
    *,
    large_cohort: str | Sequence[str] | None = None,
    heldout: str = "val+test",
    needs_large: bool = True,
    needs_synthetic: bool = True,
    cache_dir: str | Path = "cache",
) -> BenchmarkData:
    """Open the real store (and ingest the synthetic cohort) and sort the cases into pools.

    ``real``: the scarce cohort's *train* cases with a mask; ``large``: the large cohorts' *train*
    cases with a mask; ``synthetic``: every synthetic case with a mask; held-out: the scarce
    cohort's cases with a mask in the ``heldout`` splits. Raises GliomagenError naming the option
    when a needed pool is empty.
    """
    splits = {s: open_store(real_store, split=s) for s in ("train", "val", "test")}
    size = tuple(int(s) for s in splits["train"].size)
    if len(size) == 2:
        raise GliomagenError(
            f"--real {real_store}: a 2D slice store; the downstream benchmark segments 3D volumes (prepare without --slices)"
        )
    seg.check_size(size, str(real_store))
    cohorts = sorted(
        {
            str(r.get("cohort", ""))
            for ds in splits.values()
            for r in getattr(ds, "index_rows", ds.rows)
        }
    )
    if cohort not in cohorts:
        raise GliomagenError(
            f"--cohort {cohort}: not in {real_store} (cohorts: {', '.join(cohorts)})"
        )
    if large_cohort is None:
        large = [c for c in cohorts if c != cohort]
    else:
        large = [large_cohort] if isinstance(large_cohort, str) else list(large_cohort)
        bad = [c for c in large if c not in cohorts or c == cohort]
        if bad:
            raise GliomagenError(
                f"--large-cohort {','.join(bad)}: not another cohort of {real_store} ({', '.join(cohorts)})"
            )
    real = store_cases(splits["train"], {cohort})
    large_cases = store_cases(splits["train"], set(large))
    held = [c for s in HELDOUT[heldout] for c in store_cases(splits[s], {cohort})]
    if not real:
        raise GliomagenError(f"--cohort {cohort}: no train cases with a mask in {real_store}")
    if not held:
        raise GliomagenError(
            f"--cohort {cohort}: no {heldout} cases with a mask in {real_store} to score"
        )
    if needs_large and not large_cases:
        raise GliomagenError(
            f"--large-cohort: {real_store} has no train cases with a mask outside {cohort} for the +large arms"
        )
    syn: list[CaseRef] = []
    syn_path = None
    if synthetic is not None:
        syn_path = synthetic_store(synthetic, size, cache_dir)
        syn = store_cases(open_store(syn_path, split=None))
        if not syn:
            raise GliomagenError(f"--synthetic {synthetic}: no synthetic cases with a mask")
    elif needs_synthetic:
        raise GliomagenError("--synthetic: a synthetic cohort is required by the synthetic arms")
    pools = {"real": real, "large": large_cases, "real+large": real + large_cases, "synthetic": syn}
    spacing = [float(s) for s in splits["train"].spacing_mm]
    return BenchmarkData(pools, held, cohort, large, size, spacing, syn_path)  # type: ignore[arg-type]
