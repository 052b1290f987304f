"""Validation during training: when to measure G_ema, which checkpoint is best, when to stop.

Every ``train.val_every`` steps (0 = off) the main worker draws ``train.val_samples`` volumes (or
slices, for a model trained on a ``prepare --slices`` store) from G_ema (fixed latents, constant
noise, so two evaluations differ only by the weights; the conditions of the store's ``val`` cases
in turn) and measures them with the metric suite of ``gliomagen evaluate``
(:class:`gliomagen.evaluation.heldout.HeldOutCheck`; the val split is the held-out one):

=============== ====================================================================== =======
metric          what                                                                   better
=============== ====================================================================== =======
``fd``, ``kid`` Frechet distance and KID (50 subsets) of ``probe`` features vs val       lower
``fidelity``    accuracy, averaged over the model's categorical conditions, of a         higher
                classifier fitted on training features in naming each sample's
                *requested* condition (``fidelity_real``: on the val cases)
``diversity``   mean pairwise MS-SSIM among samples (``diversity_real``: val cases)      lower
``mask``        tumour-structure distance per requested condition against the           lower
                *training* cases (``mask_groups``: per condition and statistic)
``memorised``   samples flagged as near-copies of *training* cases                       --
=============== ====================================================================== =======

The probe (``train.val_probe_steps`` steps, width 8, at most 32 voxels a side) and the real side
are computed once per run and cached in ``RUN/validation/`` (``probe/``, ``reference/``).

Records: one JSON line per evaluation in ``RUN/validation.jsonl`` (``step``, ``seconds``,
``setup_seconds`` (the real side's share of a trainer's first evaluation, else ``null``),
``metrics``, ``metric``, ``improved``, ``best``, ``since_best``, ``stop``: ``null`` or ``{"reason",
"detail"}``), ``val/*`` scalars in TensorBoard, a line in ``RUN/log.txt``. The best evaluation by
``train.val_metric`` (improving by more than ``train.val_min_delta``; never one with
``memorisation_threshold`` or more flagged samples) is saved as ``RUN/checkpoints/best.pt``.
Early stopping: ``memorisation`` (``train.stop_on_memorisation`` and at least
``train.memorisation_threshold`` flagged samples) or ``plateau`` (no improvement for
``train.val_patience`` evaluations; 0 = never); the loop then writes a final checkpoint and stops.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gliomagen.data.store import open_store
from gliomagen.errors import GliomagenError
from gliomagen.evaluation.heldout import HeldOutCheck, generate_samples
from gliomagen.evaluation.probe import ProbeOptions
from gliomagen.evaluation.suite import SuiteOptions
from gliomagen.io.atomic import write_text
from gliomagen.io.checkpoint import save_best

VALIDATION_FILE = "validation.jsonl"
CACHE_DIR = "validation"
PROBE_WIDTH = 8
KID_SUBSETS = 50
SEED_OFFSET = 7919  # latents of the validation samples: seed + this (apart from montage latents)
HIGHER_IS_BETTER = {
    "fd": False, "kid": False, "fidelity": True, "diversity": False, "mask": False,
}  # fmt: skip
"""Direction of each ``train.val_metric``."""


def validation_active(cfg: Any, data: Any = None, log: Any = None) -> bool:
    """Whether a run with this configuration evaluates at least once.

    With ``data`` and ``train.val_required=false``, a store that validation cannot read (no val
    split of at least 2 cases, say) turns validation off, saying why through ``log``, instead of
    refusing the run (:func:`_check_store` raises).
    """
    t = cfg.train
    active = bool(t.val_every > 0 and t.val_every <= t.steps)
    if active and data is not None and not t.val_required:
        try:
            _check_store(cfg, data)
        except GliomagenError as exc:
            if log is not None:
                log(f"validation off (train.val_required=false): {exc}")
            return False
    return active


def is_better(metric: str, value: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Whether ``value`` improves on ``best`` by more than ``min_delta`` in ``metric``'s direction."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    if HIGHER_IS_BETTER[metric]:
        return value > best + min_delta
    return value < best - min_delta


def read_records(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The evaluations of a run (``RUN/validation.jsonl``), oldest first; ``[]`` without the file."""
    path = Path(run_dir) / VALIDATION_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def last_stop(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last evaluation of a run when it stopped the run early, else ``None``."""
    records = read_records(run_dir)
    return records[-1] if records and records[-1].get("stop") else None


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _check_store(cfg: Any, data: Any) -> Path:
    """The store folder validation reads (its ``val`` split), or a GliomagenError saying why not."""
    key = f"train.val_every={cfg.train.val_every}"
    path = getattr(data.store, "path", None)
    if path is None or not (Path(path) / "meta.json").is_file():
        raise GliomagenError(
            f"{key}: validation reads the val split of a store folder; train on a store "
            f"path or --set train.val_every=0"
        )
    if cfg.data.split != "train" or getattr(data.store, "split", "train") != "train":
        raise GliomagenError(
            f"{key}: validation needs data.split=train (data.split={cfg.data.split} trains "
            f"on other cases); use data.split=train or --set train.val_every=0"
        )
    n_val = len(open_store(path, split="val"))
    if n_val < 2:
        raise GliomagenError(
            f"{key}: {path} has {n_val} val case(s), validation needs at least 2; prepare more "
            f"cases or --set train.val_every=0"
        )
    return Path(path)


def _suite_options(t: Any, data: Any) -> SuiteOptions:
    """Cheap options: a small probe, no intervals, ``all`` only, the tumour-structure distance."""
    probe = ProbeOptions(
        size=min(32, max(16, max(data.size))), width=PROBE_WIDTH, steps=t.val_probe_steps,
        seed=t.seed,
    )  # fmt: skip
    return SuiteOptions(
        probe=probe, batch_size=t.val_batch_size, n_pairs=t.val_pairs, seed=t.seed, n_boot=0,
        kid_subsets=KID_SUBSETS, by_condition=False, floor=False,
        structure=tuple(data.store.modalities),
    )  # fmt: skip


class Validator:
    """Periodic validation of one run (see the module docstring).

    Args:
        cfg: the run configuration.
        data: the run's :class:`~gliomagen.training.batches.TrainingData` (its store must be a
            store folder, opened on its ``train`` split; volumes or slices).
        run_dir: the run folder.
        device: where G_ema and the probe run.
        monitor: the run's :class:`~gliomagen.training.monitor.RunMonitor`.
        enabled: False on workers other than the main one (they only take part in the stop vote).
        resume: the run continues from a checkpoint (keep ``validation.jsonl`` up to that step).

    Raises:
        GliomagenError: the store has no usable val split, ``data.split`` is not ``train``, or the
            metric cannot be measured (``fidelity`` without a categorical condition).
    """

    def __init__(
        self,
        cfg: Any,
        data: Any,
        run_dir: Path,
        device: torch.device,
        monitor: Any,
        *,
        enabled: bool = True,
        resume: bool = False,
    ) -> None:
        t = cfg.train
        self.cfg, self.t, self.run_dir, self.device = cfg, t, Path(run_dir), device
        self.monitor, self.enabled, self.metric = monitor, enabled, t.val_metric
        self.check = HeldOutCheck(
            _check_store(cfg, data), data.schema, _suite_options(t, data), n_samples=t.val_samples,
            z_dim=cfg.model.z_dim, seed=t.seed + SEED_OFFSET, cache_dir=self.run_dir / CACHE_DIR,
            device=device, write=enabled,
        )  # fmt: skip
        if self.metric == "fidelity" and not self.check.fields:
            raise GliomagenError(
                "train.val_metric=fidelity: the model has no categorical condition to score; "
                "choose fd, kid or diversity"
            )
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.since_best = 0
        self.evaluations = 0
        if enabled and not resume:  # a file left by a start that failed before its first checkpoint
            (self.run_dir / VALIDATION_FILE).unlink(missing_ok=True)

    # -- schedule and state --------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether step ``step`` ends with an evaluation."""
        return step % self.t.val_every == 0

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (``train_state["validation"]``)."""
        return {
            "best_value": self.best_value,
            "best_step": self.best_step,
            "since_best": self.since_best,
            "evaluations": self.evaluations,
        }

    def load_state(self, state: dict[str, Any] | None, step: int) -> None:
        """Restore :meth:`state` on resume; drop JSON lines of evaluations after ``step``."""
        if state:
            self.best_value = _finite(state.get("best_value"))
            self.best_step = None if state.get("best_step") is None else int(state["best_step"])
            self.since_best = int(state.get("since_best", 0))
            self.evaluations = int(state.get("evaluations", 0))
        if self.enabled:
            records = read_records(self.run_dir)
            kept = [r for r in records if int(r.get("step", 0)) <= step]
            if len(kept) != len(records):  # the interrupted session evaluated past its checkpoint
                write_text(self.run_dir / VALIDATION_FILE, "".join(json.dumps(r) + "\n" for r in kept))

    def measure(self, G: torch.nn.Module) -> dict[str, Any]:
        """Every metric of ``G``'s samples (see the module docstring); ``None`` where undefined."""
        c = self.check
        imgs, masks = generate_samples(G, c.z, c.cat, c.cont, self.t.val_batch_size, self.device)
        return c.measure(imgs, masks)

    # -- one evaluation: best.pt, stopping, records --------------------------------------------
    def maybe_validate(
        self, step: int, G: torch.nn.Module, state_fn: Callable[[], dict[str, Any]]
    ) -> str | None:
        """Evaluate when ``step`` is due (main worker): log, keep ``best.pt``, decide the stop.

        Args:
            step: optimiser steps done.
            G: the generator to sample (G_ema).
            state_fn: the trainer's checkpoint dict factory (for ``best.pt``).

        Returns:
            The stop reason (``"plateau"`` or ``"memorisation"``), or ``None`` to go on.
        """
        if not self.enabled or not self.due(step):
            return None
        t0 = time.time()
        setup_s = None
        if not self.check.prepared:  # the real side, once: probe, features, thresholds (cached)
            self.check.reference()
            setup_s = time.time() - t0
        metrics = self.measure(G)
        improved, copies = self._keep_best(step, metrics, state_fn)
        stop, detail = self._stop(metrics, copies)
        seconds = time.time() - t0
        record = {
            "step": step, "seconds": round(seconds, 3), "setup_seconds": None if setup_s is None else round(setup_s, 3),
            "metrics": metrics, "metric": self.metric, "improved": improved,
            "best": {"step": self.best_step, "value": self.best_value}, "since_best": self.since_best,
            "stop": None if stop is None else {"reason": stop, "detail": detail},
        }  # fmt: skip
        with open(self.run_dir / VALIDATION_FILE, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        self._report(step, metrics, seconds, improved, stop, detail)
        return stop

    def _keep_best(
        self, step: int, metrics: dict[str, Any], state_fn: Callable[[], dict[str, Any]]
    ) -> tuple[bool, bool]:
        """Count the evaluation, save ``best.pt`` when it improves: ``(improved, copies)``."""
        t, metric = self.t, self.metric
        value = metrics.get(metric)
        memorised = metrics.get("memorised")
        copies = memorised is not None and memorised >= t.memorisation_threshold
        improved = (
            value is not None
            and not copies
            and is_better(metric, float(value), self.best_value, t.val_min_delta)
        )
        self.evaluations += 1
        if improved:
            self.best_value, self.best_step, self.since_best = float(value), step, 0  # type: ignore[arg-type]
            state = state_fn()
            state["validation"] = {"metric": metric, "value": float(value), "metrics": metrics}  # type: ignore[arg-type]
            save_best(state, self.run_dir)
        else:
            self.since_best += 1
        return improved, copies

    def _stop(self, metrics: dict[str, Any], copies: bool) -> tuple[str | None, str | None]:
        """The early stop this evaluation calls for: ``(reason, detail)`` or ``(None, None)``."""
        t = self.t
        if t.stop_on_memorisation and copies:
            return "memorisation", (
                f"{metrics.get('memorised')} of {metrics['n_samples']} samples flagged as "
                f"near-copies of training cases (threshold {t.memorisation_threshold})"
            )
        if t.val_patience > 0 and self.since_best >= t.val_patience:
            best = (
                "none"
                if self.best_value is None
                else f"{self.best_value:.4g} at step {self.best_step}"
            )
            return "plateau", (
                f"val {self.metric} has not improved for {self.since_best} evaluations (best {best})"
            )
        return None, None

    def _report(
        self, step: int, metrics: dict[str, Any], seconds: float, improved: bool,
        stop: str | None, detail: str | None,
    ) -> None:  # fmt: skip
        """``val/*`` TensorBoard scalars and a line in the run's log."""
        scalars = {f"val/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        scalars["val/seconds"] = seconds
        self.monitor.scalars(step, scalars)
        shown = " ".join(
            f"{k}={v:.4g}"
            for k, v in metrics.items()
            if v is not None and (isinstance(v, float) or k == "memorised")
        )
        self.monitor.log(
            f"validation at step {step}: {shown} ({seconds:.1f} s)"
            + (f"; new best {self.metric}, saved checkpoints/best.pt" if improved else "")
            + (f"; early stop ({stop}): {detail}" if stop else "")
        )


__all__ = [
    "HIGHER_IS_BETTER",
    "VALIDATION_FILE",
    "Validator",
    "generate_samples",
    "is_better",
    "last_stop",
    "read_records",
    "validation_active",
]
