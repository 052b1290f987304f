"""Cohort files: determinism, parallel = serial, atomic writes, clinical.csv, argument checks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from gliomagen.data.phantoms import (
    CLINICAL_COLUMNS,
    case_id,
    generate_cohort,
    make_case,
    parse_cohorts,
)
from gliomagen.data.phantoms import case as case_module
from gliomagen.errors import GliomagenError


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_identical_files_for_any_workers(tmp_path: Path) -> None:
    sizes = {"GLI": 2, "SSA": 1}
    a = generate_cohort(tmp_path / "a", sizes, seed=7, workers=1, progress=False)
    b = generate_cohort(tmp_path / "b", sizes, seed=7, workers=2, progress=False)
    ta, tb = _tree(a), _tree(b)
    assert len(ta) == 3 * 5 + 2  # five files per case, clinical.csv, phantoms.json
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name] == tb[name], name  # byte-identical, gzip headers included
    c = generate_cohort(tmp_path / "c", sizes, seed=8, workers=1, progress=False)
    tc = _tree(c)
    differ = [n for n in ta if n.endswith(".nii.gz") and ta[n] != tc[n]]
    assert len(differ) == 15  # another seed changes every image and mask


def test_rerun_in_place_replaces_cases_identically(tmp_path: Path) -> None:
    out = generate_cohort(tmp_path / "o", {"SSA": 1}, seed=1, progress=False)
    before = _tree(out)
    generate_cohort(out, {"SSA": 1}, seed=1, progress=False)
    assert _tree(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_case_is_independent_of_cohort_size() -> None:
    """Case k of a cohort is the same whether 1 or 100 cases are asked for (per-case seeds)."""
    one = make_case("GLI", 1, seed=3)
    again = make_case("GLI", 1, seed=3)
    other = make_case("GLI", 2, seed=3)
    np.testing.assert_array_equal(one.images["t2f"], again.images["t2f"])
    np.testing.assert_array_equal(one.seg, again.seg)
    assert not np.array_equal(one.images["t2f"], other.images["t2f"])


def test_clinical_csv(tmp_path: Path) -> None:
    out = generate_cohort(tmp_path / "o", {"GLI": 3, "SSA": 2}, seed=0, progress=False)
    with open(out / "clinical.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == CLINICAL_COLUMNS
    assert [r["case_id"] for r in rows] == [case_id("GLI", i) for i in range(3)] + [
        case_id("SSA", i) for i in range(2)
    ]
    assert [r["cohort"] for r in rows] == ["GLI"] * 3 + ["SSA"] * 2
    for r in rows:
        assert r["grade"] in ("HGG", "LGG") and r["sex"] in ("M", "F") and 18 <= int(r["age"]) <= 88
        assert (out / r["case_id"] / f"{r['case_id']}-seg.nii.gz").is_file()
    case = make_case("SSA", 1, seed=0)  # the row is the case's own clinical draw
    assert case.clinical() == {**rows[-1], "age": int(rows[-1]["age"])}


def test_failed_write_leaves_no_case_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = case_module._nifti

    def flaky(data: np.ndarray, affine: np.ndarray):  # the third file of the case fails
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(data, affine)

    monkeypatch.setattr(case_module, "_nifti", flaky)
    case = make_case("SSA", 0, seed=0)
    with pytest.raises(OSError, match="disk full"):
        case_module.write_case(case, tmp_path)
    assert list(tmp_path.iterdir()) == []  # neither the case folder nor its temporary folder


def test_existing_case_is_kept_when_rewrite_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = make_case("SSA", 0, seed=0)
    folder = case_module.write_case(case, tmp_path)
    before = _tree(folder)

    def broken(data: np.ndarray, affine: np.ndarray):
        raise OSError("disk full")

    monkeypatch.setattr(case_module, "_nifti", broken)
    with pytest.raises(OSError):
        case_module.write_case(case, tmp_path)
    assert _tree(folder) == before
    assert [p.name for p in tmp_path.iterdir()] == [case.case_id]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GLI=200,SSA=24", {"GLI": 200, "SSA": 24}),
        (" SSA=3 ", {"SSA": 3}),
        ("GLI=0,SSA=1", {"GLI": 0, "SSA": 1}),
    ],
)
def test_parse_cohorts(text: str, expected: dict[str, int]) -> None:
    assert parse_cohorts(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("GLI", "not NAME=COUNT"),
        ("GLI=-1", "not NAME=COUNT"),
        ("GLI=2.5", "not NAME=COUNT"),
        ("MEN=3", "unknown cohort 'MEN'"),
        ("GLI=1,GLI=2", "given twice"),
        ("", "expected NAME=COUNT"),
    ],
)
def test_parse_cohorts_rejects(text: str, message: str) -> None:
    with pytest.raises(GliomagenError, match=message):
        parse_cohorts(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution": 3}, "--resolution 3"),
        ({"seed": -1}, "--seed -1"),
        ({"workers": 0}, "--workers 0"),
        ({"cohorts": {"GLI": 0}}, "cohort is empty"),
        ({"cohorts": {"XYZ": 2}}, "unknown cohort 'XYZ'"),
    ],
)
def test_generate_cohort_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"cohorts": {"GLI": 1}, **kwargs}
    with pytest.raises(GliomagenError, match=message):
        generate_cohort(tmp_path / "o", progress=False, **args)
    assert not (tmp_path / "o").exists()  # nothing written for bad arguments


def test_refuses_a_folder_with_other_cases(tmp_path: Path) -> None:
    (tmp_path / "BraTS-GLI-00009-000").mkdir()
    with pytest.raises(GliomagenError, match="BraTS-GLI-00009-000"):
        generate_cohort(tmp_path, {"GLI": 1}, progress=False)


def test_never_replaces_a_case_folder_it_did_not_write(tmp_path: Path) -> None:
    """Real BraTS 2023 ids look like phantom ids: a folder of real cases is not overwritten."""
    real = tmp_path / "BraTS-GLI-00000-000"
    real.mkdir()
    (real / "BraTS-GLI-00000-000-t1n.nii.gz").write_bytes(b"a patient's scan")
    with pytest.raises(GliomagenError, match="BraTS-GLI-00000-000, which gliomagen phantoms did not write"):
        generate_cohort(tmp_path, {"GLI": 1}, progress=False)
    assert _tree(tmp_path) == {"BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1n.nii.gz": b"a patient's scan"}


def test_an_interrupted_cohort_can_be_run_again(tmp_path: Path) -> None:
    out = generate_cohort(tmp_path / "o", {"SSA": 1}, seed=1, progress=False)
    before = _tree(out)
    (out / "clinical.csv").unlink()  # killed before its tables were written: phantoms.json is first
    generate_cohort(out, {"SSA": 1}, seed=1, progress=False)
    assert _tree(out) == before


@pytest.mark.slow
def test_one_mm_grid() -> None:
    case = make_case("GLI", 0, seed=0, resolution=1)
    assert case.images["t1n"].shape == (240, 240, 155) and case.seg.shape == (240, 240, 155)
    np.testing.assert_array_equal(
        case.affine, [[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]]
    )
    low = make_case("GLI", 0, seed=0, resolution=2)
    # Same subject at both resolutions: brain volumes agree within 3 %.
    v1 = (case.images["t1n"] > 0).sum() * 1.0
    v2 = (low.images["t1n"] > 0).sum() * 8.0
    assert abs(v1 - v2) / v1 < 0.03
