"""A model card (Markdown) for a trained generator: data, recipe, length, validation, conditions, limits.

The facts come from :func:`gliomagen.export.card_facts.gather`; this module only writes them down.
A fact the checkpoint, run folder or store does not hold is said to be unknown, never guessed.

Example:
    >>> from gliomagen.export import model_card  # doctest: +SKIP
    >>> print(model_card("runs/demo"))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen import MASK_CLASSES, __version__
from gliomagen.data.conditions import ConditionField
from gliomagen.data.nifti import voxel_sizes
from gliomagen.export.card_facts import CardFacts, StoreFacts, gather
from gliomagen.io.atomic import write_text

_MASK_NAMES = {1: "NCR (necrotic / non-enhancing core)", 2: "ED (oedema)", 3: "ET (enhancing)"}
_USE = (
    "Intended use: synthetic multi-parametric MRI with tumour masks for research and method "
    "development (data augmentation, benchmarking, teaching). Not for clinical use: the model is not "
    "a medical device, its cases are not images of any patient, and nothing it generates may inform "
    "a diagnosis or a treatment."
)
_LIMITS = (
    "The model reproduces the training cohort: its scanners, protocols, preprocessing and the mix "
    "of its labels; a condition value outside the conditioning table below cannot be requested, and continuous "
    "values far outside the training range extrapolate. A generator can memorise training cases: "
    "check `gliomagen evaluate` (near-copies) before sharing generated data beyond the training "
    "data's licence."
)
_PHANTOM_WARNING = (
    "**Warning: trained on the built-in phantoms** (`gliomagen phantoms`): procedurally drawn "
    "brains and tumours, not patient data. Its cases look like phantoms, not like MRI; use it to "
    "test a pipeline, never as a source of realistic data."
)


def model_card(source: Path | str, store: Path | str | None = None) -> str:
    """The model card of a run folder or checkpoint, as Markdown.

    Args:
        source: a run folder (its newest checkpoint) or a checkpoint file.
        store: the training store; default: the one the run's ``log.txt`` names.
    """
    return render(gather(source, store))


def write_model_card(source: Path | str, out: Path | str, store: Path | str | None = None) -> Path:
    """Write :func:`model_card` to ``out`` atomically; returns ``out``."""
    return write_text(out, model_card(source, store))


def render(facts: CardFacts) -> str:
    """The Markdown of a model card."""
    title = facts.run_dir.name if facts.run_dir is not None else facts.checkpoint.stem
    parts = [
        f"# Model card: {title}\n",
        f"Conditional StyleGAN of gliomagen; card written by gliomagen {__version__} "
        "(`gliomagen export card`).\n",
        *_section("Checkpoint", _checkpoint_lines(facts)),
        *_section("Intended use and limits", _use_lines(facts)),
        *_section("Training data", _data_lines(facts)),
        *_section("Recipe", _recipe_lines(facts)),
        *_section("Training length", _length_lines(facts)),
        *_section("Validation", _validation_lines(facts)),
        *_section("Conditioning", _condition_lines(facts)),
    ]
    return "\n".join(parts).rstrip("\n") + "\n"


def _section(title: str, lines: Iterable[str]) -> list[str]:
    return [f"## {title}\n", *lines, ""]


def _checkpoint_lines(f: CardFacts) -> list[str]:
    return [
        f"- File: `{f.checkpoint}` ({f.n_bytes / 1e6:.1f} MB)",
        f"- SHA-256: `{f.sha256}`",
        f"- Run folder: `{f.run_dir}`" if f.run_dir is not None else "- Run folder: not given",
        f"- Generator (EMA weights): {f.generator_values:,} values",
    ] + _exported(f.ckpt.get("exported"))


def _exported(rec: dict[str, Any] | None) -> list[str]:
    """The ``gliomagen export generator`` record of a sampling-only checkpoint, if it is one."""
    if not rec:
        return []
    line = (
        f"- Sampling-only export (`gliomagen export generator`, {rec.get('dtype', '?')}) of "
        f"`{rec.get('from', '?')}` (SHA-256 `{rec.get('from_sha256', '?')}`, step {int(rec.get('step', 0)):,})"
    )
    return [line] + ([f"- Note: {rec['note']}"] if rec.get("note") else [])


def _data_lines(f: CardFacts) -> list[str]:
    sm = f.ckpt.get("store_meta", {})
    size = [int(s) for s in f.ckpt.get("size", sm.get("size", []))]
    spacing = [float(s) for s in sm.get("spacing_mm", [])]
    lines = [_store_line(f.store)]
    if f.log.get("cases"):
        lines.append(
            f"- Training cases: {f.log['cases']} with a tumour mask ({f.log.get('skipped', '?')} "
            "without one left out), from the run's log"
        )
    lines += _store_meta_lines(f.store)
    lines.append(f"- Grid: {_by(size)} voxels, voxel size {_mm(spacing)}")
    geometry = sm.get("template_geometry") or {}
    if geometry.get("affine") and geometry.get("shape"):
        sizes = voxel_sizes(np.asarray(geometry["affine"], dtype=np.float64))
        lines.append(
            f"- File grid of generated cases (`generate --space brats`): "
            f"{_by(geometry['shape'])} voxels at {_mm(sizes.tolist())}"
        )
    lines.append(f"- Modalities: {', '.join(sm.get('modalities', [])) or 'not recorded'}")
    labels = ", ".join(f"{i} {_MASK_NAMES[i]}" for i in range(1, len(MASK_CLASSES)))
    lines.append(f"- Tumour mask labels (BraTS 2023): 0 background, {labels}")
    return lines


def _store_line(store: StoreFacts | None) -> str:
    if store is None:
        return (
            "- Store: not recorded (the checkpoint does not name its store, and no run log or "
            "`--store` was given)"
        )
    state = "" if store.meta is not None else "; not readable now"
    return f"- Store: `{store.path}` (from {store.found_by}{state})"


def _store_meta_lines(store: StoreFacts | None) -> list[str]:
    if store is None or store.meta is None:
        return []
    meta = store.meta
    splits = meta.get("splits", {})
    lines = [
        f"- Store format {meta.get('format_version', '?')}, built by gliomagen "
        f"{meta.get('gliomagen_version', '?')}; input fingerprint "
        f"`{meta.get('input_fingerprint', 'not recorded')}`",
        f"- Store cases: {meta.get('n_cases', '?')} ("
        + ", ".join(f"{k} {v}" for k, v in splits.items())
        + f"), {meta.get('n_with_mask', '?')} with a mask",
    ]
    if store.fingerprint:
        lines.append(f"- Store content fingerprint recorded at training: `{store.fingerprint}`")
    if store.matches is False:
        lines.append(
            "- **The store now at this path does not match the checkpoint**: it was rebuilt or "
            "replaced since training; the figures above and the label counts below describe the "
            "store as it is now"
        )
    elif store.matches and store.fingerprint:
        lines.append("- The store now at this path holds the data the model was trained on")
    elif store.matches:
        lines.append(
            "- The store's grid and template geometry match the checkpoint (an older checkpoint "
            "keeps no fingerprint, so this is the best available check that it is the same build)"
        )
    return lines


def _recipe_lines(f: CardFacts) -> list[str]:
    config = f.ckpt.get("config", {})
    name = config.get("preset", "?")
    lines = [f"- Preset: `{name}`"]
    if f.config_diff is None:
        return [
            *lines,
            f"- The preset `{name}` is unknown to this gliomagen; differences not listed",
        ]
    if not f.config_diff:
        return [*lines, "- No key differs from the preset's defaults"]
    lines += [
        "- Keys that differ from the preset's defaults:",
        "",
        "| key | preset | this run |",
        "|---|---|---|",
    ]
    lines += [f"| `{k}` | {_value(a)} | {_value(b)} |" for k, (a, b) in f.config_diff.items()]
    return lines


def _length_lines(f: CardFacts) -> list[str]:
    ckpt = f.ckpt
    config = ckpt.get("config", {})
    train = config.get("train", {})
    elapsed = float(ckpt.get("train_state", {}).get("elapsed_s", float("nan")))
    lines = [
        f"- Steps: {int(ckpt.get('step', 0)):,} of {int(train.get('steps', 0)):,} planned, "
        f"batch {train.get('batch_size', '?')}; {int(ckpt.get('images_seen', 0)):,} images seen",
        f"- Training time: {elapsed / 60:.1f} minutes"
        if math.isfinite(elapsed)
        else "- Training time: not recorded",
    ]
    if f.log.get("device"):
        lines.append(f"- Hardware: {f.log.get('workers', '1')} worker(s) on {f.log['device']}")
    stop = (f.last_record or {}).get("stop")
    if stop:
        lines.append(f"- Stopped early: {stop.get('reason')} ({stop.get('detail')})")
    return lines


def _validation_lines(f: CardFacts) -> list[str]:
    if f.best is None and f.last_record is None:
        every = f.ckpt.get("config", {}).get("train", {}).get("val_every", 0)
        return [f"- No validation recorded (`train.val_every={every}`)"]
    lines: list[str] = []
    if f.best is not None:
        lines.append(
            f"- Best checkpoint (`best.pt`): step {f.best['step']:,}, {f.best.get('metric')} = "
            f"{_value(f.best.get('value'))}"
        )
        lines += _metric_table(f.best.get("metrics", {}))
    if f.last_record is not None:
        r = f.last_record
        lines.append(
            f"- Last validation (`validation.jsonl`): step {int(r.get('step', 0)):,}, "
            f"{r.get('metric')} = {_value((r.get('metrics') or {}).get(r.get('metric')))}, "
            f"{'improved' if r.get('improved') else 'no improvement'}"
        )
        lines += _metric_table(r.get("metrics") or {})
    return lines


def _metric_table(metrics: dict[str, Any]) -> list[str]:
    scalars = {k: v for k, v in metrics.items() if v is None or isinstance(v, (int, float))}
    if not scalars:
        return []
    return [
        "",
        "  | metric | value |",
        "  |---|---|",
        *(f"  | {k} | {_value(v)} |" for k, v in scalars.items()),
        "",
    ]


def _condition_lines(f: CardFacts) -> list[str]:
    if not f.schema.fields:
        return ["- Unconditional: the model takes no labels"]
    store = f.store
    lines = [
        "Request conditions with `gliomagen generate --condition name=value`; a left-out or "
        "empty value is the unknown code (categorical) or the training mean (continuous).",
        "",
        "| condition | kind | codes | training cases | from |",
        "|---|---|---|---|---|",
    ]
    for field in f.schema.fields:
        seen = _seen(field, store)
        lines.append(
            f"| `{field.name}` | {field.kind} | {_codes(field)} | {seen} | {field.source or '?'} |"
        )
    return lines


def _codes(field: ConditionField) -> str:
    if field.kind == "categorical":
        codes = [f"{i} = {c}" for i, c in enumerate(field.categories)]
        return ", ".join([*codes, f"{len(field.categories)} = unknown"])
    return f"(x - {field.mean:.4g}) / {field.std:.4g}"


def _seen(field: ConditionField, store: StoreFacts | None) -> str:
    if store is None:
        return "not recorded"
    if field.name in store.label_counts:
        return ", ".join(f"{k} {n}" for k, n in sorted(store.label_counts[field.name].items()))
    if field.name in store.ranges:
        lo, hi = store.ranges[field.name]
        return f"{lo:.4g} to {hi:.4g}"
    return "not recorded"


def _use_lines(f: CardFacts) -> list[str]:
    lines = [f"- {_USE}", f"- {_LIMITS}"]
    phantoms = f.store.phantoms if f.store is not None else None
    if phantoms:
        lines.append(f"- {_PHANTOM_WARNING}")
    elif phantoms is None:
        lines.append(
            "- Whether the store was built from the built-in phantoms could not be checked (its "
            "source folders are not readable here). A model trained on `gliomagen phantoms` "
            "makes phantoms, not realistic MRI."
        )
    return lines


def _by(values: Sequence[Any]) -> str:
    return "x".join(str(int(v)) for v in values) if len(values) else "not recorded"


def _mm(values: Sequence[float]) -> str:
    if not len(values):
        return "not recorded"
    if max(values) - min(values) < 1e-6:
        return f"{values[0]:.3g} mm (isotropic)"
    return " x ".join(f"{v:.3g}" for v in values) + " mm"


def _value(v: Any) -> str:
    if v is None:
        return "--"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return f"`{v}`" if isinstance(v, str) else str(v)
