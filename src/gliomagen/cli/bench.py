"""``gliomagen bench``: speed and memory of training and generation, side by side with references.

Per preset and grid: a full G+D training step (volumes/s), generation (seconds per volume, all
modalities and the mask), peak memory, model FLOPs (``torch.utils.flop_counter``) and achieved
FLOP/s as a fraction of this machine's peaks measured in the same run; next to a naive
implementation of the origin design and MONAI's 3D latent diffusion model. See docs/performance.md.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gliomagen.bench.report import summary_lines, table_lines, write_markdown
from gliomagen.cli._common import int_list, split_list, user_errors
from gliomagen.cli._options import out_file, out_option, quiet_option

if TYPE_CHECKING:
    from gliomagen.bench.runner import BenchOptions

_PRESETS = typer.Option(
    ["origin,small-data"], "--presets", help="Presets to measure, comma-separated or repeated."
)
_SIZES = typer.Option(
    ["32,64,128"], "--sizes", help="Cube sides, comma-separated or repeated (e.g. 32,64,128)."
)
_DEVICE = typer.Option(
    "auto",
    "--device",
    help="auto (default: CUDA when a GPU is present, else the CPU), cpu, cuda or cuda:N.",
)
_BATCH_SIZE = typer.Option(
    None, "--batch-size", help="Training batch (default: the preset's); GPU generation batch."
)
_STEPS = typer.Option(
    None, "--steps", help="Timed training steps after one warm-up (default: 2 CPU, 10 GPU)."
)
_REPEATS = typer.Option(
    None, "--repeats", help="Timed generated volumes after one warm-up (default: 2 CPU, 16 GPU)."
)
_THREADS = typer.Option(0, "--threads", help="CPU threads (default: all cores).")
_MAX_TRAIN_SIZE = typer.Option(
    None,
    "--max-train-size",
    help="Largest grid whose training step is measured (default: 64 on the CPU, where "
    "128^3 takes minutes per step; 256 on a GPU). Generation runs at every size.",
)
_SKIP_LDM = typer.Option(False, "--skip-ldm", help="Leave out the MONAI LDM reference.")
_SKIP_NAIVE = typer.Option(False, "--skip-naive", help="Leave out the naive reference.")
_SKIP_MEMORY = typer.Option(
    False, "--skip-memory", help="Leave out the (estimated) GPU training-memory table."
)
_IN_PROCESS = typer.Option(
    False,
    "--in-process",
    help="Run every measurement in this process (faster start, but each peak RSS is then "
    "the peak so far, not the measurement's own).",
)
_SET = typer.Option(
    [], "--set", help="Config override for every preset, e.g. --set train.compile=true."
)
JSON_NAME = "bench-results.json"
"""The file of all figures in the ``--out`` folder."""
_OUT = out_option(
    Path("."),
    f"Folder for {JSON_NAME}, the file of all figures (default: the current folder); a file "
    "name with a suffix (e.g. results.json, the older form) is that file.",
)
_QUIET = quiet_option(
    "No progress messages while measuring (errors, the table, the summary and the files "
    "written still print)."
)
_MARKDOWN = typer.Option(
    None,
    "--markdown",
    help="Markdown file for the table (e.g. docs/performance.md); replaces the part "
    "between its '<!-- bench:start -->' and '<!-- bench:end -->' lines if present.",
)


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
    app.command("bench")(user_errors(bench_cmd))


def bench_cmd(
    presets: list[str] = _PRESETS,
    sizes: list[str] = _SIZES,
    device: str = _DEVICE,
    batch_size: int = _BATCH_SIZE,
    steps: int = _STEPS,
    repeats: int = _REPEATS,
    threads: int = _THREADS,
    max_train_size: int = _MAX_TRAIN_SIZE,
    skip_ldm: bool = _SKIP_LDM,
    skip_naive: bool = _SKIP_NAIVE,
    skip_memory: bool = _SKIP_MEMORY,
    in_process: bool = _IN_PROCESS,
    set_: list[str] = _SET,
    out: Path = _OUT,
    markdown: Path = _MARKDOWN,
    quiet: bool = _QUIET,
) -> None:
    """Measure training and generation speed and memory against a naive GAN and a latent diffusion model."""
    from gliomagen.bench.runner import BenchOptions, run_bench, write_json  # torch-heavy

    options = BenchOptions(
        presets=split_list(presets),
        sizes=int_list(sizes, "--sizes", "32,64,128"),
        device=device,
        batch_size=batch_size,
        steps=steps,
        repeats=repeats,
        threads=threads,
        max_train_size=max_train_size,
        skip_ldm=skip_ldm,
        skip_naive=skip_naive,
        skip_memory=skip_memory,
        overrides=list(set_),
        in_process=in_process,
    ).resolved()
    json_path = out_file(out, JSON_NAME)
    doc = run_bench(options, echo=_errors_only if quiet else typer.echo)
    if not quiet:
        typer.echo("")
    for line in table_lines(doc) + [""] + summary_lines(doc):
        typer.echo(line)
    typer.echo(f"wrote {write_json(doc, json_path)}")
    if markdown is not None:
        typer.echo(f"wrote {write_markdown(doc, markdown, _command(options, json_path, markdown))}")


def _errors_only(text: str) -> None:
    """The ``echo`` of ``--quiet``: a measurement's error line prints, progress does not."""
    if text.lstrip().startswith("error:"):
        typer.echo(text)


def _command(o: BenchOptions, out: Path, markdown: Path) -> str:
    """The command line that reproduces a run (explicit values, for docs/performance.md)."""
    parts = ["gliomagen bench", "--presets", ",".join(o.presets), "--sizes",
             ",".join(map(str, o.sizes)), "--device", o.device, "--steps", str(o.steps),
             "--repeats", str(o.repeats), "--threads", str(o.threads),
             "--max-train-size", str(o.max_train_size)]  # fmt: skip
    if o.batch_size:
        parts += ["--batch-size", str(o.batch_size)]
    parts += [f for f, on in (("--skip-ldm", o.skip_ldm), ("--skip-naive", o.skip_naive),
                              ("--skip-memory", o.skip_memory)) if on]  # fmt: skip
    for item in o.overrides:
        parts += ["--set", shlex.quote(item)]
    parts += ["--out", shlex.quote(str(out)), "--markdown", shlex.quote(str(markdown))]
    return " ".join(parts)
