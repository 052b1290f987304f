"""``evaluate`` end to end: arrays in the Python API, a phantom store and NIfTI folder through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.errors import GliomagenError
from gliomagen.evaluation import evaluate
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.probe import ProbeOptions
from gliomagen.report.html import evaluate_report

TINY = ProbeOptions(size=16, width=4, steps=20)


def _set(volumes: ModuleType, n: int, seed: int, prefix: str, size: int = 16) -> CaseSet:
    imgs, masks, ids, labels = volumes.make_cohort(n, size=size, seed=seed, prefix=prefix)
    return CaseSet.from_arrays(
        imgs, masks, case_ids=ids, labels=labels, name=prefix, spacing_mm=(10.0, 10.0, 10.0)
    )


@pytest.fixture(scope="module")
def report(
    volumes: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("report")
    metrics = evaluate_report(
        _set(volumes, 8, 2, "REAL"), _set(volumes, 8, 3, "SYN"), out, train=_set(volumes, 12, 1, "TRAIN"),
        probe_options=TINY, n_boot=10, n_pairs=6, n_montage=1,
    )  # fmt: skip
    return out, metrics


def test_metrics_cover_every_figure_and_condition(report: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = report
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    groups = ["all", "cohort=GLI", "cohort=SSA", "grade=HGG", "grade=LGG"]
    for section in ("distances", "diversity", "masks", "intensity", "montages"):
        assert list(metrics[section]) == groups, section
    assert list(metrics["memorisation"]["by_condition"]) == groups
    overall = metrics["distances"]["all"]
    assert overall["n_real"] == 8 and overall["n_synthetic"] == 8 and overall["n_train"] == 12
    for role in ("synthetic", "floor"):
        for key in ("fd", "kid", "precision", "recall", "density", "coverage"):
            entry = overall[role][key]
            assert np.isfinite(entry["value"]) and entry["ci"][0] <= entry["ci"][1], (role, key)
    assert metrics["distances"]["grade=HGG"]["n_real"] == 4
    assert set(metrics["fidelity"]) == {"cohort", "grade"}
    assert metrics["extractor"]["name"] == "probe" and metrics["extractor"]["dim"] == 120
    # mask volumes: 10 mm voxels -> 1 ml each; the real HGG tumours are bigger than the LGG ones
    wt = metrics["masks"]
    assert (
        wt["grade=HGG"]["wt_volume_ml"]["real"]["median"]
        > wt["grade=LGG"]["wt_volume_ml"]["real"]["median"]
    )
    assert wt["grade=LGG"]["enhancing_fraction"]["real"]["median"] == 0.0
    hist = metrics["intensity"]["all"]
    assert sum(hist["real"]["t2f"]["ed"]) == pytest.approx(1.0) and hist["w1"]["t1c"]["et"] >= 0
    assert len(metrics["memorisation"]["cases"]) == 8


def test_report_folder_is_complete_and_atomic(report: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = report
    names = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]
    assert "index.html" in names and "metrics.json" in names
    for entry in metrics["montages"].values():
        for rel in entry.values():
            assert (out / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mismatched_grids_and_bad_options_are_user_errors(
    volumes: ModuleType, tmp_path: Path
) -> None:
    real, train = _set(volumes, 4, 2, "REAL"), _set(volumes, 4, 1, "TRAIN")
    with pytest.raises(
        GliomagenError, match=r"SYN: volumes are \[4, 24, 24, 24\].*REAL has \[4, 16, 16, 16\]"
    ):
        evaluate(
            real,
            _set(volumes, 4, 3, "SYN", size=24),
            tmp_path / "r",
            train=train,
            probe_options=TINY,
        )
    with pytest.raises(GliomagenError, match="--train: needed"):
        evaluate(real, real, tmp_path / "r")
    with pytest.raises(GliomagenError, match="--bootstrap -1"):
        evaluate(real, real, tmp_path / "r", train=train, n_boot=-1)
    with pytest.raises(GliomagenError, match="--device .gpu0.: not a device"):
        evaluate(real, real, tmp_path / "r", train=train, device="gpu0")
    assert not (tmp_path / "r").exists()


def test_cli_user_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "evaluate",
            "--real",
            str(tmp_path / "nostore"),
            "--synthetic",
            str(tmp_path),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 2 and "error:" in res.output and "nostore" in res.output
    res = runner.invoke(
        app, ["evaluate", "--real", "x", "--synthetic", "y", "--out", "z", "--bootstrap", "-2"]
    )
    assert res.exit_code == 2 and "--bootstrap -2" in res.output
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no metrics.json" in res.output


@pytest.mark.slow
def test_cli_on_a_phantom_store_and_nifti_folder(phantom_store: Path, tmp_path: Path) -> None:
    from gliomagen.data.phantoms import generate_cohort

    synthetic = generate_cohort(
        tmp_path / "syn", {"GLI": 3, "SSA": 3}, resolution=2, seed=7, progress=False
    )
    out = tmp_path / "report"
    res = CliRunner().invoke(
        app,
        ["evaluate", "--real", f"{phantom_store}:test", "--synthetic", str(synthetic), "--out", str(out),
         "--probe-steps", "20", "--probe-size", "16", "--bootstrap", "10", "--pairs", "4", "--quiet"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "FD" in res.output and "report:" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inputs"]["synthetic"] == {"name": "syn", "n": 6}
    assert (
        metrics["inputs"]["real"]["name"] == "store:test"
        and metrics["inputs"]["train"]["name"] == "store:train"
    )
    assert metrics["inputs"]["grid"] == [24, 24, 24]
    # the synthetic folder's clinical.csv gives each case's requested labels
    assert (
        metrics["groups"]["cohort=SSA"]["n_synthetic"] == 3
        and metrics["groups"]["cohort=GLI"]["n_synthetic"] == 3
    )
    assert {"cohort", "grade", "sex", "age"} <= set(metrics["fidelity"])
    assert metrics["fidelity"]["cohort"]["synthetic"]["n"] == 6
    assert metrics["masks"]["all"]["wt_volume_ml"]["synthetic"]["n"] == 6
    # a second run reuses the cached probe and the prepared folder, and `report` rebuilds the page
    before = (out / "index.html").stat().st_mtime_ns
    res = CliRunner().invoke(app, ["report", str(out)])
    assert res.exit_code == 0 and (out / "index.html").stat().st_mtime_ns >= before
