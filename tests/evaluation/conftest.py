"""Fixtures of the evaluation tests: structured synthetic cohorts and a private probe cache."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch


def _load_volumes() -> ModuleType:
    name = "gliomagen_test_synthetic_volumes"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("synthetic_volumes.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def volumes() -> ModuleType:
    """The synthetic-volume helpers (``make_cohort``, ``degrade``)."""
    return _load_volumes()


@pytest.fixture(autouse=True)
def _one_thread_and_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("GLIOMAGEN_CACHE", str(tmp_path_factory.getbasetemp() / "gliomagen-cache"))


@pytest.fixture(scope="session")
def phantom_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 42 phantom cases (GLI 30, SSA 12; HGG/LGG) on a 24^3 grid, built once per session."""
    phantoms = pytest.importorskip("gliomagen.data.phantoms")
    from gliomagen.data.store import build_store

    root = tmp_path_factory.mktemp("phantoms")
    with torch.random.fork_rng(devices=[]):
        phantoms.generate_cohort(
            root / "cases", {"GLI": 30, "SSA": 12}, resolution=2, seed=0, progress=False
        )
    build_store(
        [root / "cases"],
        root / "store",
        labels_csv=root / "cases" / "clinical.csv",
        size=24,
        progress=False,
        qc_cases=0,
    )
    return root / "store"


@pytest.fixture(scope="session")
def phantom_splits(phantom_store: Path) -> tuple[Any, Any]:
    """``(train 28 cases, held-out 14 cases)`` of the phantom store, stratified by cohort (every third
    case of each cohort, in a seeded order, is held out)."""
    from gliomagen.evaluation.inputs import from_store

    cases = from_store(phantom_store, None, "phantoms")
    shuffled = np.random.default_rng(0).permutation(len(cases))
    order = sorted(
        shuffled, key=lambda i: str(cases.labels[i]["cohort"])
    )  # stable: shuffled within cohort
    held = np.array(order[::3])
    train = np.array(sorted(set(range(len(cases))) - set(held.tolist())))
    return cases.subset(train, "phantoms:train"), cases.subset(held, "phantoms:held-out")
