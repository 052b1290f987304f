"""Checkpoints: atomic writes, the last K kept, safe loading, RNG states.

A checkpoint is a plain dict that ``torch.load(..., weights_only=True)`` accepts (tensors, numbers,
strings, lists, dicts; no pickled classes, no code), so a checkpoint from a stranger cannot run
code. Keys:

    format_version  int (1)
    step            int, optimiser steps done
    images_seen     int
    G, D, G_ema     state_dicts
    opt_G, opt_D    optimiser state_dicts
    aug_p           float, ADA probability
    train_state     dict: ada_sign_sum, ada_count, nan_streak, elapsed_s
    rng             dict: torch (uint8 tensor), numpy (dict), python (list), cuda (list of tensors)
    config          resolved configuration (:func:`gliomagen.config.to_dict`)
    schema          :meth:`ConditionSchema.to_dict` of the conditions the model uses
    store_meta      size, modalities, spacing_mm, template_geometry of the training store
    size            [D, H, W] output grid
    n_modalities    int
    w_avg           {"cat": long [K, n_cat], "cont": float [K, n_cont], "w": float [K, w_dim]}: mean
                    ``w`` of G_ema per combination of categorical conditions (continuous at 0)
    store           {"path": str, "fingerprint": str}: the training store, and its content
                    fingerprint (:mod:`gliomagen.data.fingerprint`) that a resume checks; absent
                    in checkpoints of older versions
    parent          only in a run started from another's weights (``train --init``): {"parent":
                    path, "parent_sha256": hex, "parent_step": int, "kept", "new", "dropped":
                    lists of ``field=category`` codes and field names, "mapped": {new: old}}

``RUN/checkpoints/best.pt`` (:func:`save_best`) has the same keys plus ``validation``; the
optional ``train_state["validation"]`` holds the early-stopping state of
:class:`gliomagen.training.validation.Validator`.

A failed write (a full disk) raises :class:`WriteError`, one line ``<path>: <reason>``, and leaves
the previous files as they were (the temporary file is removed). A file a killed run left half
written is a hidden ``.*.tmp`` file (:func:`remove_partial_writes` clears them). Resuming reads the
newest *readable* checkpoint (:func:`load_resumable`); an unreadable newer one is set aside as
``<name>.unreadable`` (:func:`set_aside`), never deleted.
"""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import write_bytes

FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
BEST_NAME = "best.pt"  # the best checkpoint by train.val_metric (see training.validation)
_NAME = re.compile(r"^step-(\d+)\.pt$")
_PARTIAL = re.compile(r"^\..+\.tmp$")  # gliomagen.io.atomic's temporary names
UNREADABLE_SUFFIX = ".unreadable"


class WriteError(GliomagenError, OSError):
    """A file could not be written: ``str()`` is one line ``<path>: <reason>``.

    Both a :class:`~gliomagen.errors.GliomagenError` (the CLI prints it as one ``error:`` line)
    and an :class:`OSError` (``errno`` is the cause's, when known).
    """

    def __init__(self, path: str | os.PathLike[str], exc: BaseException) -> None:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        super().__init__(f"{path}: {reason}")
        self.errno = getattr(exc, "errno", None)
        self.path = Path(path)


class UnreadableCheckpoint(GliomagenError):
    """A checkpoint file that cannot be read: truncated, corrupt, or not a gliomagen checkpoint."""


def checkpoint_path(run_dir: str | os.PathLike[str], step: int) -> Path:
    """``RUN/checkpoints/step-000123.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step-{step:07d}.pt"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The checkpoints of a run folder, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(state: dict[str, Any], run_dir: str | os.PathLike[str], keep: int = 3) -> Path:
    """Write ``state`` atomically as ``RUN/checkpoints/step-<step>.pt`` and keep the last ``keep``.

    Args:
        state: the checkpoint dict (must hold ``step``).
        run_dir: the run folder.
        keep: how many checkpoints to keep (older ones are deleted after the new one is in place).

    Returns:
        The path written.
    """
    path = _save_atomic(state, checkpoint_path(run_dir, int(state["step"])))
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        try:
            old.unlink(missing_ok=True)
        except OSError as exc:
            raise WriteError(old, exc) from None
    return path


def save_best(state: dict[str, Any], run_dir: str | os.PathLike[str]) -> Path:
    """Write ``state`` atomically as ``RUN/checkpoints/best.pt`` (the best validation so far).

    ``best.pt`` is a checkpoint like the others (plus a ``validation`` entry: metric, value, all
    metrics of that evaluation); :func:`list_checkpoints` does not list it, so the keep-last-K
    pruning never deletes it, and :func:`gliomagen.models.loading.load_generator` /
    ``gliomagen generate --checkpoint`` read it.
    """
    return _save_atomic(state, Path(run_dir) / CHECKPOINT_DIR / BEST_NAME)


def save_torch(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically, through memory: torch's file writer reports a
    failed write (a full disk) as a RuntimeError without the errno, so the bytes are made first
    and written with :func:`gliomagen.io.atomic.write_bytes`, whose failure is a plain OSError.
    """
    blob = io.BytesIO()
    torch.save(obj, blob)
    return write_bytes(path, blob.getvalue())


def _save_atomic(state: dict[str, Any], path: Path) -> Path:
    """:func:`save_torch` to ``path``; a failure is a :class:`WriteError` naming ``path`` (the
    temporary file removed, an older ``path`` kept)."""
    try:
        return save_torch(state, path)
    except OSError as exc:
        raise WriteError(path, exc) from None


def remove_partial_writes(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.<name>.<random>.tmp``) a killed writer left in ``folder``.

    Only for a folder no live process writes to (the run's own, before it starts).

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = [p for p in folder.iterdir() if _PARTIAL.match(p.name) and p.is_file()]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def set_aside(path: str | os.PathLike[str]) -> Path:
    """Rename an unreadable checkpoint to ``<name>.unreadable`` (out of :func:`list_checkpoints`,
    so neither resumed from nor pruned, nor overwritten); the new path."""
    path = Path(path)
    target = path.with_name(path.name + UNREADABLE_SUFFIX)
    os.replace(path, target)
    return target


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file, or the newest checkpoint of a run folder."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        found = list_checkpoints(p.parent if p.name == CHECKPOINT_DIR else p)
        if found:
            return found[-1]
        raise GliomagenError(
            f"{p}: no checkpoints (expected {CHECKPOINT_DIR}/step-*.pt in a run folder)"
        )
    raise GliomagenError(f"{p}: checkpoint or run folder not found")


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(..., weights_only=True)``.

    Args:
        path: a ``.pt`` file or a run folder (its newest checkpoint).
        map_location: where tensors go.

    Returns:
        The checkpoint dict (see the module docstring for its keys).
    """
    return _read(resolve_checkpoint(path), map_location)


def _read(p: Path, map_location: str | torch.device) -> dict[str, Any]:
    """Load one checkpoint file; :class:`UnreadableCheckpoint` when it cannot be read."""
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, ...
        raise UnreadableCheckpoint(
            f"{p}: not a readable gliomagen checkpoint ({type(exc).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise UnreadableCheckpoint(f"{p}: not a gliomagen checkpoint (no format_version)")
    if int(ckpt["format_version"]) > FORMAT_VERSION:
        raise GliomagenError(
            f"{p}: checkpoint format {ckpt['format_version']} is newer than this gliomagen ({FORMAT_VERSION}); upgrade"
        )
    return ckpt


def load_resumable(
    run_dir: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], Path, list[tuple[Path, str]]]:
    """The newest *readable* checkpoint of a run folder, for resuming.

    Args:
        run_dir: the run folder.
        map_location: where tensors go.

    Returns:
        ``(checkpoint, its path, [(newer unreadable checkpoint, why), ...])``, newest first.

    Raises:
        GliomagenError: the folder has no checkpoint, or none is readable (the newest's reason),
            or one is of a newer format.
    """
    found = list_checkpoints(run_dir)
    if not found:
        raise GliomagenError(f"{run_dir}: no checkpoints")
    bad: list[tuple[Path, str]] = []
    for p in reversed(found):
        try:
            return _read(p, map_location), p, bad
        except UnreadableCheckpoint as exc:
            bad.append((p, str(exc)))
    raise GliomagenError(
        f"no readable checkpoint in {Path(run_dir) / CHECKPOINT_DIR}: {bad[0][1]}"
        + (f" (and {len(bad) - 1} older ones)" if len(bad) > 1 else "")
    )


# -- RNG states as weights_only-safe values -------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The torch, numpy, python (and CUDA) RNG states as tensors/lists/numbers."""
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["key"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x
