"""A store build's inputs: label columns checked, intensity options read, and their fingerprint.

:func:`input_fingerprint` hashes every input file's path, size and modification time, the labels
table and the options; a store whose ``meta.json`` holds the same fingerprint is up to date
(:func:`is_up_to_date`) and is not rebuilt, unless its files are damaged.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen import __version__
from gliomagen.data.layouts import CaseRecord
from gliomagen.data.nifti import sha256
from gliomagen.data.preprocess import PrepOptions
from gliomagen.data.restoration import DenoiseOptions, N4Options
from gliomagen.data.standardise import load_nyul_standard
from gliomagen.data.store_check import store_damage
from gliomagen.data.store_format import FORMAT_VERSION, read_json
from gliomagen.data.tables import warn
from gliomagen.errors import GliomagenError

RESERVED_COLUMNS = frozenset({"case_id", "split", "has_mask", "layout", "intensity", "geometry"})
"""Index columns a label may not be named (nor ``*_path``)."""


def check_label_columns(
    cases: Sequence[CaseRecord],
    label_cols: Sequence[str],
    label_rows: dict[str, dict[str, str]],
    labels_csv: Path | str | None,
) -> None:
    """Refuse label columns the index reserves and ``--labels`` rows of cases not found; warn
    about cases the ``--labels`` table has no row for."""
    for name in [*label_cols, *(k for c in cases for k in c.labels)]:
        if name in RESERVED_COLUMNS or name.endswith("_path"):
            raise GliomagenError(f"label column {name!r} is reserved by the store index; rename it")
    known = {c.case_id for c in cases}
    stray = [cid for cid in label_rows if cid not in known]
    if stray:
        raise GliomagenError(
            f"--labels {labels_csv}: {len(stray)} row(s) for unknown cases, e.g. {', '.join(map(repr, stray[:3]))}"
        )
    unlabelled = [c.case_id for c in cases if c.case_id not in label_rows]
    if labels_csv and label_rows and unlabelled:  # a table without rows has had its own warning
        warn(
            f"--labels {labels_csv}: {len(unlabelled)} of {len(cases)} case(s) have no row, e.g. "
            f"{', '.join(unlabelled[:5])}; their labels from it are missing"
        )


def prep_options(
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


def store_options(
    size: tuple[int, int, int],
    seed: int,
    skip_bad: bool,
    kinds: dict[str, str],
    qc_cases: int,
    prep: PrepOptions,
    standard: dict[str, np.ndarray] | None,
    split_csv: Path | str | None = None,
) -> dict[str, Any]:
    """The options of a volume store build, as recorded in ``meta.json`` and fingerprinted.

    Intensity options appear only when they differ from the defaults, so stores built before
    those options existed stay valid; the resampling (anti-aliasing) always does, so stores built
    before it rebuild. With ``split_csv`` the seed is replaced by the table's content
    (:func:`split_option`), so another table rebuilds the store and the same table elsewhere does
    not.
    """
    options = {"size": list(size), "seed": seed, "skip_bad": skip_bad, "label_types": kinds,
               "qc_cases": qc_cases, "format_version": FORMAT_VERSION, "gliomagen_version": __version__}  # fmt: skip
    options["resampling"] = prep.resampling()
    if not prep.is_default:
        prep_options = prep.to_dict()
        if standard is not None:
            prep_options["nyul_from"] = {m: v.tolist() for m, v in standard.items()}
        options["preprocessing"] = prep_options
    if split_csv is not None:
        del options["seed"]
        options["split"] = split_option(split_csv)
    return options


def split_option(split_csv: Path | str) -> dict[str, str]:
    """The fingerprinted part of ``--split-csv``: its method and content hash (not its path)."""
    return {"method": "split-csv", "sha256": sha256(Path(split_csv))}


def input_fingerprint(
    cases: list[CaseRecord], labels_csv: Path | str | None, options: dict[str, Any]
) -> str:
    """A hash of every input file's path, size and mtime, the labels table, the options and the
    recorded scale of generated cases."""
    files = [str(p.resolve()) for c in cases for p in c.files()]
    files += [str(c.folder.resolve()) for c in cases if c.layout == "manifest"]
    stats = []
    for f in sorted(set(files)):
        st = os.stat(f) if os.path.exists(f) else None
        stats.append([f, st.st_size if st else -1, st.st_mtime_ns if st else -1])
    problems = sorted((c.case_id, c.problem or "") for c in cases)
    labels = sha256(Path(labels_csv)) if labels_csv else None
    # generated cases keep their generator's scale: a store built before that (or from a cohort
    # whose manifest changed) is out of date
    scales = sorted((c.case_id, c.scale) for c in cases if c.scale is not None)
    blob = json.dumps([stats, problems, labels, options, *([scales] if scales else [])], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def is_up_to_date(out: Path, stamp: str) -> bool:
    """True when ``out`` is a whole store built from inputs and options with fingerprint ``stamp``.

    A store with that fingerprint whose files are damaged (:func:`~gliomagen.data.store_check.store_damage`)
    is out of date: a warning says why, and the caller rebuilds it (replacing it only when it is a
    store gliomagen wrote, see :func:`~gliomagen.data.store_output.staged_store`).
    """
    try:
        meta = read_json(out / "meta.json") if (out / "meta.json").is_file() else {}
    except GliomagenError:
        return False  # not a store's meta.json (whether the folder may be replaced is checked later)
    if not isinstance(meta, dict) or meta.get("input_fingerprint") != stamp:
        return False
    damage = store_damage(out)
    if damage is not None:
        damage = damage.removesuffix("; run gliomagen prepare again")
        warn(f"{out}: the store is damaged ({damage}); building it again")
        return False
    return True
