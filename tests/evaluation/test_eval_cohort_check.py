"""``evaluate`` scores only whole cohorts of ``gliomagen generate``; real cases are read as they are."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.errors import GliomagenError
from gliomagen.evaluation import evaluate
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.inputs import check_cohort, looks_generated
from gliomagen.evaluation.probe import ProbeOptions
from gliomagen.io.staging import MARKER

PREFIX = "SYN-0a1b2c3d"
MODS = ("t1n", "t1c", "t2w", "t2f", "seg")


def _cid(k: int) -> str:
    return f"{PREFIX}-s{k:06d}"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(phantom cases, the same cases as a whole generated cohort of 4)``."""
    from gliomagen.data.phantoms import generate_cohort

    root = tmp_path_factory.mktemp("cohorts")
    with torch.random.fork_rng(devices=[]):
        phantoms = generate_cohort(
            root / "phantoms", {"GLI": 2, "SSA": 2}, resolution=2, seed=1, progress=False
        )
    with open(phantoms / "clinical.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cohort = root / "cohort"
    cohort.mkdir()
    for k, row in enumerate(rows):
        (cohort / _cid(k)).mkdir()
        for mod in MODS:
            src = phantoms / row["case_id"] / f"{row['case_id']}-{mod}.nii.gz"
            shutil.copy(src, cohort / _cid(k) / f"{_cid(k)}-{mod}.nii.gz")
    with open(cohort / "clinical.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["case_id", "seed", "cohort", "grade", "age", "sex"])
        writer.writeheader()
        for k, row in enumerate(rows):
            writer.writerow({**row, "case_id": _cid(k), "seed": k})
    manifest = {"format_version": 1, "n_cases": len(rows), "case_ids": [_cid(k) for k in range(len(rows))],
                "modalities": list(MODS[:4])}  # fmt: skip
    (cohort / "manifest.json").write_text(json.dumps(manifest))
    return phantoms, cohort


def _manifest(folder: Path, **changes: object) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None}
    (folder / "manifest.json").write_text(json.dumps(data))


def _old_manifest(folder: Path) -> None:  # older versions: no case_ids, one more case than on disk
    _manifest(folder, case_ids=None, n_cases=5)


def _old_manifest_broken_case(folder: Path) -> None:
    _manifest(folder, case_ids=None)
    (folder / _cid(3) / f"{_cid(3)}-seg.nii.gz").unlink()


def _killed_old_generate(folder: Path) -> None:  # case folders only: clinical.csv and manifest last
    (folder / "manifest.json").unlink()
    (folder / "clinical.csv").unlink()


BROKEN: dict[str, tuple[Callable[[Path], object], str]] = {
    "no manifest": (lambda f: (f / "manifest.json").unlink(), "no manifest.json"),
    "killed old generate": (_killed_old_generate, "no manifest.json"),
    "missing case": (
        lambda f: shutil.rmtree(f / _cid(2)),
        f"case {_cid(2)} of manifest.json is missing",
    ),
    "incomplete case": (
        lambda f: (f / _cid(1) / f"{_cid(1)}-t2f.nii.gz").unlink(),
        f"case {_cid(1)} of manifest.json is incomplete (no {_cid(1)}-t2f.nii.gz)",
    ),
    "old manifest": (_old_manifest, "manifest.json lists 5 cases, 4 are complete on disk"),
    "old manifest, broken case": (
        _old_manifest_broken_case,
        f"lists 4 cases, 3 are complete on disk; {_cid(3)} is incomplete (no {_cid(3)}-seg.nii.gz)",
    ),
    "unfinished generate": (
        lambda f: (f / MARKER).write_text("{}"),
        "the temporary folder of a generate",
    ),
    "no clinical.csv": (lambda f: (f / "clinical.csv").unlink(), "no clinical.csv"),
}


def test_whole_cohorts_and_real_cases_pass(folders: tuple[Path, Path]) -> None:
    phantoms, cohort = folders
    assert looks_generated(cohort) and not looks_generated(phantoms)
    check_cohort(cohort)
    check_cohort(phantoms)  # real-like BraTS cases need no manifest


@pytest.mark.parametrize("broken", list(BROKEN))
def test_an_incomplete_cohort_is_refused(
    broken: str, folders: tuple[Path, Path], volumes: ModuleType, tmp_path: Path
) -> None:
    spoil, message = BROKEN[broken]
    folder = tmp_path / "syn"
    shutil.copytree(folders[1], folder)
    spoil(folder)

    def make(n: int, seed: int, prefix: str) -> CaseSet:
        imgs, masks, ids, labels = volumes.make_cohort(n, size=16, seed=seed, prefix=prefix)
        return CaseSet.from_arrays(imgs, masks, case_ids=ids, labels=labels, name=prefix)

    with pytest.raises(GliomagenError) as err:
        evaluate(
            make(4, 2, "REAL"), folder, tmp_path / "report", train=make(6, 1, "TRAIN"),
            probe_options=ProbeOptions(size=16, width=4, steps=5), n_boot=2, n_pairs=2,
        )  # fmt: skip
    assert str(err.value).startswith(f"{folder}: not a complete gliomagen cohort ("), err.value
    assert message in str(err.value)
    assert not (tmp_path / "report").exists()


@pytest.mark.slow
def test_cli_refuses_a_partial_cohort_in_one_line(
    phantom_store: Path, folders: tuple[Path, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "syn"
    shutil.copytree(folders[1], folder)
    (folder / "manifest.json").unlink()
    result = CliRunner().invoke(
        app,
        ["evaluate", "--real", f"{phantom_store}:test", "--synthetic", str(folder),
         "--out", str(tmp_path / "report"), "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"error: {folder}: not a complete gliomagen cohort (no manifest.json"
    )
    assert not (tmp_path / "report").exists()
