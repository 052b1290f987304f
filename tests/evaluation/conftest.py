"""Fixtures of the evaluation tests: structured synthetic cohorts and a private probe cache."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
