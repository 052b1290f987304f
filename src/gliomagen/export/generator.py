"""``gliomagen export generator``: a sampling-only checkpoint to share or ship.

A training checkpoint holds G, D, G_ema, both optimisers and RNG states (about 21 MB at the
default widths). Sampling needs only G_ema and what rebuilds it (config, schema, grid, store
geometry, per-condition mean ``w``). The exported file keeps those, optionally in float16 (the
generator is rebuilt in float32 on load: ``load_state_dict`` casts), and drops D, the optimisers
and the RNG states: it is a quarter of the size or less, and without D a receiver holds nothing
trained to tell the training cases apart. ``gliomagen generate``, ``evaluate --checkpoint`` and
``export card`` read it like any checkpoint; ``train --init`` and ``--resume`` refuse it (no D,
no optimiser state).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gliomagen import __version__
from gliomagen.errors import GliomagenError
from gliomagen.generation.writer import file_sha256
from gliomagen.io.checkpoint import load_checkpoint, resolve_checkpoint, save_torch

KEPT = ("format_version", "step", "images_seen", "config", "schema", "store_meta", "size",
        "n_modalities", "w_avg", "parent")  # fmt: skip
"""Checkpoint keys an exported generator keeps as they are (besides G_ema)."""

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def export_generator(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    dtype: str = "float16",
    note: str | None = None,
) -> dict[str, Any]:
    """Write the sampling-only checkpoint of ``source`` to ``out`` (atomically).

    Args:
        source: a checkpoint file or a run folder (its newest checkpoint).
        out: the file to write (``.pt``); it must not exist, or be an earlier export.
        dtype: storage type of G_ema's floating tensors: float16 (half the size), bfloat16 or
            float32 (exact).
        note: a sentence kept in the file's ``exported`` record (e.g. what it was trained on).

    Returns:
        The ``exported`` record: source path and sha256, step, dtype, bytes, note, version.

    Raises:
        GliomagenError: an unknown dtype, a source that is not a training checkpoint, or an
            ``out`` that exists and is not an exported generator.
    """
    if dtype not in DTYPES:
        raise GliomagenError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    path = resolve_checkpoint(source)
    ckpt = load_checkpoint(path)
    if "G_ema" not in ckpt:
        raise GliomagenError(f"{path}: no G_ema (not a checkpoint written by gliomagen train)")
    target = Path(out)
    if target.is_dir():
        raise GliomagenError(f"--out {target}: is a folder; give the file to write (e.g. model.pt)")
    if target.exists() and not _is_export(target):
        raise GliomagenError(
            f"--out {target}: exists and is not a generator gliomagen exported; not overwriting"
        )
    slim: dict[str, Any] = {k: ckpt[k] for k in KEPT if k in ckpt}
    cast = DTYPES[dtype]
    slim["G_ema"] = {
        k: (v.to(cast) if v.is_floating_point() else v) for k, v in ckpt["G_ema"].items()
    }
    store = ckpt.get("store") or {}
    if store:  # the fingerprint says what it trained on; the folder name, not this machine's path
        slim["store"] = {
            "path": Path(str(store.get("path", ""))).name,
            "fingerprint": store.get("fingerprint"),
        }
    elapsed = (ckpt.get("train_state") or {}).get("elapsed_s")
    if elapsed is not None:
        slim["train_state"] = {"elapsed_s": float(elapsed)}
    record = {
        "from": path.name,
        "from_sha256": file_sha256(path),
        "step": int(ckpt.get("step", 0)),
        "dtype": dtype,
        "note": note or "",
        "gliomagen_version": __version__,
    }
    slim["exported"] = record
    target.parent.mkdir(parents=True, exist_ok=True)
    save_torch(slim, target)
    return {**record, "bytes": target.stat().st_size, "path": str(target)}


def _is_export(p: Path) -> bool:
    try:
        return "exported" in torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # not a torch file at all
        return False
