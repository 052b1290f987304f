"""``gliomagen train STORE --run RUN``: train the conditional StyleGAN on a prepared store.

Also runs under ``torchrun --nproc_per_node N -m gliomagen train STORE --run-dir RUN ...``
(data-parallel; ``--run-dir`` or ``-o/--out`` because torchrun's argument parser reads ``--run`` as
an abbreviation of its own ``--run-path``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from gliomagen.cli._common import user_errors
from gliomagen.cli._options import OUT, one_store, quiet_option, store_option
from gliomagen.config import Config, apply_overrides, from_dict, load_yaml, resolve_config
from gliomagen.config.validate import DEVICE
from gliomagen.errors import GliomagenError

_STORE = typer.Argument(
    None,
    metavar="STORE",
    help="Store folder written by `gliomagen prepare` (e.g. from `gliomagen phantoms`); or "
    "give it as --store.",
    show_default=False,
)
_STORE_OPTION = store_option()
_RUN = typer.Option(
    ...,
    "--run",
    "--run-dir",
    *OUT,
    help="Run folder (config, log, TensorBoard, samples, checkpoints); -o/--out is the same "
    "option. Under torchrun write --run-dir or --out (torchrun's own parser takes --run for its "
    "--run-path).",
)
_PRESET = typer.Option(
    None,
    "--preset",
    help="default (the best measured recipe: a VAE-GAN with a fitted latent prior, CPU-sized "
    "widths, the store's grid) | origin (the origin report's recipe) | small-data | demo-cpu | "
    "origin-2d | small-data-2d (2D slice stores) (default: default, or the run's own on --resume).",
)
_CONFIG = typer.Option(None, "--config", help="YAML file of overrides ({section: {key: value}}).")
_SET = typer.Option([], "--set", help="Override one key, e.g. --set train.lr_g=0.001 (repeatable).")
_RESUME = typer.Option(
    False,
    "--resume",
    help="Continue from the run's newest readable checkpoint (on the store it trained on).",
)
_ALLOW_OTHER_STORE = typer.Option(
    False,
    "--allow-other-store",
    help="With --resume: continue on a store whose content differs from the one the run "
    "trained on (same conditions and grid; the change is logged) instead of refusing it.",
)
_INIT = typer.Option(
    None,
    "--init",
    help="Start G, G_ema and D from another run's weights: a checkpoint or a run folder (its "
    "newest); optimisers and step start fresh. Conditions are matched by name: codes both know "
    "keep their weights, new ones start from --init-map or the mean, missing ones are dropped.",
)
_INIT_MAP = typer.Option(
    [],
    "--init-map",
    help="With --init: FIELD=NEW:OLD starts category NEW (new to the parent) from the parent's "
    "OLD, e.g. cohort=SSA:GLI (repeatable; default: the mean of the parent's categories).",
)
_MAX_MINUTES = typer.Option(
    None,
    "--max-minutes",
    min=0.0,
    help="Wall-clock budget; checkpoints and stops when spent.",
)
_DEVICE = typer.Option(
    None,
    "--device",
    help="auto (CUDA when a GPU is present, else the CPU), cpu, cuda or cuda:N (GPU N); under "
    "torchrun each worker takes the GPU of its local rank (give auto or cuda there). Default: the "
    "configuration's train.device, which is auto unless --config, --set or (on --resume) the "
    "run's config.yaml says otherwise.",
)
_QUIET = quiet_option()


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to ``app``."""
    app.command("train")(user_errors(train_cmd))


def train_cmd(
    store: Path | None = _STORE,
    run: Path = _RUN,
    preset: str = _PRESET,
    config: Path = _CONFIG,
    set_: list[str] = _SET,
    resume: bool = _RESUME,
    allow_other_store: bool = _ALLOW_OTHER_STORE,
    init: Path = _INIT,
    init_map: list[str] = _INIT_MAP,
    max_minutes: float = _MAX_MINUTES,
    device: str = _DEVICE,
    quiet: bool = _QUIET,
    store_opt: Path | None = _STORE_OPTION,
) -> None:
    """Train on STORE; writes RUN/checkpoints/step-*.pt (load with `gliomagen generate`).

    With validation on (train.val_every > 0: in the default preset when the store has a val
    split, in the origin and small-data presets) it also
    writes RUN/validation.jsonl and RUN/checkpoints/best.pt and may stop early (plateau or
    memorisation); the reason is printed at the end. --resume refuses a store whose content
    differs from the one the run trained on (see --allow-other-store); a failed write (a full
    disk) is one error line and leaves the previous checkpoints as they were. --init starts
    from another run's weights (fine-tuning on a new store; the checkpoints record the parent's
    sha256).
    """
    from gliomagen.training import train  # torch-heavy: loaded when the command runs
    from gliomagen.training.init_schema import parse_init_map

    store = one_store(store, store_opt)
    if allow_other_store and not resume:
        raise GliomagenError("--allow-other-store: only with --resume")
    mapping = parse_init_map(init_map)
    cfg = _run_config(run, preset, config, list(set_), resume, device)
    if not store.exists():
        raise GliomagenError(f"{store}: store folder not found")
    ckpt = train(
        cfg,
        store,
        run,
        resume=resume,
        max_minutes=max_minutes,
        progress=not quiet,
        allow_other_store=allow_other_store,
        init=init,
        init_map=mapping,
    )
    if str(ckpt) not in ("", "."):
        typer.echo(f"checkpoint: {ckpt}")
        _report_validation(run, ckpt)


def _run_config(
    run: Path,
    preset: str | None,
    config: Path | None,
    overrides: list[str],
    resume: bool,
    device: str | None,
) -> Config:
    """The configuration to train with: the preset and overrides, or on ``--resume`` with
    neither ``--preset`` nor ``--config`` the run's own ``config.yaml`` with the overrides."""
    if device is not None:
        if DEVICE.fullmatch(device) is None:
            raise GliomagenError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
        overrides.append(f"train.device={device}")
    saved = run / "config.yaml"
    if resume and preset is None and config is None and saved.is_file():
        cfg = from_dict(load_yaml(saved), source=str(saved))  # the run's own configuration
        apply_overrides(cfg, overrides)
        cfg.validate()
        return cfg
    return resolve_config(preset, config, overrides)


def _report_validation(run: Path, ckpt: Path) -> None:
    """Print the best checkpoint and, when validation stopped the run, why."""
    # torch-heavy: loaded when the command runs
    from gliomagen.io.checkpoint import BEST_NAME, CHECKPOINT_DIR
    from gliomagen.training.validation import read_records

    records = read_records(run)
    if not records:
        return
    last = records[-1]
    best = run / CHECKPOINT_DIR / BEST_NAME
    if best.is_file() and last["best"]["step"] is not None:
        typer.echo(
            f"best: {best} (val {last['metric']}={last['best']['value']:.4g} at step "
            f"{last['best']['step']}; {len(records)} evaluations in {run / 'validation.jsonl'})"
        )
    if last.get("stop") and ckpt.name == f"step-{int(last['step']):07d}.pt":
        typer.echo(
            f"stopped early at step {last['step']} ({last['stop']['reason']}): "
            f"{last['stop']['detail']}"
        )
