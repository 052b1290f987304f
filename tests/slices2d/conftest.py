"""Shared, built-once inputs of the 2D slice-mode tests: a tiny phantom cohort, its slice store,
a 2D model trained for a few steps and a cohort of slices generated from it (all 16x16)."""

from __future__ import annotations

from pathlib import Path

import pytest
from slices2d_helpers import SIDE, run_cli, tiny_2d


@pytest.fixture(autouse=True)
def _one_thread_and_private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One CPU thread (shared machine) and a probe cache under the session's temp folder."""
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("GLIOMAGEN_CACHE", str(tmp_path_factory.getbasetemp() / "gliomagen-cache"))


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five 2 mm phantom cases (3 GLI, 2 SSA) with clinical.csv."""
    from gliomagen.data.phantoms import generate_cohort

    out = tmp_path_factory.mktemp("slices2d") / "phantoms"
    return generate_cohort(out, {"GLI": 3, "SSA": 2}, resolution=2, seed=1, progress=False)


@pytest.fixture(scope="session")
def slice_store(phantoms: Path) -> Path:
    """``prepare --slices --size 16`` of the phantoms (every view, default brain threshold)."""
    out = phantoms.parent / "S2"
    code, _, err = run_cli("prepare", phantoms, "--labels", phantoms / "clinical.csv", "--out", out,
                           "--slices", "--size", SIDE, "--qc", 1)  # fmt: skip
    assert code == 0, err
    return out


@pytest.fixture(scope="session")
def run2d(slice_store: Path) -> Path:
    """A run folder: ``small-data-2d`` (tiny) trained 3 steps on the slice store."""
    from gliomagen.training import train

    run = slice_store.parent / "run2d"
    train(tiny_2d("train.steps=3"), slice_store, run, progress=False)
    return run


@pytest.fixture(scope="session")
def cohort2d(run2d: Path) -> Path:
    """Six generated slices (the views in turn) from :func:`run2d`."""
    out = run2d.parent / "gen2d"
    code, _, err = run_cli("generate", "--checkpoint", run2d, "--n", 6, "--out", out, "--quiet")
    assert code == 0, err
    return out
