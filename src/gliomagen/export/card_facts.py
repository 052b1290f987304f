"""What a model card states, read from a checkpoint, its run folder and (if still there) its store.

A checkpoint (:mod:`gliomagen.io.checkpoint`) holds the resolved configuration, the conditioning
schema, the store's grid facts (size, modalities, spacing, template geometry), the steps, images
seen and training seconds, and, in ``best.pt``, the validation that made it best. It does not
record which store it was trained on; the run's ``log.txt`` does (its ``training STORE: N cases``
header line, the last one of a resumed run), and ``--store`` names it explicitly. When the store
folder is readable, its ``meta.json`` gives the format, fingerprint and case counts, its
``index.csv`` the labels of the training cases, and the source folders tell whether the cases were
the built-in phantoms (a ``phantoms.json`` written by ``gliomagen phantoms`` beside them).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gliomagen.config import preset, to_dict
from gliomagen.data.conditions import ConditionSchema, is_missing
from gliomagen.data.fingerprint import store_fingerprint
from gliomagen.data.nifti import sha256
from gliomagen.errors import GliomagenError
from gliomagen.io.checkpoint import BEST_NAME, CHECKPOINT_DIR, load_checkpoint, resolve_checkpoint
from gliomagen.training.validation import read_records

PHANTOMS_FILE = "phantoms.json"
PHANTOMS_GENERATOR = "gliomagen phantoms"
LOG_FILE = "log.txt"
RUN_FILES = (LOG_FILE, "config.yaml", "validation.jsonl")
"""Files that mark the folder above ``checkpoints/`` as a run folder."""
_HEADER = re.compile(
    r"training (?P<store>.+?): (?P<cases>\d+) cases \((?P<skipped>\d+) without mask skipped\)"
    r"(?:.*?, (?P<workers>\d+) worker\(s\) on (?P<device>[^,]+),)?"
)


@dataclass
class StoreFacts:
    """The training store as found on disk now (``None`` fields: not readable).

    Attributes:
        path: the store folder.
        found_by: how the path was learnt (``--store``, the checkpoint, or ``RUN/log.txt``).
        meta: its ``meta.json`` (``None`` when the folder or the file is gone).
        label_counts: per categorical condition, the values of the training cases and their counts.
        ranges: per continuous condition, ``(min, max)`` over the training cases.
        phantoms: built from ``gliomagen phantoms`` (``None``: the source folders are gone).
        matches: the store holds the data the checkpoint was trained on (its content fingerprint
            equals the recorded one; for older checkpoints: the grid and template geometry).
        fingerprint: the content fingerprint the checkpoint recorded, if any.
    """

    path: str
    found_by: str
    meta: dict[str, Any] | None = None
    label_counts: dict[str, Counter[str]] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    phantoms: bool | None = None
    matches: bool | None = None
    fingerprint: str | None = None


@dataclass
class CardFacts:
    """Everything a model card states.

    Attributes:
        checkpoint: the checkpoint file described.
        sha256: its SHA-256.
        n_bytes: its size.
        run_dir: the run folder (``None`` for a lone checkpoint file).
        ckpt: the checkpoint dict without optimiser states and RNG.
        schema: the conditioning schema.
        config_diff: ``key -> (preset value, run value)`` for every key that differs from the
            preset's default (``None`` when the preset is unknown to this gliomagen).
        log: the run header's fields (store, cases, skipped, workers, device), if any.
        store: the training store, if its path is known.
        best: ``best.pt``'s step and validation entry (``None`` without one).
        last_record: the last line of ``RUN/validation.jsonl`` (``None`` without one).
        generator_values: number of values in the generator's (EMA) weights.
    """

    checkpoint: Path
    sha256: str
    n_bytes: int
    run_dir: Path | None
    ckpt: dict[str, Any]
    schema: ConditionSchema
    config_diff: dict[str, tuple[Any, Any]] | None
    log: dict[str, str] = field(default_factory=dict)
    store: StoreFacts | None = None
    best: dict[str, Any] | None = None
    last_record: dict[str, Any] | None = None
    generator_values: int = 0


def run_folder_of(source: Path) -> Path | None:
    """The run folder of ``source``: itself when a folder, ``RUN`` for ``RUN/checkpoints/x.pt``."""
    if source.is_dir():
        return source.parent if source.name == CHECKPOINT_DIR else source
    run = source.parent.parent
    if source.parent.name == CHECKPOINT_DIR and any((run / n).is_file() for n in RUN_FILES):
        return run
    return None


def gather(source: Path | str, store: Path | str | None = None) -> CardFacts:
    """Read everything a model card states about a run folder or checkpoint.

    Args:
        source: a run folder (its newest checkpoint) or a checkpoint file.
        store: the training store folder; default: the one ``RUN/log.txt`` names.

    Raises:
        GliomagenError: the checkpoint is missing or unreadable.
    """
    source = Path(source)
    path = resolve_checkpoint(source)
    ckpt = load_checkpoint(path)
    run_dir = run_folder_of(source)
    log = read_log_header(run_dir) if run_dir is not None else {}
    facts = CardFacts(
        checkpoint=path,
        sha256=sha256(path),
        n_bytes=path.stat().st_size,
        run_dir=run_dir,
        ckpt={k: v for k, v in ckpt.items() if k not in ("G", "D", "opt_G", "opt_D", "rng")},
        schema=ConditionSchema.from_dict(ckpt["schema"]),
        config_diff=config_diff(ckpt.get("config", {})),
        log=log,
        generator_values=sum(int(t.numel()) for t in ckpt.get("G_ema", ckpt.get("G", {})).values()),
    )
    recorded = ckpt.get("store") or {}  # {path, fingerprint} in checkpoints since format 1's store key
    store_path, found_by = (
        (str(store), "--store") if store
        else (recorded.get("path"), "the checkpoint") if recorded.get("path")
        else (log.get("store"), "RUN/log.txt")
    )  # fmt: skip
    if store_path:
        facts.store = read_store(store_path, found_by, facts)
    facts.best = _best(path, ckpt, run_dir)
    records = read_records(run_dir) if run_dir is not None else []
    facts.last_record = records[-1] if records else None
    return facts


def read_log_header(run_dir: Path) -> dict[str, str]:
    """The fields of the last ``training STORE: ...`` line of ``RUN/log.txt`` (``{}`` if none)."""
    path = run_dir / LOG_FILE
    if not path.is_file():
        return {}
    found: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = _HEADER.search(line)
        if m:
            found = {k: v.strip() for k, v in m.groupdict().items() if v is not None}
    return found


def config_diff(config: dict[str, Any]) -> dict[str, tuple[Any, Any]] | None:
    """``section.key -> (preset default, run value)`` where the run differs from its preset.

    Returns ``None`` when the checkpoint names a preset this gliomagen does not know.
    """
    try:
        defaults = to_dict(preset(str(config.get("preset", ""))))
    except GliomagenError:
        return None
    base, run = _flatten(defaults), _flatten(config)
    missing = object()
    out: dict[str, tuple[Any, Any]] = {}
    for key in [*base, *(k for k in run if k not in base)]:
        if key == "preset":
            continue
        a, b = base.get(key, missing), run.get(key, missing)
        if a != b:
            out[key] = (None if a is missing else a, None if b is missing else b)
    return out


def read_store(path: str, found_by: str, facts: CardFacts) -> StoreFacts:
    """The store's meta, the training cases' labels and the phantom check, as far as readable."""
    out = StoreFacts(path=path, found_by=found_by)
    folder = Path(path)
    try:
        out.meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return out
    meta = out.meta
    sm = facts.ckpt.get("store_meta", {})
    recorded = (facts.ckpt.get("store") or {}).get("fingerprint")
    if recorded:  # the content fingerprint train recorded: the same data, or not
        try:
            out.matches = store_fingerprint(folder) == recorded
        except GliomagenError:
            out.matches = False
        out.fingerprint = recorded
    else:  # older checkpoints: the grid and template geometry are all there is to compare
        out.matches = [int(s) for s in meta.get("size", [])] == [
            int(s) for s in sm.get("size", [])
        ] and meta.get("template_geometry", {}) == sm.get("template_geometry", {})
    rows = _training_rows(folder, str(facts.ckpt.get("config", {}).get("data", {}).get("split", "train")))
    out.label_counts, out.ranges = _label_summary(rows, facts.schema)
    out.phantoms = phantom_store(meta, rows)
    return out


def phantom_store(meta: dict[str, Any], rows: list[dict[str, str]]) -> bool | None:
    """Whether a store's cases are the built-in phantoms.

    Looks for ``phantoms.json`` (written by ``gliomagen phantoms``) in the folder of the store's
    labels CSV and in the folders holding its case folders. ``None`` when none of these folders
    exists any more (nothing left to check).
    """
    folders: set[Path] = set()
    if meta.get("labels_csv"):
        folders.add(Path(str(meta["labels_csv"])).parent)
    for row in rows:
        if row.get("t1n_path"):
            folders.add(Path(row["t1n_path"]).parent.parent)
    seen = False
    for folder in sorted(folders):
        seen = seen or folder.is_dir()
        marker = folder / PHANTOMS_FILE
        if marker.is_file():
            try:
                info = json.loads(marker.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(info, dict) and info.get("generator") == PHANTOMS_GENERATOR:
                return True
    return False if seen else None


def _training_rows(folder: Path, split: str) -> list[dict[str, str]]:
    """The store's ``index.csv`` rows of the split the run trained on, cases with a mask only."""
    try:
        with open(folder / "index.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return []
    return [r for r in rows if r.get("split") == split and r.get("has_mask", "1") in ("1", "True")]


def _label_summary(
    rows: list[dict[str, str]], schema: ConditionSchema
) -> tuple[dict[str, Counter[str]], dict[str, tuple[float, float]]]:
    counts: dict[str, Counter[str]] = {}
    ranges: dict[str, tuple[float, float]] = {}
    if not rows:
        return counts, ranges
    for f in schema.fields:
        values = [r[f.name] for r in rows if f.name in r]
        if len(values) != len(rows):
            continue  # not a column of index.csv (e.g. a slice store's view)
        if f.kind == "categorical":
            counts[f.name] = Counter("unknown" if is_missing(v) else str(v) for v in values)
        else:
            numbers = [float(v) for v in values if not is_missing(v) and _is_number(v)]
            if numbers:
                ranges[f.name] = (min(numbers), max(numbers))
    return counts, ranges


def _best(path: Path, ckpt: dict[str, Any], run_dir: Path | None) -> dict[str, Any] | None:
    """``{"step", "metric", "value", "metrics"}`` of the run's best checkpoint, if any."""
    if "validation" in ckpt:
        return {"step": int(ckpt["step"]), **ckpt["validation"]}
    best = (run_dir / CHECKPOINT_DIR / BEST_NAME) if run_dir is not None else None
    if best is None or not best.is_file() or os.path.samefile(best, path):
        return None
    entry = load_checkpoint(best)
    if "validation" not in entry:
        return None
    return {"step": int(entry["step"]), **entry["validation"]}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
