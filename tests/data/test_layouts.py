"""Finding cases in every BraTS layout and in manifests."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth_brats import Synth

from gliomagen.data.layouts import cohort_from, find_cases
from gliomagen.errors import GliomagenError


def _by_id(cases: list) -> dict:
    return {c.case_id: c for c in cases}


def test_brats2023_layout(tree: dict[str, Path]) -> None:
    cases = _by_id(find_cases([tree["brats2023"]]))
    assert sorted(cases) == ["BraTS-GLI-00001-000", "BraTS-SSA-00002-000"]
    gli, ssa = cases["BraTS-GLI-00001-000"], cases["BraTS-SSA-00002-000"]
    assert gli.layout == "brats2023" and gli.label_convention == "2023"
    assert {m: p.name for m, p in gli.images.items()} == {
        m: f"BraTS-GLI-00001-000-{m}.nii.gz" for m in ("t1n", "t1c", "t2w", "t2f")
    }
    assert gli.seg is not None and gli.seg.name == "BraTS-GLI-00001-000-seg.nii.gz"
    assert (gli.cohort, ssa.cohort, gli.grade) == ("GLI", "SSA", None)
    assert ssa.seg is None and ssa.problem is None


def test_brats2021_layout_maps_old_suffixes(tree: dict[str, Path]) -> None:
    (case,) = find_cases([tree["brats2021"]])
    assert case.case_id == "BraTS2021_00001" and case.layout == "brats2021"
    assert case.label_convention == "2021" and case.cohort == "GLI"
    assert {m: p.name.split("_")[-1] for m, p in case.images.items()} == {
        "t1n": "t1.nii.gz", "t1c": "t1ce.nii.gz", "t2w": "t2.nii.gz", "t2f": "flair.nii.gz"
    }  # fmt: skip


def test_brats2018_grade_from_folder_and_plain_nii(tree: dict[str, Path]) -> None:
    cases = _by_id(find_cases([tree["brats2018"]]))
    assert cases["Brats18_2013_2_1"].grade == "HGG" and cases["Brats18_TCIA10_1"].grade == "LGG"
    assert all(c.layout == "brats2018" and c.cohort == "GLI" for c in cases.values())
    assert cases["Brats18_2013_2_1"].images["t1c"].name == "Brats18_2013_2_1_t1ce.nii"


def test_manifest_with_aliases_relative_paths_and_labels(tree: dict[str, Path]) -> None:
    (case,) = find_cases([tree["manifest"]])
    root = tree["manifest"].parent
    assert case.case_id == "M1" and case.layout == "manifest" and case.label_convention == "auto"
    assert case.images["t2f"] == root / "vols" / "m1_t2f.nii.gz"
    assert case.seg == root / "vols" / "m1_mask.nii.gz"
    assert (case.cohort, case.grade, case.labels) == ("MEN", None, {"age": "61"})


def test_several_sources_in_order(tree: dict[str, Path]) -> None:
    cases = find_cases([tree["brats2021"], tree["manifest"], tree["brats2023"]])
    assert [c.case_id for c in cases] == [
        "BraTS2021_00001",
        "M1",
        "BraTS-GLI-00001-000",
        "BraTS-SSA-00002-000",
    ]


def test_missing_modality_is_a_case_problem(tmp_path: Path, synth: Synth) -> None:
    synth.case(tmp_path, "BraTS-GLI-00009-000", skip=("t2f",))
    (case,) = find_cases([tmp_path])
    assert case.problem == f"{tmp_path / 'BraTS-GLI-00009-000'}: missing modality t2f"


def test_non_nifti_modality_file_is_named(tmp_path: Path, synth: Synth) -> None:
    synth.case(tmp_path, "BraTS2021_00002", "brats2021", skip=("t1n",))
    (tmp_path / "BraTS2021_00002" / "BraTS2021_00002_t1.mha").write_bytes(b"x")
    (case,) = find_cases([tmp_path])
    assert case.problem is not None
    assert "missing modality t1n (BraTS2021_00002_t1.mha: not a NIfTI file" in case.problem


def test_hidden_files_and_folders_are_ignored(tmp_path: Path, synth: Synth) -> None:
    d = synth.case(tmp_path, "BraTS-GLI-00004-000")
    (d / "._BraTS-GLI-00004-000-t1n.nii.gz").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble
    synth.case(tmp_path / ".trash", "BraTS-GLI-00005-000")
    assert [(c.case_id, c.problem) for c in find_cases([tmp_path])] == [
        ("BraTS-GLI-00004-000", None)
    ]


def test_two_files_for_one_modality(tmp_path: Path, synth: Synth) -> None:
    d = synth.case(tmp_path, "BraTS-GLI-00003-000")
    (d / "BraTS-GLI-00003-000-t1n.nii").write_bytes(b"")
    (case,) = find_cases([tmp_path])
    assert case.problem is not None and "several files for t1n" in case.problem


def test_duplicate_case_ids_across_sources(tmp_path: Path, synth: Synth) -> None:
    synth.case(tmp_path / "a", "BraTS-GLI-00001-000")
    synth.case(tmp_path / "b", "BraTS-GLI-00001-000")
    with pytest.raises(
        GliomagenError,
        match=r"duplicate case id 'BraTS-GLI-00001-000': found in .*/a/.* and in .*/b/",
    ):
        find_cases([tmp_path / "a", tmp_path / "b"])


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(GliomagenError, match="no such file or folder"):
        find_cases([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(GliomagenError, match="empty: no cases found"):
        find_cases([tmp_path / "empty"])
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(GliomagenError, match="folder or a manifest .csv"):
        find_cases([tmp_path / "x.txt"])


def test_bad_manifests(tmp_path: Path, synth: Synth) -> None:
    no_id = synth.manifest(tmp_path, [{"id": "a", "t1n": "a"}], "a.csv")
    with pytest.raises(GliomagenError, match="no case_id column"):
        find_cases([no_id])
    no_flair = synth.manifest(
        tmp_path, [{"case_id": "a", "t1": "a", "t1c": "b", "t2": "c"}], "b.csv"
    )
    with pytest.raises(GliomagenError, match="no column for modality t2f"):
        find_cases([no_flair])
    both = synth.manifest(
        tmp_path,
        [{"case_id": "a", "t1": "a", "t1n": "a", "t1c": "b", "t2": "c", "t2f": "d"}],
        "c.csv",
    )
    with pytest.raises(GliomagenError, match="columns 't1' and 't1n' both give t1n"):
        find_cases([both])
    empty_cell = synth.manifest(
        tmp_path, [{"case_id": "a", "t1n": "a", "t1c": "", "t2w": "c", "t2f": "d"}], "d.csv"
    )
    (case,) = find_cases([empty_cell])
    assert case.problem == f"{empty_cell}: line 2: missing modality t1c"
    dup = synth.manifest(
        tmp_path, [{"case_id": "a", "t1n": "a", "t1c": "b", "t2w": "c", "t2f": "d"}] * 2, "e.csv"
    )
    with pytest.raises(GliomagenError, match="duplicate case id 'a'"):
        find_cases([dup])


@pytest.mark.parametrize(
    ("case_id", "folders", "cohort"),
    [
        ("BraTS-PED-00010-000", [], "PED"),
        ("BraTS-MET-00010-000", [], "MET"),
        ("BraTS-MEN-00010-000", [], "MEN"),
        ("BraTS20_Training_001", [], "GLI"),
        ("case1", ["BraTS-Africa-Training"], "SSA"),
        ("case1", ["data", "meningioma"], "MEN"),
        ("case1", ["data"], None),
    ],
)
def test_cohort_from(case_id: str, folders: list[str], cohort: str | None) -> None:
    assert cohort_from(case_id, folders) == cohort
