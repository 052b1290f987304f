"""benchmarks/utility.py --quick: the split, the nested subsets, the generator's store, the report."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from gliomagen.data.phantoms import generate_cohort
from gliomagen.data.store import open_store

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "utility.py"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("utility_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _splits(store: Path) -> dict[str, str]:
    ds = open_store(store)
    return {c: r["split"] for c, r in zip(ds.case_ids, ds.index_rows, strict=True)}


@pytest.mark.slow
def test_quick_benchmark_respects_the_split_and_writes_every_figure(tmp_path: Path) -> None:
    syn = generate_cohort(tmp_path / "syn", {"SSA": 12}, resolution=2, seed=5, progress=False)
    out = tmp_path / "out"
    _module().main(["--quick", "--out", str(out), "--jobs", "1", "--workers", "1", "--synthetic", f"2={syn}"])
    work = out / "work"
    with open(work / "split.csv", newline="") as fh:
        split = {r["case_id"]: r["split"] for r in csv.DictReader(fh)}
    ssa = {s: sorted(c for c, v in split.items() if "SSA" in c and v == s) for s in ("train", "val", "test")}
    assert [len(ssa[s]) for s in ("train", "val", "test")] == [8, 3, 6]
    assert sorted(v for c, v in split.items() if "GLI" in c) == ["train"] * 6 + ["val"] * 2
    order = (work / "ssa-order.txt").read_text().split()
    assert sorted(order) == ssa["train"]  # the nested order is a permutation of the training pool
    real_store = next(work.glob("store-phantoms-hard-*"))
    assert _splits(real_store) == split  # the store holds exactly the CSV's split
    gen = _splits(work / "generator-store-n2")
    assert sorted(gen) == sorted([c for c in split if "GLI" in c] + order[:2])  # GLI + the n=2 only
    assert {gen[c] for c in order[:2]} == {"train"} and not set(gen) & set(ssa["val"] + ssa["test"])
    doc = json.loads((out / "utility.json").read_text())
    runs = doc["runs"]
    assert list(runs) == ["n = 2", "n = 4"]
    assert runs["n = 2"]["cases"]["real_train"] == order[:2]  # nested: n=2 within n=4
    assert runs["n = 4"]["cases"]["real_train"] == order[:4]
    for rep in runs.values():
        assert rep["cases"]["heldout"] == ssa["test"] and rep["cases"]["val"] == ssa["val"]
        assert not set(rep["cases"]["real_train"]) & set(ssa["val"] + ssa["test"])
        assert "real+stand-in@2x" in rep["arms"] and "large-then-real+stand-in" in rep["arms"]
    assert "real+synthetic@2x" in runs["n = 2"]["arms"] and "synthetic" in runs["n = 2"]["arms"]
    assert not any("synthetic" in a for a in runs["n = 4"]["arms"])  # no generator for n=4
    assert len(runs["n = 2"]["cases"]["synthetic@2x"]) == 4
    assert doc["benchmark"]["timing"]["seconds_total"] > 0 and doc["benchmark"]["ssa_order"] == order
    html = (out / "index.html").read_text()
    assert "n = 2" in html and "n = 4" in html and "Headroom" in html
