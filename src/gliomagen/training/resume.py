"""Resuming a run: which checkpoint, the checks it must pass, what it says once the run starts.

:func:`prepare_resume` reads the newest *readable* checkpoint of the run (an unreadable newer one
is skipped, and set aside when the run starts), compares its configuration
(:func:`~gliomagen.training.run_state.resume_changes`) and its store with the run's. The store
check (:func:`check_store`) compares content fingerprints (:mod:`gliomagen.data.fingerprint`): a
different store is refused in one line naming both, unless ``allow_other_store``; its conditions
and grid must still be those the weights were trained on. Nothing is written here: the messages
wait in the :class:`ResumePoint` until :meth:`ResumePoint.announce`, once every check has passed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gliomagen.config import Config
from gliomagen.data.conditions import ConditionSchema
from gliomagen.errors import GliomagenError
from gliomagen.io.checkpoint import load_resumable, set_aside
from gliomagen.training.batches import TrainingData
from gliomagen.training.monitor import RunMonitor
from gliomagen.training.run_folder import warn, writing
from gliomagen.training.run_state import (
    configured_hparams,
    resume_changes,
    use_configured_hparams,
)

STATE_KEYS = ("G", "D", "G_ema", "opt_G", "opt_D")
"""The checkpoint's state_dicts a resumed run loads, by trainer attribute."""


@dataclass
class ResumePoint:
    """The checkpoint a run resumes from and what to say about it once the run starts.

    Attributes:
        ckpt: the checkpoint dict.
        path: its file.
        unreadable: newer checkpoints that could not be read, ``(path, why)``, newest first.
        changed: configuration keys the run changes, ``{"section.key": (was, now)}``.
        warnings: ``warning:`` lines to print (and log) when the run starts.
        notes: log lines for when the run starts.
    """

    ckpt: dict[str, Any]
    path: Path
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def announce(self, monitor: RunMonitor, is_main: bool) -> None:
        """Set the unreadable checkpoints aside, print the warnings, log what changed (main
        worker; the run folder exists)."""
        if not is_main:
            return
        for bad, why in self.unreadable:
            with writing(bad):
                kept = set_aside(bad)
            self.warnings.insert(
                0,
                f"{why}; resuming from {self.path.name}, the older readable checkpoint "
                f"(the unreadable file is kept as {kept.name})",
            )
        for line in self.warnings:
            warn(line)
            monitor.log(f"warning: {line}")
        monitor.log(f"resumed from step {int(self.ckpt['step'])} ({self.path.name})")
        if self.changed:  # config.yaml says what the run now trains with
            monitor.log(
                "configuration changed on resume: "
                + "; ".join(f"{key} {was!r} -> {v!r}" for key, (was, v) in self.changed.items())
            )
        for line in self.notes:
            monitor.log(line)


def prepare_resume(
    run_dir: str | os.PathLike[str],
    cfg: Config,
    data: TrainingData,
    store_record: dict[str, str],
    device: torch.device,
    allow_other_store: bool = False,
) -> ResumePoint:
    """Read and check the checkpoint a run resumes from; writes nothing.

    Raises:
        GliomagenError: no readable checkpoint; a configuration key that must stay changed; a
            different store (without ``allow_other_store``), or one whose conditions or grid
            differ from the checkpoint's.
    """
    ckpt, path, unreadable = load_resumable(run_dir, map_location=device)
    point = ResumePoint(ckpt, path, unreadable)
    point.changed = resume_changes(ckpt["config"], cfg, str(path))
    check_store(point, store_record, data, allow_other_store)
    return point


def check_store(
    point: ResumePoint, record: dict[str, str], data: TrainingData, allow_other_store: bool
) -> None:
    """Compare the run's store with the one its checkpoint recorded (see the module docstring);
    add the warning (a checkpoint that recorded none) or the log line (an allowed change)."""
    saved = point.ckpt.get("store")
    given = record["path"]
    if not saved or not saved.get("fingerprint"):
        point.warnings.append(
            f"{point.path} does not record its store's fingerprint (written by an older "
            f"gliomagen): cannot check that {given} is the store the run trained on"
        )
    elif saved["fingerprint"] != record["fingerprint"]:
        if not allow_other_store:
            raise GliomagenError(
                f"--resume: the run trained on {saved.get('path')} but {given} holds other "
                f"cases, labels or arrays (content fingerprints differ); resume with the run's "
                f"store, or pass --allow-other-store to continue on {given}"
            )
        point.notes.append(
            f"store changed on resume (--allow-other-store): {saved.get('path')} "
            f"({saved['fingerprint'][:19]}) -> {given} ({record['fingerprint'][:19]})"
        )
    _check_shapes(point, data)


def _check_shapes(point: ResumePoint, data: TrainingData) -> None:
    """The store's conditions and grid must be those the checkpoint's weights were built for."""
    ckpt, given = point.ckpt, data.name
    if "schema" in ckpt:
        was = ConditionSchema.from_dict(ckpt["schema"])
        if _layout(was) != _layout(data.schema):
            raise GliomagenError(
                f"--resume: {given} has the conditions {_describe(data.schema)}, the run trained "
                f"on {_describe(was)} ({point.path.name}); the weights cannot continue on it"
            )
    size = [int(s) for s in ckpt.get("size", data.size)]
    n_mod = int(ckpt.get("n_modalities", data.n_modalities))
    if size != list(data.size) or n_mod != data.n_modalities:
        raise GliomagenError(
            f"--resume: {given} holds {'x'.join(map(str, data.size))} volumes of "
            f"{data.n_modalities} modalities, the run trained on {'x'.join(map(str, size))} of "
            f"{n_mod} ({point.path.name}); the weights cannot continue on it"
        )


def _layout(schema: ConditionSchema) -> list[tuple[str, str, list[str]]]:
    """What of a schema the weights depend on: each field's name, kind and categories."""
    return [(f.name, f.kind, list(f.categories)) for f in schema.fields]


def _describe(schema: ConditionSchema) -> str:
    """``grade [HGG, LGG], age`` (``none`` for no condition)."""
    return "; ".join(
        f.name + (f" [{', '.join(f.categories)}]" if f.kind == "categorical" else "")
        for f in schema.fields
    ) or "none"


def load_states(point: ResumePoint, modules: dict[str, Any]) -> None:
    """Load the checkpoint's state_dicts into ``modules`` (``{"G": G, ...}``); an optimiser
    keeps the learning rates and weight decay it was built with (the configured ones win over
    the saved ones, per parameter group). A mismatch is one line naming the checkpoint."""
    for name, module in modules.items():
        try:
            is_opt = isinstance(module, torch.optim.Optimizer)
            configured = configured_hparams(module) if is_opt else None
            module.load_state_dict(point.ckpt[name])
            if configured is not None:
                use_configured_hparams(module, configured=configured)
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GliomagenError(
                f"--resume: {point.path}: its {name} does not fit this run ({first})"
            ) from None


__all__ = ["STATE_KEYS", "ResumePoint", "check_store", "load_states", "prepare_resume"]
