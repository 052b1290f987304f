"""The run folder's outputs while training: text log, TensorBoard scalars, sample montages.

Only the main worker writes, and only once :meth:`RunMonitor.open` was called (after the run's
checks passed); a failed write is one line naming the file
(:class:`~gliomagen.io.checkpoint.WriteError`). Montages show, for every category of every categorical condition
(the other conditions at their most common value), a few samples of G_ema from fixed latents: the
middle axial slice (last axis) of each modality and of the mask (argmax of the logits).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen import MODALITIES
from gliomagen.data.conditions import ConditionSchema
from gliomagen.io.atomic import atomic_path
from gliomagen.io.checkpoint import WriteError
from gliomagen.training.run_folder import writing

MAX_SAMPLE_CONDITIONS = 8


def montage_conditions(
    schema: ConditionSchema, codes: torch.Tensor, limit: int = 16
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """One row per category of every categorical condition, the other conditions at their mode.

    Args:
        schema: the model's conditions.
        codes: ``[N, n_cat]`` categorical codes of the training cases (for the modes).
        limit: most rows.

    Returns:
        ``(cat [K, n_cat] long, cont [K, n_cont] float, labels)``; an unconditional model gives one row.
    """
    fields = schema.categorical
    mode = [int(torch.mode(codes[:, i]).values) if len(codes) else 0 for i in range(len(fields))]
    rows: list[list[int]] = []
    labels: list[str] = []
    for i, f in enumerate(fields):
        for c in range(len(f.categories)):
            row = mode.copy()
            row[i] = c
            if row not in rows:
                rows.append(row)
                labels.append(
                    " ".join(
                        f"{g.name}={g.categories[v]}" for g, v in zip(fields, row, strict=True)
                    )
                )
    if not rows:
        rows, labels = [mode], ["unconditional"]
    rows, labels = rows[:limit], labels[:limit]
    cat = torch.tensor(rows, dtype=torch.long).reshape(len(rows), len(fields))
    return cat, torch.zeros(len(rows), len(schema.continuous)), labels


def condition_grid(
    schema: ConditionSchema, limit: int = MAX_SAMPLE_CONDITIONS
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every combination of the categorical conditions (first ``limit``), continuous ones at the mean.

    Returns:
        ``(cat [K, n_cat] long, cont [K, n_cont] float, labels)``.
    """
    fields = schema.categorical
    combos = list(
        itertools.islice(itertools.product(*[range(len(f.categories)) for f in fields]), limit)
    )
    cat = torch.tensor(combos, dtype=torch.long).reshape(len(combos), len(fields))
    cont = torch.zeros(len(combos), len(schema.continuous))
    labels = [
        ", ".join(f"{f.name}={f.categories[i]}" for f, i in zip(fields, combo, strict=True))
        or "unconditional"
        for combo in combos
    ]
    return cat, cont, labels


@contextmanager
def _quiet_writer_thread() -> Iterator[None]:
    """Keep TensorBoard's writer thread from printing a traceback when a write fails (the
    failure is raised again, once, in this thread by the writer's next call)."""
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError)):
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


class RunMonitor:
    """Log lines, TensorBoard scalars and sample montages of one run.

    Nothing is written before :meth:`open`.

    Args:
        run_dir: the run folder.
        enabled: False on non-main workers (every method is then a no-op).
    """

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.writer: Any = None

    @property
    def tensorboard_dir(self) -> Path:
        """``RUN/tensorboard``."""
        return self.run_dir / "tensorboard"

    def open(self) -> None:
        """Create ``RUN/samples`` and the TensorBoard writer (main worker; the run folder exists)."""
        if not self.enabled or self.writer is not None:
            return
        with writing(self.run_dir / "samples"):
            (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter  # heavy: only a writing worker needs it

        before = set(self.tensorboard_dir.glob("events.*"))
        try:
            with writing(self.tensorboard_dir), _quiet_writer_thread():
                self.writer = SummaryWriter(log_dir=str(self.tensorboard_dir))
        except WriteError:  # no event file of a writer that could not start
            for p in set(self.tensorboard_dir.glob("events.*")) - before:
                p.unlink(missing_ok=True)
            raise

    def log(self, message: str) -> None:
        """Append a time-stamped line to ``RUN/log.txt``."""
        if not self.enabled:
            return
        path = self.run_dir / "log.txt"
        with writing(path), open(path, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write TensorBoard scalars."""
        if self.writer is None:
            return
        with writing(self.tensorboard_dir), _quiet_writer_thread():
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def montage(
        self, step: int, images: torch.Tensor, logits: torch.Tensor, labels: list[str]
    ) -> Path | None:
        """Save ``RUN/samples/step-<step>.png`` (atomically).

        Args:
            step: training step.
            images: ``[K, C, *S]`` in [-1, 1].
            logits: ``[K, 4, *S]`` mask logits.
            labels: one row title per sample.
        """
        if not self.enabled:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        def mid(x: torch.Tensor) -> np.ndarray:
            x = x[..., x.shape[-1] // 2] if x.ndim == 3 else x  # [H, W] slice of a [D, H, W] volume
            return np.rot90(x.detach().float().cpu().numpy())

        n, c = images.shape[:2]
        mask = logits.argmax(1)  # [K, *S]
        fig, axes = plt.subplots(n, c + 1, figsize=(1.6 * (c + 1), 1.6 * n + 0.3), squeeze=False)
        for i in range(n):
            for j in range(c):
                axes[i, j].imshow(mid(images[i, j]), cmap="gray", vmin=-1, vmax=1)
                if i == 0:
                    axes[i, j].set_title(
                        MODALITIES[j] if j < len(MODALITIES) else f"ch{j}", fontsize=8
                    )
            axes[i, c].imshow(
                mid(mask[i].float()), cmap="viridis", vmin=0, vmax=3, interpolation="nearest"
            )
            axes[i, 0].set_ylabel(labels[i], fontsize=6)
            if i == 0:
                axes[i, c].set_title("mask", fontsize=8)
            for ax in axes[i]:
                ax.set_xticks([])
                ax.set_yticks([])
        fig.suptitle(f"step {step}", fontsize=9)
        fig.tight_layout()
        out = self.run_dir / "samples" / f"step-{step:07d}.png"
        try:
            with writing(out), atomic_path(out) as tmp:
                fig.savefig(tmp, dpi=80, format="png")
        finally:
            plt.close(fig)
        return out

    def close(self, quiet: bool = False) -> None:
        """Close the TensorBoard writer; ``quiet``: ignore a failure (the run already failed)."""
        writer, self.writer = self.writer, None
        if writer is None:
            return
        with writing(self.tensorboard_dir), _quiet_writer_thread():
            if not quiet:
                writer.close()
                return
            with suppress(Exception):
                writer.close()
