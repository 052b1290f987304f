"""The training loop: phases, accumulation, precision, EMA, ADA, NaN guard, checkpoints, logging.

One optimiser step has two phases, each accumulated over ``grad_accum`` micro-batches and averaged
over workers: ``G`` (generator loss through D) then ``D`` (real/fake loss, plus lazy R1 every
``r1_interval`` steps and the gradient penalty for ``wgan-gp``). After ``G`` the EMA copy of G is
updated; after ``D`` the ADA probability is adjusted every ``augment.interval`` steps. A step whose
losses or gradients are not finite is skipped and logged; ``train.nan_patience`` bad steps in a row
stop the run with a GliomagenError. The optimisers are AdamW (decoupled weight decay
``train.weight_decay_g`` / ``train.weight_decay_d``; 0 = plain Adam). Every ``train.val_every``
steps :class:`~gliomagen.training.validation.Validator` measures G_ema on the val split, keeps
``checkpoints/best.pt`` and may stop the run early (plateau or memorisation); a final checkpoint is
written either way.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gliomagen.config import Config, dump_yaml, to_dict
from gliomagen.errors import GliomagenError
from gliomagen.models import build_augment, build_discriminator, build_generator, cat_sizes
from gliomagen.models.augment import ada_adjust
from gliomagen.models.latent_prior import is_prior_buffer
from gliomagen.training import distributed as dd
from gliomagen.training.batches import (
    StepBatchSampler,
    StepPlan,
    TrainingData,
    slice_params,
    stack_items,
)
from gliomagen.training.checkpoint import (
    FORMAT_VERSION,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from gliomagen.training.latent_prior import PriorSchedule
from gliomagen.training.losses import MicroBatch, StyleGANLoss
from gliomagen.training.monitor import RunMonitor, condition_grid, montage_conditions
from gliomagen.training.terms import build_terms
from gliomagen.training.validation import Validator, validation_active

MAX_W_AVG_CONDITIONS = 256


def _open(store: Any, cfg: Config) -> tuple[Any, str]:
    if isinstance(store, (str, os.PathLike)):
        from gliomagen.data import open_store

        split = None if cfg.data.split == "all" else cfg.data.split
        return open_store(store, split=split), str(store)
    return store, str(getattr(store, "path", "store"))


def _autocast_factory(
    cfg: Config, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    precision = cfg.train.precision
    if precision == "bf16" and device.type != "cuda":
        raise GliomagenError(
            "train.precision=bf16 needs a CUDA device; use auto (fp32 on CPU) or fp32"
        )
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def _grads_finite(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """A 0-d bool tensor on the gradients' device: all finite (no host sync per parameter)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.ones((), dtype=torch.bool)
    return torch.stack([torch.isfinite(g).all() for g in grads]).all()


@torch.no_grad()
def compute_w_avg(G: Any, schema: Any, n_samples: int, seed: int) -> dict[str, torch.Tensor] | None:
    """Mean ``w`` of ``G`` per combination of categorical conditions (continuous at 0)."""
    cat, cont, _ = condition_grid(schema, limit=MAX_W_AVG_CONDITIONS)
    if n_samples <= 0 or len(cat) == 0:
        return None
    gen = torch.Generator().manual_seed(seed)
    dev = next(G.parameters()).device
    z = torch.randn(n_samples, G.z_dim, generator=gen).to(dev)
    ws = [
        G.mapping(z, c.expand(n_samples, -1).to(dev), k.expand(n_samples, -1).to(dev)).mean(0)
        for c, k in zip(cat, cont, strict=True)
    ]
    return {"cat": cat, "cont": cont, "w": torch.stack(ws).cpu()}


# model keys a resumed run may change: they do not change any weight's shape or meaning
RESUME_CHANGEABLE = frozenset({"model.latent_prior", "model.latent_prior_components"})


def _plain(v: Any) -> Any:
    """A config value as YAML gives it back (tuples as lists), for comparisons."""
    return list(v) if isinstance(v, tuple) else v


class Trainer:
    """State and schedule of one run (see :func:`train`)."""

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
    ) -> None:
        cfg.validate()
        self.cfg, self.run_dir, self.callback, self.progress = (
            cfg,
            Path(run_dir),
            callback,
            progress,
        )
        self.max_minutes = max_minutes
        t = cfg.train
        self.dist = dd.init_distributed(t.device)
        dev = self.dist.device
        # auto: the worker's share of the cores minus one; measured on 2 shared cores, 2 OpenMP
        # threads ran 6x slower than 1 (spinning threads fight the other processes)
        threads = t.threads or max(1, (os.cpu_count() or 1) // self.dist.local_world_size - 1)
        if dev.type == "cpu":
            torch.set_num_threads(threads)
        store, name = _open(store, cfg)
        self.data = TrainingData(store, cfg, name)
        self._check_run_dir(resume)
        self.monitor = RunMonitor(self.run_dir, enabled=self.dist.is_main)

        torch.manual_seed(t.seed)
        self.G = build_generator(cfg, self.data.schema, self.data.size, self.data.n_modalities).to(
            dev
        )
        self.D = build_discriminator(
            cfg, self.data.schema, self.data.size, self.data.n_modalities
        ).to(dev)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        dd.broadcast_module(self.G, self.dist.world_size)
        dd.broadcast_module(self.D, self.dist.world_size)
        dd.broadcast_module(self.G_ema, self.dist.world_size)
        lazy = cfg.loss.r1_gamma > 0
        ratio = cfg.loss.r1_interval / (cfg.loss.r1_interval + 1) if lazy else 1.0
        # AdamW: decoupled weight decay (p -= lr * wd * p per step); with wd = 0 it is Adam
        self.opt_G = torch.optim.AdamW(
            self.G.parameters(), lr=t.lr_g, betas=t.betas_g, eps=1e-8, weight_decay=t.weight_decay_g
        )
        self.opt_D = torch.optim.AdamW(
            self.D.parameters(),
            lr=t.lr_d * ratio,
            betas=(t.betas_d[0] ** ratio, t.betas_d[1] ** ratio),
            eps=1e-8,
            weight_decay=t.weight_decay_d,
        )
        augment = (
            build_augment(cfg, len(self.data.size), self.data.n_modalities)
            if (cfg.augment.ada or cfg.augment.p > 0)
            else None
        )
        self.loss = StyleGANLoss(
            self.G,
            self.D,
            cfg,
            augment,
            _autocast_factory(cfg, dev),
            cat_sizes(self.data.schema),
            compile=t.compile,
            terms=build_terms(cfg, self.data),
        )
        self.plan = StepPlan(
            seed=t.seed,
            n_train=len(self.data.train_index),
            batch=t.batch_size,
            accum=t.grad_accum,
            world=self.dist.world_size,
            rank=self.dist.rank,
            z_dim=cfg.model.z_dim,
            num_ws=self.G.num_ws,
            style_mixing=t.style_mixing,
            augment=augment,
            size=self.data.size,
        )
        self.step, self.images_seen, self.aug_p = 0, 0, float(cfg.augment.p)
        self.ada_sign_sum, self.ada_count, self.nan_streak, self.elapsed_s = 0.0, 0, 0, 0.0
        self.prior = PriorSchedule(cfg, self.data, dev, self.monitor.log, self.dist.is_main)
        self.validator = (
            Validator(cfg, self.data, self.run_dir, dev, self.monitor, enabled=self.dist.is_main, resume=resume)
            if validation_active(cfg) else None
        )  # fmt: skip
        if resume:
            self._restore()
        elif self.dist.is_main:
            dump_yaml(cfg, self.run_dir / "config.yaml")
        dd.barrier(self.dist.world_size)

    # -- run folder ----------------------------------------------------------------------------
    def _check_run_dir(self, resume: bool) -> None:
        has = bool(list_checkpoints(self.run_dir))
        if resume and not has:
            raise GliomagenError(f"--resume: {self.run_dir} has no checkpoints to resume from")
        if not resume and has:
            raise GliomagenError(
                f"{self.run_dir} already holds checkpoints; pass --resume or choose another --run"
            )
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def _restore(self) -> None:
        ckpt = load_checkpoint(self.run_dir, map_location=self.dist.device)
        saved, now, base = ckpt["config"], to_dict(self.cfg), to_dict(Config())
        changed = {  # a key newer than the checkpoint had its default
            f"{sec}.{k}": (_plain(was.get(k)), _plain(v))
            for sec in ("model", "data", "loss", "augment", "train")
            for was in [{**base[sec], **saved.get(sec, {})}]
            for k, v in now[sec].items()
            if _plain(v) != _plain(was.get(k))
        }
        for key, (was, v) in changed.items():  # shapes and data must stay what the weights saw
            if key.split(".")[0] in ("model", "data") and key not in RESUME_CHANGEABLE:
                raise GliomagenError(
                    f"--resume: {key} differs from the run's checkpoint "
                    f"({was!r} -> {v!r}); keep it or start a new run"
                )
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        self.G_ema.load_state_dict(ckpt["G_ema"])
        self.opt_G.load_state_dict(ckpt["opt_G"])
        self.opt_D.load_state_dict(ckpt["opt_D"])
        for opt in (
            self.opt_G,
            self.opt_D,
        ):  # the configured learning rates and weight decay win over the saved ones
            for group in opt.param_groups:
                for key in ("lr", "weight_decay", "decoupled_weight_decay"):
                    if key in opt.defaults:
                        group[key] = opt.defaults[key]
        self.step, self.images_seen, self.aug_p = (
            int(ckpt["step"]),
            int(ckpt["images_seen"]),
            float(ckpt["aug_p"]),
        )
        st = ckpt["train_state"]
        self.ada_sign_sum, self.ada_count = float(st["ada_sign_sum"]), int(st["ada_count"])
        self.nan_streak, self.elapsed_s = int(st["nan_streak"]), float(st["elapsed_s"])
        set_rng_state(ckpt["rng"])
        if self.validator is not None:
            self.validator.load_state(st.get("validation"), self.step)
        self.monitor.log(f"resumed from step {self.step}")
        if changed:  # config.yaml says what the run now trains with
            self.monitor.log(
                "configuration changed on resume: "
                + "; ".join(f"{key} {was!r} -> {v!r}" for key, (was, v) in changed.items())
            )
        if self.dist.is_main:
            dump_yaml(self.cfg, self.run_dir / "config.yaml")

    def _state(self) -> dict[str, Any]:
        self.prior.refresh(self.G_ema, self.step)
        return {
            "format_version": FORMAT_VERSION,
            "step": self.step,
            "images_seen": self.images_seen,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "aug_p": self.aug_p,
            "train_state": {
                "ada_sign_sum": self.ada_sign_sum,
                "ada_count": self.ada_count,
                "nan_streak": self.nan_streak,
                "elapsed_s": self.elapsed_s,
                **({"validation": self.validator.state()} if self.validator is not None else {}),
            },
            "rng": rng_state(),
            "config": to_dict(self.cfg),
            "schema": self.data.schema.to_dict(),
            "store_meta": self.data.meta,
            "size": list(self.data.size),
            "n_modalities": self.data.n_modalities,
            "w_avg": compute_w_avg(
                self.G_ema, self.data.schema, self.cfg.train.w_avg_samples, self.cfg.train.seed
            ),
        }

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
    def _micro(
        self,
        draws: Any,
        round_: int,
        real: tuple[torch.Tensor, torch.Tensor],
        real_rows: list[int],
    ) -> MicroBatch:
        """Micro-batch ``round_`` of this worker: its real cases and its rows of the draws."""
        dev = self.dist.device
        rows = self.plan.local_rows(round_)  # rows of the global draws
        gen_rows = self.data.train_index[draws.cond_rows[rows].numpy()]  # conditions of the fakes
        mine = slice(round_ * self.plan.micro, (round_ + 1) * self.plan.micro)  # of the local reals
        real_idx = real_rows[mine]
        return MicroBatch(
            real_img=real[0][mine],
            real_mask=real[1][mine],
            real_cat=self.data.cat[real_idx].to(dev),
            real_cont=self.data.cont[real_idx].to(dev),
            z=draws.z[rows].to(dev),
            gen_cat=self.data.cat[gen_rows].to(dev),
            gen_cont=self.data.cont[gen_rows].to(dev),
            noise_seeds=[int(s) for s in draws.noise_seeds[rows]],
            aug_real=slice_params(draws.aug_real, rows),
            aug_fake=slice_params(draws.aug_fake, rows),
            mix_z=None if draws.mix_z is None else draws.mix_z[rows].to(dev),
            mix_cutoff=None if draws.mix_cutoff is None else draws.mix_cutoff[rows],
            gp_alpha=draws.gp_alpha[rows],
            step=self.step,
        )

    def _phase(
        self, phase: str, real: Any, real_rows: list[int], do_r1: bool
    ) -> tuple[bool, dict[str, float]]:
        net, opt = (self.G, self.opt_G) if phase == "G" else (self.D, self.opt_D)
        self.G.requires_grad_(phase == "G")
        self.D.requires_grad_(phase == "D")
        opt.zero_grad(set_to_none=True)
        draws = self.plan.draw(self.step, phase, self.aug_p)
        acc: dict[str, torch.Tensor] = {}
        for r in range(self.cfg.train.grad_accum):
            mb = self._micro(draws, r, real, real_rows)
            for k, v in self.loss.accumulate_gradients(
                phase, mb, 1.0 / self.cfg.train.grad_accum, do_r1
            ).items():
                acc[k] = acc.get(k, 0) + v.detach().float()  # on the device: no sync here
        params = list(net.parameters())
        dd.all_reduce_mean_grads(params, self.dist.world_size)
        keys = sorted(acc)
        flat = dd.all_reduce_sum(
            torch.cat([acc[k].reshape(-1) for k in keys]).to(self.dist.device), self.dist.world_size
        )
        grads_ok = _grads_finite(params).to(flat.device, flat.dtype).reshape(1)
        host = torch.cat([flat, grads_ok]).cpu()  # the phase's one host-device sync
        flat, finite_grads = host[:-1], bool(host[-1])
        stats, off = {}, 0
        for k in keys:
            n = acc[k].numel()
            stats[k] = flat[off : off + n] if n > 1 else flat[off]
            off += n
        ok = bool(torch.isfinite(flat).all()) and finite_grads
        if ok:
            opt.step()
        else:
            opt.zero_grad(set_to_none=True)
        b = self.cfg.train.batch_size
        out = {k: float(v) / b for k, v in stats.items() if v.ndim == 0}
        if phase == "G" and ok:
            self.G.mapping.track_w_avg(stats["w_sum"].to(self.dist.device) / b)
        return ok, out

    @torch.no_grad()
    def _update_ema(self) -> None:
        t = self.cfg.train
        if t.ema_half_life_images <= 0:
            beta = 0.0
        else:
            hl = t.ema_half_life_images
            if t.ema_rampup > 0:
                hl = min(hl, self.images_seen * t.ema_rampup)
            beta = 0.5 ** (t.batch_size / max(hl, 1e-8))
        for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for (name, b_ema), b in zip(self.G_ema.named_buffers(), self.G.buffers(), strict=True):
            if not is_prior_buffer(name):  # G_ema's fitted prior is its own
                b_ema.copy_(b)

    def _samples(self) -> None:
        if not self.dist.is_main:
            return
        self.prior.refresh(self.G_ema, self.step)
        codes = self.data.cat[torch.as_tensor(self.data.train_index)]
        cat, cont, labels = montage_conditions(self.data.schema, codes)
        k = self.cfg.train.samples_per_condition
        if k == 0 or len(cat) == 0:
            return
        gen = torch.Generator().manual_seed(self.cfg.train.seed + 12345)
        z = torch.randn(len(cat) * k, self.cfg.model.z_dim, generator=gen)
        dev = self.dist.device
        cat, cont = cat.repeat_interleave(k, 0), cont.repeat_interleave(k, 0)
        imgs, logits = [], []
        with torch.no_grad():
            for i in range(0, len(z), 4):
                a, b = self.G_ema(
                    z[i : i + 4].to(dev),
                    cat[i : i + 4].to(dev),
                    cont[i : i + 4].to(dev),
                    noise_mode="const",
                )
                imgs.append(a.cpu())
                logits.append(b.cpu())
        self.monitor.montage(
            self.step, torch.cat(imgs), torch.cat(logits), [lab for lab in labels for _ in range(k)]
        )

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> Path:
        t, dev = self.cfg.train, self.dist.device
        start_step, t0 = self.step, time.time()
        deadline = t0 + self.max_minutes * 60 if self.max_minutes is not None else math.inf
        world = self.dist.world_size
        self.monitor.log(
            f"training {self.data.name}: {len(self.data.train_index)} cases ({self.data.n_skipped} without mask skipped), "
            f"grid {'x'.join(map(str, self.data.size))}, conditions {self.data.schema.names}, preset {self.cfg.preset}, "
            f"{world} worker(s) on {dev}, G {sum(p.numel() for p in self.G.parameters()) / 1e6:.2f}M / "
            f"D {sum(p.numel() for p in self.D.parameters()) / 1e6:.2f}M parameters"
        )
        loader = torch.utils.data.DataLoader(
            self.data.store,
            batch_sampler=StepBatchSampler(self.plan, self.data.train_index, start_step, t.steps),
            num_workers=t.num_workers,
            collate_fn=stack_items,
            pin_memory=dev.type == "cuda",  # pinned batches: asynchronous host-to-GPU copies
        )
        bar = None
        if self.dist.is_main and self.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=t.steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True
            )
        sums: dict[str, float] = {}
        n_log, t_log = 0, time.time()
        last_ckpt: Path | None = None
        stopped_early = False
        for items in loader:
            real = self.data.collate_real(items, dev)
            real_rows = self.plan.real_positions(self.step)
            real_rows = [int(self.data.train_index[i]) for i in real_rows]
            self.prior.before_step(self.G, self.step)
            ok_g, st_g = self._phase("G", real, real_rows, False)
            if ok_g:
                self._update_ema()
            do_r1 = self.cfg.loss.r1_gamma > 0 and self.step % self.cfg.loss.r1_interval == 0
            ok_d, st_d = self._phase("D", real, real_rows, do_r1)
            self.step += 1
            self.images_seen += t.batch_size
            if ok_d:
                self._adapt_augment(st_d.get("ada_sign", 0.0))
            self._guard(ok_g, ok_d)
            for k, v in {**st_g, **st_d}.items():
                sums[k] = sums.get(k, 0.0) + v
            n_log += 1
            if self.step % t.log_every == 0 or self.step == t.steps:
                self._log(sums, n_log, time.time() - t_log, bar)
                sums, n_log, t_log = {}, 0, time.time()
            if bar is not None:
                bar.update(1)
            if self.callback is not None:
                self.callback(self.step)
            if self.validator is not None and self.validator.enabled and self.validator.due(self.step):
                self.prior.refresh(self.G_ema, self.step)
            reason = (
                self.validator.maybe_validate(self.step, self.G_ema, self._state)
                if self.validator is not None else None
            )  # fmt: skip
            stop = dd.any_worker(time.time() > deadline or reason is not None, world, dev)
            if self.step % t.sample_every == 0 or self.step == t.steps or stop:
                self._samples()
            if self.step % t.checkpoint_every == 0 or self.step == t.steps or stop:
                self.elapsed_s += time.time() - t0
                t0 = time.time()
                last_ckpt = self.checkpoint()
            if stop:
                stopped_early = True
                why = f"early stop ({reason})" if reason else f"--max-minutes {self.max_minutes}"
                self.monitor.log(f"stopped at step {self.step}: {why} reached")
                break
        if bar is not None:
            bar.close()
        if last_ckpt is None:  # nothing left to do (resumed a finished run)
            last_ckpt = self.checkpoint()
        if not stopped_early:
            self.monitor.log(f"finished at step {self.step}")
        self.monitor.close()
        return last_ckpt

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

    def _log(self, sums: dict[str, float], n: int, dt: float, bar: Any) -> None:
        t = self.cfg.train
        vals = {f"loss/{k}": v / max(n, 1) for k, v in sums.items() if "/" in k}
        vals["aug/p"] = self.aug_p
        vals["lr/G"] = self.opt_G.param_groups[0]["lr"]
        vals["lr/D"] = self.opt_D.param_groups[0]["lr"]
        vals["perf/volumes_per_s"] = n * t.batch_size / max(dt, 1e-9)
        vals["perf/rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if self.dist.device.type == "cuda":
            vals["perf/cuda_peak_mb"] = torch.cuda.max_memory_allocated(self.dist.device) / 2**20
        self.monitor.scalars(self.step, vals)
        short = " ".join(
            f"{k.split('/', 1)[1]}={v:.4g}" for k, v in vals.items() if k.startswith("loss/")
        )
        self.monitor.log(
            f"step {self.step} {short} p={self.aug_p:.3f} vol/s={vals['perf/volumes_per_s']:.2f}"
        )
        if bar is not None:
            g, d = (
                vals.get("loss/G/adv", float("nan")),
                vals.get("loss/D/real", float("nan")) + vals.get("loss/D/fake", float("nan")),
            )
            bar.set_postfix(G=f"{g:.3f}", D=f"{d:.3f}", p=f"{self.aug_p:.2f}", refresh=False)


def train(
    config: Config,
    store: Any,
    run_dir: str | os.PathLike[str],
    resume: bool = False,
    max_minutes: float | None = None,
    *,
    callback: Callable[[int], None] | None = None,
    progress: bool = True,
) -> Path:
    """Train a conditional StyleGAN on a store; returns the path of the last checkpoint.

    Args:
        config: the resolved configuration (:func:`gliomagen.config.resolve_config`).
        store: a store folder (opened with ``config.data.split``) or an opened StoreDataset.
        run_dir: the run folder (config.yaml, log.txt, tensorboard/, samples/, checkpoints/).
        resume: continue from the newest checkpoint of ``run_dir`` (exactly, on the same hardware).
        max_minutes: wall-clock budget; training checkpoints and returns when it is spent.
        callback: called with the step number after every optimiser step, before that step's
            samples and checkpoint are written (notebooks, timing, tests).
        progress: show a progress bar with ETA on the main worker.

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
    )
    try:
        return trainer.run()
    finally:
        dd.shutdown(trainer.dist)


__all__ = ["Trainer", "compute_w_avg", "train"]
