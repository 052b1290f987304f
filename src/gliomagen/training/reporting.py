"""What a run shows while it trains: the header line, the logged scalars, the sample montage."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from gliomagen.config import Config
from gliomagen.training.batches import TrainingData
from gliomagen.training.monitor import RunMonitor, montage_conditions

MONTAGE_BATCH = 4  # volumes per G_ema call while drawing the montage


@dataclass
class LogWindow:
    """The statistics of the steps since the last log line: sums, count and start time."""

    sums: dict[str, float] = field(default_factory=dict)
    n: int = 0
    start: float = field(default_factory=time.time)

    def add(self, stats: dict[str, float]) -> None:
        """Add one step's mean statistics."""
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.n += 1

    def reset(self) -> None:
        """Start a new window now."""
        self.sums, self.n, self.start = {}, 0, time.time()


def run_header(
    data: TrainingData, cfg: Config, world: int, device: torch.device, G: Any, D: Any
) -> str:
    """The run log's first line: store, cases, grid, conditions, preset, workers, network sizes."""
    mparams = [sum(p.numel() for p in net.parameters()) / 1e6 for net in (G, D)]
    return (
        f"training {data.name}: {len(data.train_index)} cases ({data.n_skipped} without mask skipped), "
        f"grid {'x'.join(map(str, data.size))}, conditions {data.schema.names}, preset {cfg.preset}, "
        f"{world} worker(s) on {device}, G {mparams[0]:.2f}M / D {mparams[1]:.2f}M parameters"
    )


def progress_bar(total: int, initial: int) -> Any:
    """A tqdm bar over the run's steps."""
    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


def log_steps(
    monitor: RunMonitor,
    step: int,
    sums: dict[str, float],
    n: int,
    dt: float,
    *,
    cfg: Config,
    aug_p: float,
    lrs: tuple[float, float],
    device: torch.device,
    bar: Any = None,
) -> None:
    """Log the mean losses of the last ``n`` steps (``sums``), ``p``, the learning rates ``lrs``
    (G, D) and the throughput and memory, as scalars, as a log line and on the bar."""
    vals = {f"loss/{k}": v / max(n, 1) for k, v in sums.items() if "/" in k}
    vals["aug/p"] = aug_p
    vals["lr/G"], vals["lr/D"] = lrs
    vals["perf/volumes_per_s"] = n * cfg.train.batch_size / max(dt, 1e-9)
    vals["perf/rss_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        vals["perf/cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    monitor.scalars(step, vals)
    short = " ".join(
        f"{k.split('/', 1)[1]}={v:.4g}" for k, v in vals.items() if k.startswith("loss/")
    )
    monitor.log(f"step {step} {short} p={aug_p:.3f} vol/s={vals['perf/volumes_per_s']:.2f}")
    if bar is not None:
        g, d = (
            vals.get("loss/G/adv", float("nan")),
            vals.get("loss/D/real", float("nan")) + vals.get("loss/D/fake", float("nan")),
        )
        bar.set_postfix(G=f"{g:.3f}", D=f"{d:.3f}", p=f"{aug_p:.2f}", refresh=False)


@torch.no_grad()
def sample_montage(
    G_ema: Any, data: TrainingData, cfg: Config, device: torch.device, monitor: RunMonitor, step: int
) -> None:
    """Draw ``train.samples_per_condition`` samples per condition of the training cases from
    ``G_ema`` (fixed latents: seed ``train.seed + 12345``, constant noise) into the monitor."""
    codes = data.cat[torch.as_tensor(data.train_index)]
    cat, cont, labels = montage_conditions(data.schema, codes)
    k = cfg.train.samples_per_condition
    if k == 0 or len(cat) == 0:
        return
    gen = torch.Generator().manual_seed(cfg.train.seed + 12345)
    z = torch.randn(len(cat) * k, cfg.model.z_dim, generator=gen)
    cat, cont = cat.repeat_interleave(k, 0), cont.repeat_interleave(k, 0)
    imgs, logits = [], []
    for i in range(0, len(z), MONTAGE_BATCH):
        part = slice(i, i + MONTAGE_BATCH)
        a, b = G_ema(z[part].to(device), cat[part].to(device), cont[part].to(device), noise_mode="const")
        imgs.append(a.cpu())
        logits.append(b.cpu())
    monitor.montage(
        step, torch.cat(imgs), torch.cat(logits), [lab for lab in labels for _ in range(k)]
    )


__all__ = ["LogWindow", "log_steps", "progress_bar", "run_header", "sample_montage"]
