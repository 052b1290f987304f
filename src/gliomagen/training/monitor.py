"""The run folder's outputs while training: text log, TensorBoard records, sample montages.

Only the main worker writes, and only once :meth:`RunMonitor.open` was called (after the run's
checks passed); a failed write is one line naming the file
(:class:`~gliomagen.io.checkpoint.WriteError`). Montages show, for every category of every
categorical condition (the other conditions at their most common value), a few samples of G_ema
from fixed latents: the middle axial slice (last axis) of each modality and of the mask (argmax of
the logits, in the HTML report's colours, with a legend naming NCR / ED / ET).

TensorBoard (``RUN/tensorboard``) holds the scalars, every montage as the image ``samples``, the
resolved configuration as the text ``config`` (once per start) and, when the run ends, the
hyperparameters (the configuration keys that differ from the preset) with the last validation
metrics. A resumed run starts its writer with ``purge_step`` one past the checkpoint's step, so
TensorBoard drops the points the interrupted run wrote after that checkpoint instead of showing
them twice.
"""

from __future__ import annotations

import itertools
import math
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml

from gliomagen import MODALITIES
from gliomagen.config import Config, preset, to_dict
from gliomagen.data.conditions import ConditionSchema
from gliomagen.errors import GliomagenError
from gliomagen.evaluation.montages import MASK_COLOURS, MASK_NAMES
from gliomagen.io.atomic import atomic_path
from gliomagen.io.checkpoint import WriteError
from gliomagen.training.run_folder import writing

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_SAMPLE_CONDITIONS = 8
MONTAGE_DPI = 100
PANEL_INCHES = 1.5  # one slice: 150 pixels at MONTAGE_DPI
FONT_SIZE = 10  # points: about 14 pixels at MONTAGE_DPI, readable at 100 %
LABEL_WIDTH = 18  # characters per line of a row's condition label
MONTAGE_TAG = "samples"
CONFIG_TAG = "config"


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


def _middle_slice(x: torch.Tensor) -> np.ndarray:
    """The middle slice along the last axis of a ``[D, H, W]`` volume (a ``[H, W]`` slice is kept),
    turned for display."""
    x = x[..., x.shape[-1] // 2] if x.ndim == 3 else x
    return np.rot90(x.detach().float().cpu().numpy())


def _mask_rgb(labels: np.ndarray) -> np.ndarray:
    """Labels ``{0, 1 NCR, 2 ED, 3 ET}`` as RGB in [0, 1]: background black, the rest in the
    report's :data:`~gliomagen.evaluation.montages.MASK_COLOURS`."""
    palette = np.vstack([np.zeros((1, 3)), np.asarray(MASK_COLOURS, dtype=np.float64) / 255.0])
    return palette[np.clip(labels.astype(np.int64), 0, len(palette) - 1)]


def montage_figure(
    step: int, images: torch.Tensor, logits: torch.Tensor, labels: list[str]
) -> Figure:
    """The sample montage as a matplotlib figure (constrained layout: nothing overlaps).

    One row per sample: its condition label (wrapped, left of the row), the middle slice of every
    modality (grey, [-1, 1]) and of the mask (argmax of the logits, report colours); a title
    above the column names and a legend naming NCR / ED / ET below the rows.

    Args:
        step: training step (in the title).
        images: ``[K, C, *S]`` in [-1, 1].
        logits: ``[K, 4, *S]`` mask logits.
        labels: one row label per sample.
    """
    # matplotlib: a heavy import (about a CPU-second), only when a montage is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n, c = images.shape[:2]
    names = [MODALITIES[j] if j < len(MODALITIES) else f"ch{j}" for j in range(c)] + ["mask"]
    mask = logits.argmax(1)  # [K, *S]
    size = (PANEL_INCHES * (c + 1) + 1.8, PANEL_INCHES * n + 1.2)
    fig = Figure(figsize=size, dpi=MONTAGE_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, c + 1, squeeze=False)
    for i in range(n):
        for j in range(c):
            axes[i, j].imshow(_middle_slice(images[i, j]), cmap="gray", vmin=-1, vmax=1)
        axes[i, c].imshow(_mask_rgb(_middle_slice(mask[i])), interpolation="nearest")
        label = textwrap.fill(labels[i], LABEL_WIDTH, break_long_words=False)
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=FONT_SIZE)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for j, name in enumerate(names):
        axes[0, j].set_title(name, fontsize=FONT_SIZE)
    fig.suptitle(f"samples of G_ema at step {step}", fontsize=FONT_SIZE + 2)
    rgbs = [(float(r) / 255, float(g) / 255, float(b) / 255) for r, g, b in MASK_COLOURS]
    handles = [
        Patch(facecolor=rgb, edgecolor="black", label=name)
        for name, rgb in zip(MASK_NAMES, rgbs, strict=True)
    ]
    fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), fontsize=FONT_SIZE,
        frameon=False, title="mask", title_fontsize=FONT_SIZE,
    )  # fmt: skip
    return fig


def _flat(cfg: Config) -> dict[str, Any]:
    """``{"section.key": value}`` of a configuration (``preset`` as it is)."""
    out: dict[str, Any] = {}
    for section, values in to_dict(cfg).items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            out[section] = values
    return out


def changed_hparams(cfg: Config) -> dict[str, bool | int | float | str]:
    """The preset's name and every configuration key whose value differs from that preset (the
    dataclass defaults for a preset without a name), as TensorBoard hyperparameters (lists and
    ``None`` as text)."""
    try:
        base = _flat(preset(cfg.preset))
    except GliomagenError:  # a custom preset name: compare with the defaults
        base = _flat(type(cfg)())
    out: dict[str, bool | int | float | str] = {"preset": cfg.preset}
    for key, value in _flat(cfg).items():
        if key != "preset" and base.get(key) != value:
            out[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def config_markdown(cfg: Config) -> str:
    """The resolved configuration as YAML in a Markdown code block (TensorBoard's text tab)."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    return "\n".join("    " + line for line in text.splitlines())


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
        self.config: Config | None = None
        self.last_step = 0  # the latest step written (the hyperparameters' step)
        self.last_validation: dict[str, float] = {}  # the latest ``val/*`` scalars

    @property
    def tensorboard_dir(self) -> Path:
        """``RUN/tensorboard``."""
        return self.run_dir / "tensorboard"

    def open(self, config: Config | None = None, start_step: int = 0) -> None:
        """Create ``RUN/samples`` and the TensorBoard writer (main worker; the run folder exists).

        Args:
            config: the resolved configuration: written as the text ``config`` now, and its keys
                that differ from the preset as hyperparameters when the run ends.
            start_step: the step the run starts from (the checkpoint's on resume): TensorBoard
                drops the points an earlier writer left after it (``purge_step``).
        """
        if not self.enabled or self.writer is not None:
            return
        self.config, self.last_step = config, start_step
        with writing(self.run_dir / "samples"):
            (self.run_dir / "samples").mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter  # heavy: only a writing worker needs it

        before = set(self.tensorboard_dir.glob("events.*"))
        try:
            with writing(self.tensorboard_dir), _quiet_writer_thread():
                self.writer = SummaryWriter(
                    log_dir=str(self.tensorboard_dir),
                    purge_step=start_step + 1 if start_step > 0 else None,
                )
                if config is not None:
                    self.writer.add_text(CONFIG_TAG, config_markdown(config), start_step)
                    self.writer.flush()
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
        validation = {k: float(v) for k, v in values.items() if k.startswith("val/")}
        if validation:
            self.last_validation = validation
        self.last_step = max(self.last_step, step)
        with writing(self.tensorboard_dir), _quiet_writer_thread():
            for k, v in values.items():
                self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def montage(
        self, step: int, images: torch.Tensor, logits: torch.Tensor, labels: list[str]
    ) -> Path | None:
        """Save ``RUN/samples/step-<step>.png`` (atomically; :func:`montage_figure`) and add it
        to TensorBoard as the image ``samples``.

        Args:
            step: training step.
            images: ``[K, C, *S]`` in [-1, 1].
            logits: ``[K, 4, *S]`` mask logits.
            labels: one row label per sample.
        """
        if not self.enabled:
            return None
        fig = montage_figure(step, images, logits, labels)
        out = self.run_dir / "samples" / f"step-{step:07d}.png"
        with writing(out), atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=MONTAGE_DPI, format="png")
        if self.writer is not None:
            fig.canvas.draw()
            rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]  # type: ignore[attr-defined]
            self.last_step = max(self.last_step, step)
            with writing(self.tensorboard_dir), _quiet_writer_thread():
                self.writer.add_image(MONTAGE_TAG, rgb, step, dataformats="HWC")
                self.writer.flush()
        return out

    def _hparams(self, writer: Any) -> None:
        """Write the hyperparameters (:func:`changed_hparams`) with the last validation metrics
        (their ``val/*`` scalars, by tag) into the run's own event file."""
        if self.config is None:
            return
        from torch.utils.tensorboard.summary import hparams  # heavy: with the writer only

        metrics = {k: v for k, v in self.last_validation.items() if math.isfinite(v)}
        metrics.pop("val/seconds", None)
        file_writer = writer._get_file_writer()
        for summary in hparams(changed_hparams(self.config), metrics):
            file_writer.add_summary(summary, self.last_step)

    def close(self, quiet: bool = False) -> None:
        """Write the hyperparameters and close the TensorBoard writer; ``quiet``: only close,
        ignoring a failure (the run already failed)."""
        writer, self.writer = self.writer, None
        if writer is None:
            return
        with writing(self.tensorboard_dir), _quiet_writer_thread():
            if not quiet:
                self._hparams(writer)
                writer.close()
                return
            with suppress(Exception):
                writer.close()
