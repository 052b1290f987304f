"""``generate_cohort``: a checkpoint -> a synthetic BraTS-layout cohort on disk.

Memory is bounded by one batch: the generator runs on ``batch_size`` cases, each case is
post-processed (brain mask, labels, resampling, scanner intensities) and written on its own, then
the next batch is generated. The same checkpoint, seed and conditions give byte-identical files on
the CPU: ``z`` and the noise inputs come from the case seed alone, the CPU runs the generator one
case at a time (batched float kernels round differently for different batch sizes), and gzip
headers carry no time stamp. So a case's files depend only on the checkpoint, its seed and its
conditions: ``--seed 17 --n 1`` (or ``--seeds 17``) rewrites case 17 of a ``--seed 0`` cohort bit
for bit, whatever ``--batch-size`` or ``--n`` were, and under the same id (``PREFIX-s000017``, see
:mod:`gliomagen.generation.ids`). On a GPU the cases run in batches of ``batch_size``.

The cohort is written under a temporary name beside ``out`` and renamed when complete
(:mod:`gliomagen.generation.staging`): ``out`` holds a whole cohort or nothing.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gliomagen.errors import GliomagenError
from gliomagen.generation.covariates import covariate_columns, fill_covariates, mask_covariates
from gliomagen.generation.fill import FilledPlan, case_table, check_unset, fill_unset
from gliomagen.generation.ids import case_id, check_prefix, cohort_seeds, default_prefix
from gliomagen.generation.intensity import (
    apply_brain,
    brain_mask,
    mask_labels,
    scale_to_range,
    scanner_ranges,
)
from gliomagen.generation.manifest import cohort_manifest
from gliomagen.generation.plan import encode_plan, plan_conditions
from gliomagen.generation.sampling import anatomy_layer, case_seeds, check_truncation
from gliomagen.generation.slices2d import generate_slices, is_slice_source
from gliomagen.generation.source import GeneratorSource, load_source, select_latent_prior
from gliomagen.generation.space import OutputGrid, output_grid
from gliomagen.generation.staging import check_out, staged_cohort
from gliomagen.generation.synthesis import synthesize_batches
from gliomagen.generation.writer import (
    clinical_row,
    requested_conditions,
    write_case,
    write_clinical,
    write_manifest,
)

SPACES = ("brats", "native")
FORMATS = ("float32", "int16")
NOISE_MODES = ("const", "random", "none")


def check_mix(mix: Mapping[str, int] | Sequence[int] | None, num_ws: int) -> tuple[int, int] | None:
    """``(mix_seed, mix_layer)`` from ``{"seed", "layer"}`` or a pair; the layer must be in ``1..num_ws-1``."""
    if mix is None:
        return None
    seed, layer = (mix["seed"], mix["layer"]) if isinstance(mix, Mapping) else tuple(mix)
    if not 1 <= int(layer) < int(num_ws):
        raise GliomagenError(
            f"--mix-layer {layer}: must be between 1 and {num_ws - 1} (this generator has {num_ws} style inputs)"
        )
    return int(seed), int(layer)


def check_anatomy(
    anatomy_from: Mapping[str, Any] | None, layer: int | None, schema: Any, G: Any
) -> tuple[dict[str, Any], int] | None:
    """``(conditions, layer)`` of ``--anatomy-from`` / ``--anatomy-layer``, checked against the
    model: known conditions and values, a layer in ``1..num_ws-1`` (default
    :func:`~gliomagen.generation.sampling.anatomy_layer`)."""
    if not anatomy_from:
        if layer is not None:
            raise GliomagenError("--anatomy-layer: needs --anatomy-from")
        return None
    for name, value in anatomy_from.items():
        if name not in schema:
            raise GliomagenError(
                f"--anatomy-from {name}={value}: {name!r} is not a condition of this model "
                f"(known: {', '.join(schema.names) or 'none'})"
            )
        try:
            schema[name].encode(value)
        except GliomagenError as exc:
            raise GliomagenError(f"--anatomy-from {name}={value}: {exc}") from None
    num_ws = int(G.num_ws)
    lay = anatomy_layer(G) if layer is None else int(layer)
    if not 1 <= lay <= num_ws - 1:
        raise GliomagenError(
            f"--anatomy-layer {lay}: must be between 1 and {num_ws - 1} (this generator has {num_ws} style inputs)"
        )
    return dict(anatomy_from), lay


def check_options(
    truncation: float, batch_size: int, space: str, fmt: str, noise_mode: str
) -> None:
    """Raise a one-line GliomagenError for an option out of range (warn for ``truncation > 1``)."""
    check_truncation(truncation)
    if int(batch_size) < 1:
        raise GliomagenError(f"--batch-size {batch_size}: must be >= 1")
    if space not in SPACES:
        raise GliomagenError(f"--space {space!r}: must be one of {', '.join(SPACES)}")
    if fmt not in FORMATS:
        raise GliomagenError(f"--format {fmt!r}: must be one of {', '.join(FORMATS)}")
    if noise_mode not in NOISE_MODES:
        raise GliomagenError(f"noise mode {noise_mode!r}: must be one of {', '.join(NOISE_MODES)}")


def finish_case(
    images: np.ndarray,
    logits: np.ndarray,
    grid: OutputGrid,
    ranges: Sequence[tuple[float, float]],
    fmt: str,
) -> tuple[np.ndarray, np.ndarray]:
    """One case from network output to file arrays.

    Args:
        images: ``[C, D, H, W]`` in [-1, 1] on the generator's grid.
        logits: ``[4, D, H, W]`` mask logits.
        grid: output space.
        ranges: scanner ``(lo, hi)`` per channel.
        fmt: ``float32`` or ``int16``.

    Returns:
        ``(images [C, *grid.shape] fmt, seg [*grid.shape] uint8)``.
    """
    brain = brain_mask(images)  # [D, H, W]
    seg = mask_labels(logits, brain)  # [D, H, W]
    # Scale on the small grid, then resample (the scaling is affine, so the two commute).
    scaled = grid.images(
        scale_to_range(images, ranges), fill=np.array([r[0] for r in ranges], np.float32)
    )
    brain_g = grid.labels(brain.astype(np.uint8)).astype(bool)  # [*grid.shape]
    seg_g = grid.labels(seg)
    seg_g[~brain_g] = 0
    return apply_brain(scaled, brain_g, fmt), seg_g


def generate_cohort(
    checkpoint: Path | str,
    out: Path | str,
    n: int | None = None,
    conditions: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    conditions_csv: Path | str | None = None,
    truncation: float = 1.0,
    seed: int = 0,
    batch_size: int = 4,
    device: str = "cpu",
    space: str | None = None,
    fmt: str = "float32",
    mix: Mapping[str, int] | Sequence[int] | None = None,
    progress: bool = True,
    noise_mode: str = "random",
    command_line: str | None = None,
    latent_prior: str | None = None,
    seeds: Sequence[int] | None = None,
    id_prefix: str | None = None,
    unset: str = "drawn",
    anatomy_from: Mapping[str, Any] | None = None,
    anatomy_layer: int | None = None,
) -> Path:
    """Generate synthetic cases and write them as a BraTS 2023-layout cohort (a 2D model:
    slices, see :func:`gliomagen.generation.slices2d.generate_slices`).

    Args:
        checkpoint: a gliomagen training checkpoint, or a run folder (its newest checkpoint).
        out: output folder (must not exist, or be empty; written whole at the end).
        n: number of cases, with seeds ``seed, seed + 1, ...`` (or give ``seeds``).
        conditions: one ``{field: value}`` for all cases, or weighted rows (see
            :mod:`gliomagen.generation.plan`); the fields a row leaves unset follow ``unset``.
        conditions_csv: a CSV of weighted condition rows (``--conditions-csv``).
        truncation: psi >= 0; pulls each case's ``w`` toward the mean ``w`` of its own condition
            (above 1: extrapolation, with a warning).
        seed: case ``i`` uses seed ``seed + i``.
        batch_size: cases per generator call.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        space: ``brats`` (the training data's 1 mm file grid, e.g. BraTS's 240x240x155; the
            default for 3D) or ``native`` (the generator's grid with its true spacing; the only
            one for 2D).
        fmt: ``float32`` or ``int16`` image files (the mask is always uint8).
        mix: style mixing ``{"seed": S, "layer": L}`` or ``(S, L)``: styles from layer ``L`` on
            come from seed ``S + i``.
        progress: show a progress bar on stderr.
        noise_mode: ``random`` (default; seeded per case, so still reproducible), ``const``
            (the generator's fixed noise buffers) or ``none``.
        command_line: recorded in the manifest (default: this process's ``sys.argv``).
        latent_prior: ``None`` (the checkpoint's), ``"normal"`` (``z ~ N(0, I)``) or ``"fitted"``
            (the checkpoint's fit to its encoded training cases; an error without one); see
            :func:`gliomagen.generation.source.select_latent_prior`.
        seeds: one case per seed, in this order (instead of ``n`` and ``seed``).
        id_prefix: case ids are ``ID_PREFIX-s000123`` (default ``SYN-`` and 8 hex digits of the
            checkpoint's SHA-256; see :mod:`gliomagen.generation.ids`).
        unset: ``drawn`` (default): each case takes the fields its row leaves unset from a
            training case drawn given the fields it sets (:mod:`gliomagen.generation.fill`; a
            checkpoint without a table of training conditions leaves them unknown, and the
            manifest's ``conditions_drawn`` says so); ``blended``: the same, each number between
            two such training cases; ``unknown``: they stay unknown (the 'unknown' slot, the
            training mean).
        anatomy_from: ``{field: value}``, e.g. ``{"cohort": "GLI"}``: the coarse styles (tumour
            position and extent, head shape) of each case come from its own seed under its
            conditions with these values instead; the rest (contrast, texture, the scanner's
            look) follow the case's own conditions (3D models; see
            :mod:`gliomagen.generation.sampling`).
        anatomy_layer: the crossover style input of ``anatomy_from`` (default: the coarsest
            level's, :func:`~gliomagen.generation.sampling.anatomy_layer`).

    Returns:
        The cohort folder.

    Raises:
        GliomagenError: bad options, checkpoint, conditions or output folder, or a failed write;
            nothing is left at ``out`` then.
    """
    check_options(truncation, batch_size, space or "native", fmt, noise_mode)
    check_unset(unset)
    seed_list = cohort_seeds(n, seed, seeds)
    if id_prefix is not None:
        check_prefix(id_prefix)
    source = load_source(checkpoint, device)
    select_latent_prior(source, latent_prior)
    cmd = command_line if command_line is not None else _this_command_line()
    prefix = id_prefix or default_prefix(source.sha256)
    mix_pair = check_mix(mix, source.G.num_ws)
    anatomy = check_anatomy(anatomy_from, anatomy_layer, source.schema, source.G)
    if is_slice_source(source):  # a 2D model: PNG and 2-D NIfTI slices (generation.slices2d)
        if anatomy is not None:
            raise GliomagenError("--anatomy-from: 3D models only (this checkpoint is a 2D model)")
        if space == "brats":
            raise GliomagenError(
                "--space brats: a 2D model writes slices on its own grid; use --space native"
            )
        return generate_slices(
            source, out, seed_list, conditions, conditions_csv, truncation, batch_size, fmt,
            mix_pair, progress, noise_mode, cmd, id_prefix=prefix, unset=unset,
        )  # fmt: skip
    plan = plan_conditions(
        source.schema, len(seed_list), conditions, Path(conditions_csv) if conditions_csv else None
    )
    filled = fill_unset(
        source.schema, plan, seed_list, case_table(source.G, source.schema), unset
    )
    requested = requested_conditions(conditions, conditions_csv)
    return _generate_volumes(
        source, Path(out), seed_list, prefix, filled, requested, truncation=truncation,
        batch_size=batch_size, space=space or "brats", fmt=fmt, mix=mix_pair, progress=progress,
        noise_mode=noise_mode, command_line=cmd, anatomy=anatomy,
    )  # fmt: skip


def _this_command_line() -> str:
    """This process's command line as a shell would take it (program name without its folder)."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])


def _generate_volumes(
    source: GeneratorSource,
    out: Path,
    seeds: list[int],
    prefix: str,
    filled: FilledPlan,
    requested: Any,
    *,
    truncation: float,
    batch_size: int,
    space: str,
    fmt: str,
    mix: tuple[int, int] | None,
    progress: bool,
    noise_mode: str,
    command_line: str,
    anatomy: tuple[dict[str, Any], int] | None = None,
) -> Path:
    """The 3D part of :func:`generate_cohort`: one case per seed, written whole into ``out``."""
    plan = filled.plan
    cat, cont = encode_plan(source.schema, plan)  # [n, n_cat], [n, n_cont]
    coarse = None
    if anatomy is not None:  # the same plan with the anatomy's values, for the coarse styles
        coarse = (*encode_plan(source.schema, [{**row, **anatomy[0]} for row in plan]), anatomy[1])
    grid = output_grid(source.meta, space)
    ranges = scanner_ranges(source.modalities, source.meta)
    out = check_out(out)
    mix_seeds = case_seeds(mix[0], len(seeds)) if mix else None
    batches = synthesize_batches(
        source, seeds, cat, cont, truncation=truncation, batch_size=batch_size,
        mix_seeds=mix_seeds, mix_layer=mix[1] if mix else None, noise_mode=noise_mode, anatomy=coarse,
    )  # fmt: skip
    ids = [case_id(prefix, s) for s in seeds]
    with staged_cohort(out) as tmp:
        rows = _write_cases(
            tmp, source, batches, plan, ids, seeds, mix_seeds, grid, ranges, fmt, progress
        )
        write_clinical(tmp, rows, source.schema.names, covariate_columns(source.schema.names))
        manifest = cohort_manifest(
            source, id_prefix=prefix, case_ids=ids, seeds=seeds, mix=mix, truncation=truncation,
            space=space, fmt=fmt, noise_mode=noise_mode, grid=grid, ranges=ranges,
            requested=requested, command_line=command_line,
            conditions_drawn=filled.record(ids),
            anatomy=None if anatomy is None else {"conditions": anatomy[0], "layer": anatomy[1]},
        )  # fmt: skip
        write_manifest(tmp, manifest)
    return out


def _write_cases(
    out_dir: Path,
    source: GeneratorSource,
    batches: Iterable[tuple[list[int], np.ndarray, np.ndarray]],
    plan: Sequence[Mapping[str, Any]],
    ids: Sequence[str],
    seeds: Sequence[int],
    mix_seeds: Sequence[int] | None,
    grid: OutputGrid,
    ranges: Sequence[tuple[float, float]],
    fmt: str,
    progress: bool,
) -> list[dict[str, Any]]:
    """Finish and write each generated case as it comes (:func:`finish_case`, ``write_case``).

    Returns:
        The ``clinical.csv`` rows of the cases, in order, with the covariates measured on each
        mask (:mod:`gliomagen.generation.covariates`).
    """
    rows: list[dict[str, Any]] = []
    bar = tqdm(
        total=len(seeds), unit="case", desc="generate", disable=not progress, file=sys.stderr
    )
    try:
        for idx, images, logits in batches:  # [b, 4, *S] each
            for j, i in enumerate(idx):
                vols, seg = finish_case(images[j], logits[j], grid, ranges, fmt)
                write_case(out_dir, ids[i], vols, seg, grid.affine, source.modalities)
                measured = mask_covariates(seg, np.any(vols != 0, axis=0), grid.affine)
                conditions = fill_covariates(plan[i], measured)
                mix_seed = mix_seeds[i] if mix_seeds else None
                rows.append(clinical_row(ids[i], seeds[i], mix_seed, conditions))
                bar.update(1)
            del images, logits
    finally:
        bar.close()
    return rows
