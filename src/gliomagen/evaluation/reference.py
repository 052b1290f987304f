"""The real side of the metric suite (:mod:`gliomagen.evaluation.suite`), computed once and cached.

:func:`build_reference` builds the feature extractor (the probe trains on the training cases),
walks the held-out real and the training cases once (:func:`~gliomagen.evaluation.scan.scan`:
features and coarse copies; the held-out cases' mask statistics and tissue histograms; the
training cases' tumour structure and tissue contrasts when ``structure`` is set), finds the
held-out cases' nearest training cases (the memorisation thresholds) and measures their diversity
per condition. The result is cached as ``cache_dir/reference/<hash>.npz``
(:mod:`~gliomagen.evaluation.cache`); the hash covers :data:`REFERENCE_FORMAT`, the
:class:`SuiteOptions`, the extractor (the probe's key hashes its training inputs) and both sets
(ids, labels, grid, data files). Sets read through a dataset are not cached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen import MODALITIES
from gliomagen.evaluation import audits
from gliomagen.evaluation.cache import (
    cache_key,
    default_cache_dir,
    load_arrays,
    not_cached,
    save_arrays,
    set_identity,
)
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.features import Extractor, build_extractor
from gliomagen.evaluation.probe import ProbeOptions
from gliomagen.evaluation.scan import Scan, check_finite, scan

REFERENCE_FORMAT = 1
ALL = "all"
_NN = "real_nn_"


@dataclass(frozen=True)
class SuiteOptions:
    """What the suite computes (every field enters the reference's cache key).

    Args:
        extractor: ``probe`` | ``medicalnet`` | ``slices``.
        weights: weights file of ``medicalnet`` / ``slices``.
        probe: options of the probe network (``None``: its defaults).
        slice_size: ``slices``: resize every slice to this square side first.
        batch_size: cases per batch when reading and extracting.
        n_pairs: MS-SSIM pairs per set and condition (diversity).
        seed: seed of every random choice.
        n_boot: bootstrap resamples of the intervals (0: none).
        kid_subsets: KID subsets of the point estimate.
        by_condition: break every figure down by the held-out cases' categorical conditions
            (``False``: ``all`` only).
        floor: also measure the training cases against the held-out ones (the FD/KID/PRDC floor).
        structure: the modality names: measure the tumour-structure distance of the samples
            against the training cases (validation's ``mask``); ``None``: not.
    """

    extractor: str = "probe"
    weights: str | None = None
    probe: ProbeOptions | None = None
    slice_size: int | None = None
    batch_size: int = 4
    n_pairs: int = 100
    seed: int = 0
    n_boot: int = 0
    kid_subsets: int = 100
    by_condition: bool = True
    floor: bool = True
    structure: tuple[str, ...] | None = None


def channel_names(n: int) -> list[str]:
    """Names of ``n`` image channels: the modalities (``t1n``, ...), else ``ch0``, ``ch1``, ..."""
    return list(MODALITIES)[:n] if n <= len(MODALITIES) else [f"ch{i}" for i in range(n)]


@dataclass
class Reference:
    """The real side of the suite (see the module docstring).

    Attributes:
        options: what it was computed with.
        real: the held-out real cases.
        train: the training cases.
        extractor: the feature extractor.
        real_scan: the held-out cases' :class:`~gliomagen.evaluation.scan.Scan`.
        train_scan: the training cases' scan.
        real_nn: the nearest training case of every held-out case
            (:func:`~gliomagen.evaluation.audits.nearest_training`).
        real_diversity: ``{condition: pairwise MS-SSIM of its held-out cases}``.
        path: the cache file (``None``: not cached).
        cached: whether it was read from that file.
    """

    options: SuiteOptions
    real: CaseSet
    train: CaseSet
    extractor: Extractor
    real_scan: Scan
    train_scan: Scan
    real_nn: dict[str, np.ndarray]
    real_diversity: dict[str, Any]
    path: Path | None = None
    cached: bool = False


def quiet(message: str) -> None:
    """A progress callback that says nothing."""


def build_reference(
    real: CaseSet,
    train: CaseSet,
    options: SuiteOptions,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    device: torch.device | str = "cpu",
    write: bool = True,
    log: Callable[[str], None] | None = None,
) -> Reference:
    """The reference of ``real`` against ``train``, from the cache or computed (and cached).

    Args:
        real: held-out real cases (their categorical conditions break figures down).
        train: real training cases (the probe trains on them).
        options: the suite's options.
        cache_dir: where the probe and the reference are cached (default
            :func:`~gliomagen.evaluation.cache.default_cache_dir`).
        device: where the extractor runs.
        write: write a computed reference to the cache.
        log: called with each progress message.

    Raises:
        GliomagenError: an extractor that cannot be built, or non-finite real features.
    """
    say = log or quiet
    cache = Path(cache_dir) if cache_dir is not None else None
    say(f"features: {options.extractor}")
    ex = build_extractor(
        options.extractor, train=train, weights=options.weights, probe_options=options.probe,
        cache_dir=cache, device=device, slice_size=options.slice_size,
    )  # fmt: skip
    path = _reference_path(real, train, options, ex, cache)
    arrays = load_arrays(path) if path is not None else None
    if arrays is not None:
        try:
            return _from_arrays(arrays, real, train, options, ex, path, cached=True)
        except (KeyError, ValueError):  # damaged: computed again and replaced
            pass
    arrays = _compute(real, train, options, ex, say)
    if path is not None and write:
        try:
            save_arrays(path, arrays)
        except OSError as exc:
            not_cached(path.parent.parent, exc)
    return _from_arrays(arrays, real, train, options, ex, path, cached=False)


def _extractor_identity(ex: Extractor) -> dict[str, Any]:
    info = ex.info()
    if "key" in info:  # the probe: a hash of its training inputs, labels and options
        return {"name": ex.name, "key": info["key"]}
    out = {k: v for k, v in info.items() if k != "dim"}
    if "weights" in info:
        st = Path(info["weights"]).stat()
        out.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    return out


def _reference_path(
    real: CaseSet, train: CaseSet, options: SuiteOptions, ex: Extractor, cache: Path | None
) -> Path | None:
    real_id, train_id = set_identity(real), set_identity(train)
    if real_id is None or train_id is None:
        return None
    key = cache_key({
        "format": REFERENCE_FORMAT, "options": asdict(options), "extractor": _extractor_identity(ex),
        "real": real_id, "train": train_id, "coarse": audits.COARSE_SIZE,
    })  # fmt: skip
    return (cache or default_cache_dir()) / "reference" / f"{key[:32]}.npz"


def _compute(
    real: CaseSet, train: CaseSet, o: SuiteOptions, ex: Extractor, say: Callable[[str], None]
) -> dict[str, np.ndarray]:
    """Scan both sets, the held-out cases' nearest training cases and diversity, as arrays."""
    say(f"scanning train: {train.name}")
    ts = scan(train, ex, o.batch_size, structure=o.structure)
    check_finite(ts, train, ex)
    say(f"scanning real: {real.name}")
    rs = scan(real, ex, o.batch_size, realism=True)
    check_finite(rs, real, ex)
    say("the held-out cases' nearest training cases and diversity")
    zt, zr = audits.standardise(ts.features, rs.features)
    nn = audits.nearest_training(real, zr, rs.coarse, train, zt, ts.coarse)
    positions = {ALL: np.arange(len(real)), **(real.groups() if o.by_condition else {})}
    diversity = {
        key: audits.pairwise_ms_ssim(real, pos, n_pairs=o.n_pairs, seed=o.seed, n_boot=o.n_boot)
        for key, pos in positions.items()
    }
    return {
        **ts.arrays("train_"), **rs.arrays("real_"), **{f"{_NN}{k}": v for k, v in nn.items()},
        "real_diversity": np.array(json.dumps(diversity)),
    }  # fmt: skip


def _from_arrays(
    arrays: Mapping[str, np.ndarray], real: CaseSet, train: CaseSet, options: SuiteOptions,
    ex: Extractor, path: Path | None, *, cached: bool,
) -> Reference:  # fmt: skip
    return Reference(
        options=options, real=real, train=train, extractor=ex,
        real_scan=Scan.from_arrays(arrays, "real_"), train_scan=Scan.from_arrays(arrays, "train_"),
        real_nn={k[len(_NN) :]: v for k, v in arrays.items() if k.startswith(_NN)},
        real_diversity=json.loads(str(arrays["real_diversity"])), path=path, cached=cached,
    )  # fmt: skip
