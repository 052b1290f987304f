"""The training loop: phases, accumulation, precision, EMA, ADA, NaN guard, checkpoints, logging.

One optimiser step has two phases, each accumulated over ``grad_accum`` micro-batches and averaged
over workers: ``G`` (generator loss through D) then ``D`` (real/fake loss, plus lazy R1 every
``r1_interval`` steps and the gradient penalty for ``wgan-gp``); each phase also adds its training
terms (:mod:`gliomagen.training.terms`). After ``G`` the EMA copy of G is updated; after ``D`` the
ADA probability is adjusted every ``augment.interval`` steps. A step whose losses or gradients are
not finite is skipped and logged; ``train.nan_patience`` bad steps in a row stop the run with a
GliomagenError. The optimisers are AdamW (decoupled weight decay ``train.weight_decay_g`` /
``train.weight_decay_d``; 0 = plain Adam). Every ``train.val_every`` steps
:class:`~gliomagen.training.validation.Validator` measures G_ema on the val split, keeps
``checkpoints/best.pt`` and may stop the run early (plateau or memorisation); a final checkpoint is
written either way. With a fitted latent prior, :class:`~gliomagen.training.latent_prior.PriorSchedule`
refits it when due.

A run checks everything before it writes anything (a refused run leaves no trace). Every random
number of a step comes from the step plan's per-step generators
(:class:`~gliomagen.training.batches.StepPlan`) or from the global ones, whose states a checkpoint
saves and a resumed run sets back just before its first step: it takes an uninterrupted run's steps.

The pieces live beside this module: :mod:`.setup` (what a run is built from), :mod:`.step` (a
phase's micro-batches and reduction, the EMA), :mod:`.run_state` (what a resume may change, the
checkpoint dict, its mean ``w``), :mod:`.resume` (which checkpoint, its checks),
:mod:`.run_folder` (creating and cleaning the folder, one-line write errors),
:mod:`.reporting` (log lines, scalars, sample montages) and :mod:`.init_from` (``--init``: starting
from another run's weights).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from gliomagen.config import Config, dump_yaml
from gliomagen.data.fingerprint import dataset_fingerprint
from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import write_json
from gliomagen.io.checkpoint import save_checkpoint, set_rng_state
from gliomagen.models import cat_sizes
from gliomagen.models.augment import ada_adjust
from gliomagen.training import distributed as dd
from gliomagen.training.batches import StepBatchSampler, TrainingData, stack_items
from gliomagen.training.hierarchical import HierarchicalLoss
from gliomagen.training.init_from import check_init_args, init_networks
from gliomagen.training.latent_prior import PriorSchedule
from gliomagen.training.losses import StyleGANLoss
from gliomagen.training.monitor import RunMonitor
from gliomagen.training.reporting import (
    LogWindow,
    log_steps,
    progress_bar,
    run_header,
    sample_montage,
)
from gliomagen.training.resume import STATE_KEYS, ResumePoint, load_states, prepare_resume
from gliomagen.training.run_folder import RunFolder, disk_error, warn, writing
from gliomagen.training.run_state import checkpoint_state, compute_w_avg
from gliomagen.training.setup import (
    autocast_factory,
    build_augment_pipe,
    build_networks,
    build_optimisers,
    build_plan,
    frozen_d_parameters,
    open_store,
    set_cpu_threads,
)
from gliomagen.training.step import ema_beta, micro_batch, reduce_phase, update_ema
from gliomagen.training.terms import build_terms
from gliomagen.training.validation import Validator, validation_active


class Trainer:
    """State and schedule of one run (see :func:`train`).

    Building one checks everything and writes nothing; :meth:`start` then creates the run folder
    and its files, and :meth:`run` trains.
    """

    def __init__(
        self,
        cfg: Config,
        store: Any,
        run_dir: Path,
        *,
        resume: bool,
        max_minutes: float | None,
        callback: Callable[[int], None] | None,
        progress: bool,
        allow_other_store: bool = False,
        init: str | os.PathLike[str] | None = None,
        init_map: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        cfg.validate()
        check_init_args(init, init_map, resume)
        self.cfg, self.run_dir, self.callback = cfg, Path(run_dir), callback
        self.progress, self.max_minutes = progress, max_minutes
        self.dist = dd.init_distributed(cfg.train.device)
        dev = self.dist.device
        set_cpu_threads(cfg, self.dist)
        store, name = open_store(store, cfg)
        self.data = TrainingData(store, cfg, name)
        self.folder = RunFolder(self.run_dir, self.dist.is_main)
        self.folder.check(resume)
        self.store_record = {"path": name, "fingerprint": dataset_fingerprint(store)}
        self.resumed: ResumePoint | None = (
            prepare_resume(self.run_dir, cfg, self.data, self.store_record, dev, allow_other_store)
            if resume else None
        )  # fmt: skip
        self.monitor = RunMonitor(self.run_dir, enabled=self.dist.is_main)
        self.G, self.D, self.G_ema = build_networks(cfg, self.data, self.dist)
        # logged once the run folder exists
        self._notes: list[str] = [n for n in (self.data.grid_note, self.data.recon_note) if n]
        self.parent: dict[str, Any] | None = None  # the --init checkpoint's record
        if init is not None:
            nets = (self.G, self.D, self.G_ema)
            self.parent = init_networks(*nets, self.data.schema, init, init_map, self._notes.append, config=cfg)
        self.d_frozen = frozen_d_parameters(cfg, self.D)  # FreezeD: never trained
        self.opt_G, self.opt_D = build_optimisers(cfg, self.G, self.D)
        augment = build_augment_pipe(cfg, self.data)
        loss_kind = HierarchicalLoss if cfg.model.hierarchical else StyleGANLoss
        self.loss = loss_kind(
            self.G,
            self.D,
            cfg,
            augment,
            autocast_factory(cfg, dev),
            cat_sizes(self.data.schema),
            compile=cfg.train.compile,
            terms=build_terms(cfg, self.data),
        )
        self.plan = build_plan(cfg, self.data, self.dist, self.G.num_ws, augment)
        self.step, self.images_seen, self.aug_p = 0, 0, float(cfg.augment.p)
        self.ada_sign_sum, self.ada_count, self.nan_streak, self.elapsed_s = 0.0, 0, 0, 0.0
        self.prior = PriorSchedule(cfg, self.data, dev, self.monitor.log, self.dist.is_main)
        self.validator = (
            Validator(cfg, self.data, self.run_dir, dev, self.monitor, enabled=self.dist.is_main, resume=resume)
            if validation_active(cfg, self.data, self._notes.append) else None
        )  # fmt: skip
        self._clock = time.time()  # start of the time not yet in elapsed_s
        self._rng: dict[str, Any] | None = None  # the checkpoint's RNG states, set as the loop starts
        if self.resumed is not None:
            self._restore(self.resumed)

    # -- resuming and the run folder -------------------------------------------------------------
    def _restore(self, point: ResumePoint) -> None:
        """Take the checkpoint's weights, optimisers and counters back (in memory only)."""
        ckpt = point.ckpt
        load_states(point, {name: getattr(self, name) for name in STATE_KEYS})  # configured lr kept
        self.parent = ckpt.get("parent")
        self.step, self.images_seen = int(ckpt["step"]), int(ckpt["images_seen"])
        self.aug_p = float(ckpt["aug_p"])
        st = ckpt["train_state"]
        self.ada_sign_sum, self.ada_count = float(st["ada_sign_sum"]), int(st["ada_count"])
        self.nan_streak, self.elapsed_s = int(st["nan_streak"]), float(st["elapsed_s"])
        self._rng = ckpt["rng"]

    def start(self) -> None:
        """Every check has passed: create the run folder, the monitor's files, ``config.yaml`` and
        ``run.json`` (the store: path and content fingerprint); on resume say what was resumed."""
        if self.dist.is_main:
            self.folder.create()
            self.monitor.open(self.cfg, start_step=self.step)
            if self.resumed is not None:
                self.resumed.announce(self.monitor, self.dist.is_main)
            if self.parent is not None and self.parent["dropped"]:
                lacks = ", ".join(self.parent["dropped"])
                warn(f"--init: the store lacks the parent's {lacks}; dropped")
            with writing(self.run_dir / "config.yaml"):
                dump_yaml(self.cfg, self.run_dir / "config.yaml")
            with writing(self.run_dir / "run.json"):
                write_json(self.run_dir / "run.json", {"store": self.store_record})
        if self.resumed is not None and self.validator is not None:
            st = self.resumed.ckpt["train_state"]
            self.validator.load_state(st.get("validation"), self.step)
        dd.barrier(self.dist.world_size)

    def abandon(self) -> None:
        """The run failed: close the monitor quietly; a folder this run created and did no step
        in is removed again."""
        self.monitor.close(quiet=True)
        self.folder.discard_if_new()

    def _state(self) -> dict[str, Any]:
        self.prior.refresh(self.G_ema, self.step)
        return checkpoint_state(self)

    def checkpoint(self) -> Path:
        """Save a checkpoint (main worker) and wait for everyone."""
        path = (
            save_checkpoint(self._state(), self.run_dir, self.cfg.train.keep_checkpoints)
            if self.dist.is_main
            else Path()
        )
        dd.barrier(self.dist.world_size)
        return path

    # -- one step --------------------------------------------------------------------------------
    def _phase(
        self, phase: str, real: Any, real_rows: list[int], do_r1: bool
    ) -> tuple[bool, dict[str, float]]:
        """Run phase ``"G"`` or ``"D"`` of the current step; ``(ok, mean statistics per case)``."""
        net, opt = (self.G, self.opt_G) if phase == "G" else (self.D, self.opt_D)
        self.G.requires_grad_(phase == "G")
        self.D.requires_grad_(phase == "D")
        for p in self.d_frozen:
            p.requires_grad_(False)
        opt.zero_grad(set_to_none=True)
        draws = self.plan.draw(self.step, phase, self.aug_p)
        accum, dev = self.cfg.train.grad_accum, self.dist.device
        acc: dict[str, torch.Tensor] = {}
        for r in range(accum):
            mb = micro_batch(self.data, self.plan, draws, r, real, real_rows, dev, self.step)
            for k, v in self.loss.accumulate_gradients(phase, mb, 1.0 / accum, do_r1).items():
                acc[k] = acc.get(k, 0) + v.detach().float()  # on the device: no sync here
        ok, stats = reduce_phase(acc, list(net.parameters()), self.dist)
        if ok:
            opt.step()
        else:
            opt.zero_grad(set_to_none=True)
        b = self.cfg.train.batch_size
        if phase == "G" and ok:
            self.G.mapping.track_w_avg(stats["w_sum"].to(dev) / b)
        return ok, {k: float(v) / b for k, v in stats.items() if v.ndim == 0}

    def _train_step(self, items: Any) -> dict[str, float]:
        """One optimiser step on the loader's ``items``: G, the EMA, D, ADA, the NaN guard."""
        t = self.cfg.train
        real = self.data.collate_real(items, self.dist.device)
        real_rows = [int(self.data.train_index[i]) for i in self.plan.real_positions(self.step)]
        self.prior.before_step(self.G, self.step)
        ok_g, st_g = self._phase("G", real, real_rows, False)
        if ok_g:
            update_ema(self.G_ema, self.G, ema_beta(t, self.images_seen))
        do_r1 = self.cfg.loss.r1_gamma > 0 and self.step % self.cfg.loss.r1_interval == 0
        ok_d, st_d = self._phase("D", real, real_rows, do_r1)
        self.step += 1
        self.images_seen += t.batch_size
        if ok_d:
            self._adapt_augment(st_d.get("ada_sign", 0.0))
        self._guard(ok_g, ok_d)
        return {**st_g, **st_d}

    def _adapt_augment(self, sign_mean: float) -> None:
        """Accumulate ``E[sign(D(real) - offset)]`` and move ``p`` every ``augment.interval`` steps."""
        a, b = self.cfg.augment, self.cfg.train.batch_size
        if self.plan.augment is None or not a.ada:
            return
        self.ada_sign_sum += sign_mean * b
        self.ada_count += b
        if self.step % a.interval == 0:
            mean = self.ada_sign_sum / max(self.ada_count, 1)
            self.aug_p = ada_adjust(self.aug_p, mean, self.ada_count, a.target, a.speed_images)
            self.ada_sign_sum, self.ada_count = 0.0, 0

    def _guard(self, ok_g: bool, ok_d: bool) -> None:
        """Count non-finite steps; ``train.nan_patience`` in a row stop the run."""
        if ok_g and ok_d:
            self.nan_streak = 0
            return
        self.nan_streak += 1
        bad = ", ".join(p for p, ok in (("G", ok_g), ("D", ok_d)) if not ok)
        self.monitor.log(
            f"step {self.step}: non-finite {bad} loss or gradients; "
            f"update skipped ({self.nan_streak} in a row)"
        )
        if self.nan_streak >= self.cfg.train.nan_patience:
            self.monitor.close()
            raise GliomagenError(
                f"training stopped at step {self.step}: {self.nan_streak} steps in a row had "
                f"non-finite losses or gradients; lower train.lr_g/train.lr_d or check the store "
                f"for bad values"
            )

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train from the current step to ``train.steps`` or a stop; the last checkpoint's path."""
        t, dev = self.cfg.train, self.dist.device
        self._clock = time.time()
        deadline = self._clock + self.max_minutes * 60 if self.max_minutes is not None else math.inf
        self.monitor.log(run_header(self.data, self.cfg, self.dist.world_size, dev, self.G, self.D))
        for note in self._notes:
            self.monitor.log(note)
        loader = torch.utils.data.DataLoader(
            self.data.store,
            batch_sampler=StepBatchSampler(self.plan, self.data.train_index, self.step, t.steps),
            num_workers=t.num_workers,
            collate_fn=stack_items,
            pin_memory=dev.type == "cuda",  # pinned batches: asynchronous host-to-GPU copies
        )
        batches = iter(loader)  # making the iterator draws from the global torch generator
        if self._rng is not None:  # so the checkpoint's RNG states are set after it
            set_rng_state(self._rng)
            self._rng = None
        bar = progress_bar(t.steps, self.step) if self.dist.is_main and self.progress else None
        window = LogWindow()
        last_ckpt: Path | None = None
        why: str | None = None
        for items in batches:
            window.add(self._train_step(items))
            self.folder.keep()  # a step was done: the folder stays whatever happens next
            if self.step % t.log_every == 0 or self.step == t.steps:
                self._log(window, bar)
            if bar is not None:
                bar.update(1)
            if self.callback is not None:
                self.callback(self.step)
            why, ckpt = self._after_step(deadline)
            if ckpt is not None:
                last_ckpt = ckpt
            if why is not None:
                self.monitor.log(f"stopped at step {self.step}: {why} reached")
                break
        if bar is not None:
            bar.close()
        if last_ckpt is None:  # nothing left to do (resumed a finished run)
            last_ckpt = self.checkpoint()
        if why is None:
            self.monitor.log(f"finished at step {self.step}")
        self.monitor.close()
        return last_ckpt

    def _after_step(self, deadline: float) -> tuple[str | None, Path | None]:
        """Validation, samples and the checkpoint when due; ``(why the run stops or None, the
        checkpoint written or None)``."""
        t, v = self.cfg.train, self.validator
        if v is not None and v.enabled and v.due(self.step):
            self.prior.refresh(self.G_ema, self.step)
        reason = v.maybe_validate(self.step, self.G_ema, self._state) if v is not None else None
        stop = dd.any_worker(
            time.time() > deadline or reason is not None, self.dist.world_size, self.dist.device
        )
        if self.step % t.sample_every == 0 or self.step == t.steps or stop:
            self._samples()
        ckpt = None
        if self.step % t.checkpoint_every == 0 or self.step == t.steps or stop:
            self.elapsed_s += time.time() - self._clock
            self._clock = time.time()
            ckpt = self.checkpoint()
        if not stop:
            return None, ckpt
        return (f"early stop ({reason})" if reason else f"--max-minutes {self.max_minutes}"), ckpt

    def _samples(self) -> None:
        if self.dist.is_main:
            self.prior.refresh(self.G_ema, self.step)
            sample_montage(self.G_ema, self.data, self.cfg, self.dist.device, self.monitor, self.step)

    def _log(self, window: LogWindow, bar: Any) -> None:
        lrs = (self.opt_G.param_groups[0]["lr"], self.opt_D.param_groups[0]["lr"])
        log_steps(
            self.monitor, self.step, window.sums, window.n, time.time() - window.start,
            cfg=self.cfg, aug_p=self.aug_p, lrs=lrs, device=self.dist.device, bar=bar,
        )  # fmt: skip
        window.reset()


def train(
    config: Config,
    store: Any,
    run_dir: str | os.PathLike[str],
    resume: bool = False,
    max_minutes: float | None = None,
    *,
    callback: Callable[[int], None] | None = None,
    progress: bool = True,
    allow_other_store: bool = False,
    init: str | os.PathLike[str] | None = None,
    init_map: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Train a conditional StyleGAN on a store; returns the path of the last checkpoint.

    Nothing is written before every check has passed (store, configuration, run folder, the
    checkpoint to resume from); a run that fails before its first step leaves no folder it
    created; a failed write (a full disk) is a GliomagenError ``<path>: <reason>``.

    Args:
        config: the resolved configuration (:func:`gliomagen.config.resolve_config`).
        store: a store folder (opened with ``config.data.split``) or an opened StoreDataset.
        run_dir: the run folder (config.yaml, run.json, log.txt, tensorboard/, samples/,
            checkpoints/).
        resume: continue from the newest checkpoint of ``run_dir`` (exactly, on the same hardware).
        max_minutes: wall-clock budget; training checkpoints and returns when it is spent.
        callback: called with the step number after every optimiser step, before that step's
            samples and checkpoint are written (notebooks, timing, tests).
        progress: show a progress bar with ETA on the main worker.
        allow_other_store: on ``resume``, continue on a store whose content differs from the
            one the run trained on (logged) instead of refusing it; its conditions and grid must
            still be the checkpoint's.
        init: start G, G_ema and D from this checkpoint (or run folder) instead of the seed
            (:func:`gliomagen.training.init_from.init_networks`; not with ``resume``); the
            checkpoints then record it under ``parent``.
        init_map: with ``init``, ``{field: {new category: parent category}}``: the parent's
            category whose rows a category new to it starts from (default: the mean row).

    Returns:
        Path of the newest checkpoint (on workers other than rank 0: an empty Path).

    Example:
        >>> from gliomagen.config import resolve_config
        >>> ckpt = train(resolve_config("demo-cpu"), "store/", "runs/demo", max_minutes=5)  # doctest: +SKIP
    """
    trainer = Trainer(
        config,
        store,
        Path(run_dir),
        resume=resume,
        max_minutes=max_minutes,
        callback=callback,
        progress=progress,
        allow_other_store=allow_other_store,
        init=init,
        init_map=init_map,
    )
    try:
        trainer.start()
        return trainer.run()
    except BaseException as exc:
        trainer.abandon()
        if isinstance(exc, OSError):  # a write outside the run's own writers (validation, ...)
            raise disk_error(exc, trainer.run_dir) from None
        raise
    finally:
        dd.shutdown(trainer.dist)


__all__ = ["Trainer", "compute_w_avg", "train"]
