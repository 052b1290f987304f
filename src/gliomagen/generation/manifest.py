"""``manifest.json`` of a synthetic cohort: what was generated, from which checkpoint, and how.

Shared by the 3D cohort (:mod:`gliomagen.generation.cohort`) and the 2D slices
(:mod:`gliomagen.generation.slices2d`, which adds its own keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gliomagen import __version__
from gliomagen.generation.sampling import MEAN_SAMPLES, MEAN_SEED, case_seeds
from gliomagen.generation.source import GeneratorSource
from gliomagen.generation.space import OutputGrid


def checkpoint_record(source: GeneratorSource) -> dict[str, Any]:
    """The manifest's ``checkpoint``: its path and sha256, plus ``parent_sha256`` (and
    ``parent``, its path then) when the model was fine-tuned from another (``train --init``)."""
    record = {"path": str(source.path), "sha256": source.sha256}
    parent = source.meta.get("parent") or {}
    if parent.get("parent_sha256"):
        record["parent"] = str(parent.get("parent", ""))
        record["parent_sha256"] = str(parent["parent_sha256"])
    return record


def cohort_manifest(
    source: GeneratorSource,
    *,
    id_prefix: str,
    case_ids: list[str],
    seeds: list[int],
    mix: tuple[int, int] | None,
    truncation: float,
    space: str,
    fmt: str,
    noise_mode: str,
    grid: OutputGrid,
    ranges: Sequence[tuple[float, float]],
    requested: Any,
    command_line: str,
    conditions_drawn: dict[str, Any] | str,
    anatomy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest dict of a cohort (``format_version`` 1).

    Args:
        source: the loaded generator (checkpoint path and checksum, latent prior, modalities).
        id_prefix: the case id prefix (:mod:`gliomagen.generation.ids`).
        case_ids: the case ids, in order.
        seeds: the case seeds, in the same order.
        mix: ``(mix_seed, mix_layer)`` or ``None``.
        truncation: psi.
        space: ``brats`` or ``native``.
        fmt: ``float32`` or ``int16``.
        noise_mode: ``random``, ``const`` or ``none``.
        grid: the output grid (shape, spacing, affine).
        ranges: scanner ``(lo, hi)`` per modality.
        requested: the requested conditions (:func:`gliomagen.generation.writer.requested_conditions`).
        command_line: the command that generated the cohort.
        conditions_drawn: how the fields the request leaves unset were set
            (:meth:`gliomagen.generation.fill.FilledPlan.record`).
        anatomy: ``{"conditions", "layer"}`` of ``--anatomy-from``, or ``None``.

    Returns:
        A JSON-ready dict (see :func:`gliomagen.generation.writer.write_manifest`).
    """
    return {
        "format_version": 1,
        "gliomagen_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "command_line": command_line,
        "checkpoint": checkpoint_record(source),
        "n_cases": len(case_ids),
        "id_prefix": id_prefix,
        "case_ids": case_ids,
        "seeds": seeds,
        "mix": None
        if mix is None
        else {"seed": mix[0], "layer": mix[1], "seeds": case_seeds(mix[0], len(case_ids))},
        "truncation": {
            "psi": float(truncation),
            "center": "per-condition mean w",
            "mean_samples": MEAN_SAMPLES,
            "mean_seed": MEAN_SEED,
        },
        "noise_mode": noise_mode,
        # z ~ N(0, I), or moved onto the Gaussian (mixture) fitted to the encoded training cases
        "latent_prior": "fitted" if source.G.mapping.prior_is_fitted else "normal",
        "latent_prior_components": source.G.mapping.prior_components,
        "conditions_requested": requested,
        # unset fields: from training cases given the set ones, or why they stay unknown
        "conditions_drawn": conditions_drawn,
        # the coarse styles (before "layer") under these conditions instead of the case's own
        "anatomy_from": anatomy,
        "space": space,
        "shape": list(grid.shape),
        "spacing_mm": [float(s) for s in grid.spacing],
        "affine": np.asarray(grid.affine).round(6).tolist(),
        "format": fmt,
        "modalities": source.modalities,
        "intensity_ranges": {m: list(r) for m, r in zip(source.modalities, ranges, strict=True)},
        "mask_labels": {"0": "background", "1": "NCR", "2": "ED", "3": "ET"},
    }
