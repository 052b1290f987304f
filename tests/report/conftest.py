"""Fixtures of the report tests: one small evaluation (with a run folder) shared by the module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from report_run_folder import write_run


def _volumes() -> ModuleType:
    name = "gliomagen_test_synthetic_volumes"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "evaluation" / "synthetic_volumes.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(autouse=True)
def _one_thread_and_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("GLIOMAGEN_CACHE", str(tmp_path_factory.getbasetemp() / "gliomagen-cache"))


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """``(report folder, run folder, metrics)`` of a tiny evaluation at 16^3."""
    from gliomagen.evaluation.cases import CaseSet
    from gliomagen.evaluation.probe import ProbeOptions
    from gliomagen.report.html import evaluate_report

    vol = _volumes()
    root = tmp_path_factory.mktemp("evaluated")
    (root / "run").mkdir()
    run = write_run(root / "run")

    def make(n: int, seed: int, prefix: str) -> CaseSet:
        imgs, masks, ids, labels = vol.make_cohort(n, size=16, seed=seed, prefix=prefix)
        return CaseSet.from_arrays(
            imgs, masks, case_ids=ids, labels=labels, name=prefix, spacing_mm=(10.0,) * 3
        )

    out = run / "report"
    metrics = evaluate_report(
        make(8, 2, "REAL"), make(8, 3, "SYN"), out, train=make(12, 1, "TRAIN"), run=run,
        probe_options=ProbeOptions(size=16, width=4, steps=20), n_boot=10, n_pairs=6, n_montage=2,
    )  # fmt: skip
    return out, run, metrics
