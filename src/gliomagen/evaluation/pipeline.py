"""``evaluate``: every metric of a synthetic cohort against held-out real cases, into a report folder.

Order of work: resolve the three sets (held-out real, training, synthetic) -> the metric suite's
reference of the real sets (:func:`~gliomagen.evaluation.suite.build_reference`: the feature
extractor, one pass over the held-out and training cases, cached) -> its measure of the synthetic
cases (:func:`~gliomagen.evaluation.suite.measure`: FD/KID/PRDC with the real-vs-training floor,
diversity, memorisation, conditional fidelity, mask realism, histograms, all overall and per
condition) -> optional reconstruction -> the optional conditioning judge of the checkpoint
(:mod:`~gliomagen.evaluation.judge_section`; its checkpoint is loaded and checked before any
other work) -> the run's training curves; then, in a temporary folder
beside ``REPORT`` that takes its place at the end (:mod:`gliomagen.evaluation.report_folder`), the
montages and ``metrics.json``. The report layer renders ``index.html`` from it into the same
folder before the rename (:func:`gliomagen.report.html.evaluate_report`).
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gliomagen import __version__
from gliomagen.errors import GliomagenError
from gliomagen.evaluation.cases import CaseSet, check_compatible
from gliomagen.evaluation.curves import read_curves
from gliomagen.evaluation.inputs import held_out_split, resolve, split_spec
from gliomagen.evaluation.judge_section import check_volumes, judge_section, prepare
from gliomagen.evaluation.montages import write_montages
from gliomagen.evaluation.probe import ProbeOptions
from gliomagen.evaluation.reconstruction import reconstruct
from gliomagen.evaluation.report_folder import check_out, staged_report
from gliomagen.evaluation.suite import (
    Reference,
    SuiteOptions,
    build_reference,
    channel_names,
    groups,
    measure,
)
from gliomagen.io.atomic import clean_json, write_json
from gliomagen.io.device import resolve_device

METRICS_FORMAT = 1
MEASURED = ("groups", "distances", "diversity", "memorisation", "fidelity", "masks", "intensity")
"""The sections of ``metrics.json`` that come from the metric suite's measure."""


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def resolve_sets(
    real: CaseSet | str | os.PathLike[str],
    synthetic: CaseSet | str | os.PathLike[str],
    train: CaseSet | str | os.PathLike[str] | None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> tuple[CaseSet, CaseSet, CaseSet]:
    """``(held-out real, training, synthetic)`` sets on one grid, broken down by the real conditions.

    ``--real STORE`` without a split means its test split (else val); ``--train`` defaults to the
    same store's train split; a synthetic NIfTI folder is prepared at the real grid.
    """
    real_default = None
    if not isinstance(real, CaseSet):
        path, split = split_spec(real)
        if not path.exists():
            raise GliomagenError(f"--real {path}: not found")
        if not (path / "meta.json").is_file():
            raise GliomagenError(
                f"--real {path}: not a gliomagen store (no meta.json); run gliomagen prepare"
            )
        real_default = None if split else held_out_split(path)
        if train is None:
            if (split or real_default) == "train":
                raise GliomagenError(
                    f"--real {real}: the train split is not held out; give --train another store"
                )
            train = f"{path}:train"
    if train is None:
        raise GliomagenError("--train: needed when --real is not a store (real training cases)")
    real_set = resolve(real, "--real", default_split=real_default)
    train_set = resolve(train, "--train", default_split="train")
    check_compatible(real_set, train_set)
    syn_set = resolve(
        synthetic, "--synthetic", size=real_set.spatial, cache_dir=cache_dir, progress=progress
    )
    check_compatible(real_set, syn_set)
    if len(syn_set) < 2 or len(real_set) < 2:
        raise GliomagenError(
            f"need at least 2 real and 2 synthetic cases, got {len(real_set)} and {len(syn_set)}"
        )
    syn_set.categorical = train_set.categorical = list(real_set.categorical)
    return real_set, train_set, syn_set


def evaluate(
    real: CaseSet | str | os.PathLike[str],
    synthetic: CaseSet | str | os.PathLike[str],
    out: str | os.PathLike[str],
    train: CaseSet | str | os.PathLike[str] | None = None,
    extractor: str = "probe",
    weights: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    run: str | os.PathLike[str] | None = None,
    *,
    n_boot: int = 100,
    seed: int = 0,
    n_pairs: int = 100,
    batch_size: int = 4,
    n_montage: int = 2,
    probe_options: ProbeOptions | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    n_reconstruct: int = 8,
    reconstruct_steps: int = 100,
    n_judge: int = 0,
    judge_by: str = "cohort",
    judge_truncation: float = 1.0,
    device: str = "cpu",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    slice_size: int | None = None,
    finish: Callable[[Path, dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Evaluate a synthetic cohort against held-out real cases; write ``out/metrics.json`` and the
    montages in ``out/figures/``.

    Volumes and 2-D slices (a slice store with a 2D cohort or store) go through the same steps.
    The HTML page (``out/index.html``) is the report's:
    :func:`gliomagen.report.html.evaluate_report` runs this and renders it (``gliomagen evaluate``).

    ``out`` is written whole or not at all (:mod:`gliomagen.evaluation.report_folder`): it must be
    new, empty or an earlier report (checked before any work, replaced at the end); everything is
    computed first, then written into a temporary folder beside it that takes its place.

    Args:
        real: held-out real cases: a CaseSet, ``STORE:split`` or ``STORE`` (its test split, else val).
        synthetic: a CaseSet, a store, or a folder of NIfTI cases (prepared at the real grid); a
            cohort of ``gliomagen generate`` must be complete (:func:`~gliomagen.evaluation.inputs.check_cohort`).
        out: report folder (``metrics.json``, ``figures/``).
        train: real training cases (default: the ``train`` split of the real store).
        extractor: ``probe`` | ``medicalnet`` | ``slices`` (2-D slices: ``probe`` or ``slices``).
        weights: weights file of ``medicalnet`` / ``slices``.
        slice_size: ``slices``: resize every slice to this square side first (e.g. 299 for an
            InceptionV3); ``None`` keeps the grid's size.
        checkpoint: generator checkpoint for the reconstruction audit and the judge.
        run: run folder whose training curves go into the report.
        n_boot: bootstrap resamples of the intervals.
        seed: seed of every random choice.
        n_pairs: MS-SSIM pairs per set and condition for diversity.
        batch_size: cases per batch when reading and extracting.
        n_montage: cases per montage.
        probe_options: probe network options.
        cache_dir: cache of the probe, the real side of the metrics and prepared NIfTI folders
            (default :func:`~gliomagen.evaluation.cache.default_cache_dir`).
        n_reconstruct: held-out cases projected into ``w`` space (with ``checkpoint``).
        reconstruct_steps: optimisation steps per projection.
        n_judge: with ``checkpoint``: judge ``n_judge`` samples per grade and per value of
            ``judge_by`` and the training cases (:func:`~gliomagen.evaluation.judge_section.judge_section`,
            seeded by ``seed``) into ``metrics["conditioning_judge"]``; 0 = no judge (``None`` there).
        judge_by: a categorical condition of the checkpoint other than ``grade``.
        judge_truncation: the judge's samples are truncated toward each condition's mean ``w``
            (1 = none; in (0, 1]), as ``gliomagen generate --truncation`` samples.
        device: where networks run (``cpu`` or ``cuda``): feature extraction, probe training,
            the projection and the judged generator; similarity measures and statistics run on the CPU.
        progress: print progress on stderr.
        log: alternative to ``progress``: called with each progress message.
        finish: called with the temporary report folder and the metrics once ``metrics.json`` and
            the montages are in it, before it takes ``out``'s place (the report layer writes
            ``index.html`` there).

    Returns:
        The metrics dict (also written to ``out/metrics.json``).

    Raises:
        GliomagenError: bad inputs or options, an ``out`` that may not be replaced, or a failed
            write (one line naming the file; ``out`` is left as it was).
    """
    say = log or (lambda m: _say(progress, m))
    if n_boot < 0:
        raise GliomagenError(f"--bootstrap {n_boot}: must be >= 0")
    if n_judge < 0:
        raise GliomagenError(f"--judge {n_judge}: must be >= 0")
    if not 0.0 < judge_truncation <= 1.0:
        raise GliomagenError(f"--judge-truncation {judge_truncation}: must be in (0, 1]")
    if n_judge and checkpoint is None:
        raise GliomagenError(f"--judge {n_judge}: needs --checkpoint (the generator to judge)")
    out = Path(out)
    check_out(out)
    cache = Path(cache_dir) if cache_dir else None
    dev = resolve_device(device)
    judged = prepare(checkpoint, judge_by, dev) if n_judge and checkpoint is not None else None
    real_set, train_set, syn_set = resolve_sets(real, synthetic, train, cache, progress)
    if judged is not None:
        check_volumes(train_set)
    say(f"real: {real_set.name} ({len(real_set)} cases); train: {train_set.name} ({len(train_set)}); "
        f"synthetic: {syn_set.name} ({len(syn_set)})")  # fmt: skip
    options = SuiteOptions(
        extractor=extractor, weights=None if weights is None else str(weights), probe=probe_options,
        slice_size=slice_size, batch_size=batch_size, n_pairs=n_pairs, seed=seed, n_boot=n_boot,
    )  # fmt: skip
    ref = build_reference(real_set, train_set, options, cache_dir=cache, device=dev, log=say)
    measured = measure(ref, syn_set, log=say)
    reconstruction = None
    if checkpoint is not None:
        say("reconstruction")
        reconstruction = reconstruct(
            checkpoint, real_set, n_cases=n_reconstruct, steps=reconstruct_steps, seed=seed,
            device=dev,
        )  # fmt: skip
    judge = None
    if judged is not None:
        judge = judge_section(
            judged, train_set, n_judge, seed, batch_size, log=say, psi=judge_truncation
        )
    with staged_report(out) as folder:
        say("montages")
        montages = write_montages(
            folder, groups(ref, syn_set), real_set, syn_set, n_montage, seed,
            channel_names(real_set.shape[0]),
        )  # fmt: skip
        metrics = clean_json({
            "format_version": METRICS_FORMAT,
            "gliomagen_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "inputs": _inputs(ref, syn_set, checkpoint, run),
            "settings": {"bootstrap": n_boot, "seed": seed, "n_pairs": n_pairs, "ci_level": 0.95, "device": str(dev)},
            "extractor": ref.extractor.info(),
            **{k: measured[k] for k in MEASURED},
            "montages": montages, "reconstruction": reconstruction, "conditioning_judge": judge,
            "curves": read_curves(Path(run)) if run is not None else None,
        })  # fmt: skip
        say("writing metrics.json")
        write_json(folder / "metrics.json", metrics)
        if finish is not None:
            finish(folder, metrics)
    return metrics


def _inputs(
    ref: Reference,
    syn: CaseSet,
    checkpoint: str | os.PathLike[str] | None,
    run: str | os.PathLike[str] | None,
) -> dict[str, Any]:
    """The ``inputs`` section of ``metrics.json``: the three sets, the grid, the checkpoint, the run."""
    real, train = ref.real, ref.train
    return {
        "real": {"name": real.name, "n": len(real)},
        "train": {"name": train.name, "n": len(train)},
        "synthetic": {"name": syn.name, "n": len(syn)},
        "grid": list(real.spatial), "spacing_mm": list(real.spacing_mm),
        "modalities": channel_names(real.shape[0]), "conditions": list(real.categorical),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "run": str(Path(run).resolve()) if run else None,
    }  # fmt: skip
