"""The metric suite: one reference per sets and options (cached on disk), one measure step whose
numbers are those of ``evaluate`` and of validation alike."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from gliomagen.errors import GliomagenError
from gliomagen.evaluation import suite
from gliomagen.evaluation.cache import set_identity
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.probe import ProbeOptions

TINY = ProbeOptions(size=16, width=4, steps=20)


def _set(volumes: ModuleType, n: int, seed: int, prefix: str) -> CaseSet:
    imgs, masks, ids, labels = volumes.make_cohort(n, size=16, seed=seed, prefix=prefix)
    return CaseSet.from_arrays(
        imgs, masks, case_ids=ids, labels=labels, name=prefix, spacing_mm=(10.0, 10.0, 10.0)
    )


def _memmapped(cases: CaseSet, folder: Path) -> CaseSet:
    """The same cases read from ``.npy`` memory maps (as a store's arrays are)."""
    assert cases.images is not None and cases.masks is not None
    np.save(folder / f"{cases.name}-images.npy", cases.images)
    np.save(folder / f"{cases.name}-masks.npy", cases.masks)
    return CaseSet(
        name=cases.name, case_ids=cases.case_ids, labels=cases.labels, shape=cases.shape,
        images=np.load(folder / f"{cases.name}-images.npy", mmap_mode="r"),
        masks=np.load(folder / f"{cases.name}-masks.npy", mmap_mode="r"),
        spacing_mm=cases.spacing_mm, categorical=list(cases.categorical),
    )  # fmt: skip


def test_reference_is_cached_per_sets_and_options(volumes: ModuleType, tmp_path: Path) -> None:
    real = _memmapped(_set(volumes, 6, 2, "REAL"), tmp_path)
    train = _memmapped(_set(volumes, 10, 1, "TRAIN"), tmp_path)
    syn = _set(volumes, 6, 3, "SYN")
    options = suite.SuiteOptions(probe=TINY, n_pairs=6, n_boot=5)
    cache = tmp_path / "cache"
    first = suite.build_reference(real, train, options, cache_dir=cache)
    assert not first.cached and first.path is not None and first.path.parent == cache / "reference"
    again = suite.build_reference(real, train, options, cache_dir=cache)
    assert again.cached and again.path == first.path
    for name in ("features", "coarse", "hist"):
        np.testing.assert_array_equal(
            getattr(again.real_scan, name), getattr(first.real_scan, name)
        )
    for key, value in first.real_nn.items():
        np.testing.assert_array_equal(again.real_nn[key], value)
    assert again.real_diversity == first.real_diversity
    assert suite.measure(again, syn) == suite.measure(first, syn)  # the same numbers from the cache
    # other options or other data: another key; a damaged file is computed again
    other = suite.build_reference(
        real, train, suite.SuiteOptions(probe=TINY, n_pairs=4), cache_dir=cache
    )
    assert other.path != first.path and not other.cached
    assert first.path is not None
    first.path.write_bytes(b"not an npz")
    again = suite.build_reference(real, train, options, cache_dir=cache)
    assert not again.cached and again.real_diversity == first.real_diversity
    # a rewritten file is another set; a set read through a dataset has no identity
    before = set_identity(real)
    st = (tmp_path / "REAL-masks.npy").stat()
    os.utime(tmp_path / "REAL-masks.npy", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert set_identity(real) != before
    assert set_identity(CaseSet("ds", ["a"], [{}], (4, 2, 2, 2), dataset=[None])) is None


def test_validation_and_evaluate_agree_on_shared_numbers(
    volumes: ModuleType, tmp_path: Path
) -> None:
    """Validation's summary (its own options) reads the same figures that evaluate reports."""
    real, train, syn = (
        _set(volumes, 6, 2, "REAL"),
        _set(volumes, 10, 1, "TRAIN"),
        _set(volumes, 6, 3, "SYN"),
    )
    syn.categorical = train.categorical = list(real.categorical)
    evaluate_options = suite.SuiteOptions(probe=TINY, n_pairs=6, n_boot=5)
    validation_options = suite.SuiteOptions(
        probe=TINY, n_pairs=6, kid_subsets=50, by_condition=False, floor=False,
        structure=tuple(suite.channel_names(4)),
    )  # fmt: skip
    full = suite.measure(
        suite.build_reference(real, train, evaluate_options, cache_dir=tmp_path), syn
    )
    ref = suite.build_reference(real, train, validation_options, cache_dir=tmp_path)
    measured = suite.measure(ref, syn, strict=False)
    record = suite.summary(ref, measured)
    overall = full["distances"]["all"]["synthetic"]
    assert record["fd"] == pytest.approx(overall["fd"]["value"], rel=1e-12)
    assert record["kid"] == pytest.approx(
        overall["kid"]["value"], rel=1e-12
    )  # 6 vs 6: all subsets equal
    assert record["diversity"] == full["diversity"]["all"]["synthetic"]["mean"]
    assert record["diversity_real"] == full["diversity"]["all"]["real"]["mean"]
    assert record["memorised"] == full["memorisation"]["n_flagged"]
    accuracy = [e["synthetic"]["accuracy"] for e in full["fidelity"].values() if "synthetic" in e]
    assert record["fidelity"] == pytest.approx(np.mean(accuracy))
    assert record["mask"] is not None and set(record["mask_groups"]) == {
        "cohort=GLI",
        "cohort=SSA",
        "grade=HGG",
        "grade=LGG",
    }
    assert list(measured["groups"]) == ["all"] and "floor" not in measured["distances"]["all"]
    # non-finite sample features: validation gets a record that says so, evaluate an error
    bad = CaseSet.from_arrays(np.full_like(np.asarray(syn.images), np.nan), syn.masks, name="G_ema")
    note = suite.summary(ref, suite.measure(ref, bad, strict=False))
    assert note["fd"] is None and note["note"] == "non-finite features (G_ema gives NaN/inf)"
    with pytest.raises(GliomagenError, match="G_ema: the probe extractor gave NaN/inf features"):
        suite.measure(ref, bad)
