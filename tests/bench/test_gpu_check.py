"""benchmarks/gpu_check.sh and gpu_check.py (issue 23): the bench rows it needs run on the CPU,
the summary computes the checks from the rows, and the whole script runs with --tiny."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gliomagen.bench.workloads import GanStep, bench_config

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("default", []),  # its presence / focality / reconstruction terms need tables: stand-ins
        ("small-data", ["model.hierarchical=true", "model.low_res=16", "model.sub_volume=16"]),
    ],
)
def test_bench_step_runs_the_default_preset_and_the_hierarchical_mode(preset: str, overrides: list[str]) -> None:
    step = GanStep(bench_config(preset, 32 if overrides else 16, 2, overrides), torch.device("cpu"))
    before = [p.detach().clone() for p in step.G.parameters()]
    step()
    moved = sum(not torch.equal(a, b) for a, b in zip(before, step.G.parameters(), strict=True))
    assert moved > 0
    assert type(step.loss).__name__ == ("HierarchicalLoss" if overrides else "StyleGANLoss")


def _bench_file(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True)
    (folder / "bench-results.json").write_text(json.dumps({"results": rows}))


def test_summary_checks_from_rows(tmp_path: Path) -> None:
    mod = _module()
    _bench_file(tmp_path / "full", [
        {"kind": "train", "preset": "origin", "size": 128, "batch": 4, "step_s": 0.5, "volumes_per_s": 8.0, "flop_per_s": 4e14},
        {"kind": "naive_train", "preset": "origin", "size": 128, "batch": 4, "step_s": 1.0, "volumes_per_s": 4.0, "flop_per_s": 1e14},
        {"kind": "train", "preset": "default", "size": 128, "batch": 4, "error": "OutOfMemoryError: ..."},
    ])  # fmt: skip
    _bench_file(tmp_path / "base", [{"kind": "train", "preset": "small-data", "size": 32, "batch": 4, "step_s": 0.1}])
    _bench_file(tmp_path / "base-wide", [{"kind": "train", "preset": "small-data", "size": 32, "batch": 4, "step_s": 0.05}])
    _bench_file(tmp_path / "hier", [{"kind": "train", "preset": "small-data", "size": 128, "batch": 4, "step_s": 0.25}])
    (tmp_path / "smoke").mkdir()
    (tmp_path / "smoke" / "torchrun.rc").write_text("0\n")
    res = mod.summarise(tmp_path, "cpu", 16, tiny=True)
    assert res["checks"]["origin_vs_naive"] == pytest.approx(2.0)
    assert res["checks"]["hier_vs_full_base_step"] == pytest.approx(2.5)
    assert res["checks"]["hier_vs_full_same_widths_step"] == pytest.approx(5.0)
    assert res["checks"]["origin_peak_share"] is None  # no GPU: no datasheet peak
    assert res["passed"] == {"origin_peak_share": None, "origin_vs_naive": True, "hier_vs_full_base_step": True,
                             "hier_vs_full_same_widths_step": False, "torchrun": True}  # fmt: skip
    errors = [r["error"] for r in res["rows"] if r["error"]]
    assert errors == ["OutOfMemoryError: ..."]
    assert res["parity"]["rel_diff_G"] == 0.0  # fp32 twice on the CPU
    assert mod.gpu_peak("cpu") == (None, None)


@pytest.mark.slow
def test_gpu_check_script_tiny(tmp_path: Path) -> None:
    env = {**os.environ, "PY": sys.executable}
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--tiny", str(out)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "gpu-check.json").read_text())
    kinds = {(r["part"], r["kind"], r["preset"]) for r in res["rows"] if r["error"] is None}
    for need in [("full", "train", "origin"), ("full", "train", "default"), ("full", "naive_train", "origin"),
                 ("base", "train", "small-data"), ("base-wide", "train", "small-data"), ("hier", "train", "small-data"),
                 ("hier-big", "train", "small-data"), ("full-big", "train", "origin")]:  # fmt: skip
        assert need in kinds, need
    assert res["torchrun_rc"] == 0 and res["backend"] == "gloo"
    assert res["checks"]["hier_vs_full_base_step"] > 0
