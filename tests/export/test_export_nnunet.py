"""``gliomagen export nnunet``: cohorts -> an nnU-Net v2 raw dataset, checked file by file."""

from __future__ import annotations

import csv
import errno
import gzip
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from export_fixtures import AFFINE, SHAPE, generate_cohort, image, labels, save
from typer.testing import CliRunner

import gliomagen.export.nnunet as nnunet_module
import gliomagen.export.nnunet_files as files_module
from gliomagen import MODALITIES
from gliomagen.cli import app
from gliomagen.errors import GliomagenError
from gliomagen.export import export_nnunet
from gliomagen.export.nnunet import LABELS, REGIONS_CLASS_ORDER

IDS_A = ["SYN-1a2b3c4d-s000000", "SYN-1a2b3c4d-s000001"]
IDS_B = ["SYN-99887766-s000000", "SYN-99887766-s000007"]
DATASET_JSON = {
    "channel_names": {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"},
    "labels": {
        "background": 0,
        "whole tumor": [1, 2, 3],
        "tumor core": [1, 3],
        "enhancing tumor": [3],
    },
    "regions_class_order": [2, 1, 3],
    "numTraining": 4,
    "file_ending": ".nii.gz",
    "name": "Synth",
}


def run_export(*args: str) -> object:
    return CliRunner().invoke(app, ["export", "nnunet", *args])


def test_two_cohorts_file_by_file(two_cohorts: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_cohorts
    raw = tmp_path / "raw"
    out = run_export(str(a), str(b), "--dataset-id", "7", "--name", "Synth", "--out", str(raw), "--quiet")
    ds = raw / "Dataset007_Synth"
    assert out.exit_code == 0, out.output
    assert out.stdout == f"wrote {ds}: 4 cases; files 20 hard-linked\n"
    assert os.listdir(raw) == ["Dataset007_Synth"]  # no temporary folder left
    assert sorted(os.listdir(ds)) == ["dataset.json", "gliomagen_sources.csv", "imagesTr", "labelsTr"]
    ids = IDS_A + IDS_B
    assert sorted(os.listdir(ds / "imagesTr")) == sorted(
        f"{cid}_{c:04d}.nii.gz" for cid in ids for c in range(4)
    )
    assert sorted(os.listdir(ds / "labelsTr")) == sorted(f"{cid}.nii.gz" for cid in ids)
    for cohort, cids in ((a, IDS_A), (b, IDS_B)):
        for cid in cids:
            for c, m in enumerate(MODALITIES):  # channel c is modality MODALITIES[c]
                src, dst = cohort / cid / f"{cid}-{m}.nii.gz", ds / "imagesTr" / f"{cid}_{c:04d}.nii.gz"
                assert os.path.samefile(src, dst) and dst.read_bytes() == src.read_bytes()
            src, dst = cohort / cid / f"{cid}-seg.nii.gz", ds / "labelsTr" / f"{cid}.nii.gz"
            assert os.path.samefile(src, dst)
    data = json.loads((ds / "dataset.json").read_text())
    description = data.pop("description")
    assert data == DATASET_JSON
    assert list(data) == list(DATASET_JSON)  # nnU-Net reads the regions in file order
    assert list(data["labels"]) == ["background", "whole tumor", "tumor core", "enhancing tumor"]
    assert str(a) in description and str(b) in description and "gliomagen_sources.csv" in description
    with open(ds / "gliomagen_sources.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case_id"] for r in rows] == ids
    assert [r["cohort"] for r in rows] == [str(a)] * 2 + [str(b)] * 2
    assert [r["folder"] for r in rows] == [str(a / c) for c in IDS_A] + [str(b / c) for c in IDS_B]
    assert {(r["layout"], r["t1n"], r["t1c"], r["t2w"], r["t2f"], r["seg"]) for r in rows} == {
        ("brats2023", "link", "link", "link", "link", "link")
    }


def test_regions_class_order_turns_regions_back_into_labels() -> None:
    """nnU-Net writes REGIONS_CLASS_ORDER[i] where region i is, in order; that gives the labels back."""
    seg = labels(0)
    regions = [np.isin(seg, v) for k, v in LABELS.items() if k != "background"]
    back = np.zeros_like(seg)
    for region, label in zip(regions, REGIONS_CLASS_ORDER, strict=True):
        back[region] = label
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(back, seg)


def test_brats2021_nii_is_gzipped_and_relabelled(brats2021: Path, tmp_path: Path) -> None:
    result = export_nnunet([brats2021], tmp_path / "raw", 12, "Real")
    ds = tmp_path / "raw" / "Dataset012_Real"
    assert result.folder == ds and result.case_ids == ["BraTS2021_00001", "BraTS2021_00002"]
    assert result.placements == Counter({"gzip": 8, "relabel": 2})
    for seed, cid in enumerate(result.case_ids):
        for c, suffix in enumerate(("t1", "t1ce", "t2", "flair")):
            src = brats2021 / cid / f"{cid}_{suffix}.nii"
            packed = (ds / "imagesTr" / f"{cid}_{c:04d}.nii.gz").read_bytes()
            assert gzip.decompress(packed) == src.read_bytes()  # byte for byte, not re-encoded
        seg = nib.load(str(ds / "labelsTr" / f"{cid}.nii.gz"))
        voxels = np.asanyarray(seg.dataobj)
        assert voxels.dtype == np.uint8 and seg.shape == SHAPE
        np.testing.assert_array_equal(voxels, labels(seed, et=3))  # ET 4 -> 3, the rest unchanged
        np.testing.assert_allclose(seg.affine, AFFINE)
        assert int(seg.header["sform_code"]) == 1 and int(seg.header["qform_code"]) == 1


def test_copy_option_and_link_fallback(
    two_cohorts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two_cohorts
    copied = export_nnunet([a], tmp_path / "raw1", 1, "Copied", copy=True)
    assert copied.placements == Counter({"copy": 10})
    src = a / IDS_A[0] / f"{IDS_A[0]}-t1c.nii.gz"
    dst = copied.folder / "imagesTr" / f"{IDS_A[0]}_0001.nii.gz"
    assert not os.path.samefile(src, dst) and dst.read_bytes() == src.read_bytes()

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(files_module.os, "link", no_link)
    fallback = export_nnunet([a], tmp_path / "raw2", 2, "Fallback")
    assert fallback.placements == Counter({"copy": 10})
    assert fallback.summary().endswith("2 cases; files 10 copied")


def test_trailing_singleton_dimension_is_squeezed(two_cohorts: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_cohorts
    cid = IDS_A[1]
    save(image(1, 2)[..., None], a / cid / f"{cid}-t2w.nii.gz")  # [16, 16, 16, 1]
    result = export_nnunet([a], tmp_path / "raw", 3, "Squeezed")
    assert result.placements == Counter({"link": 9, "squeeze": 1})
    out = nib.load(str(result.folder / "imagesTr" / f"{cid}_0002.nii.gz"))
    assert out.shape == SHAPE
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), image(1, 2))


# -- one error line, exit 2, nothing written -------------------------------------------------------
def _drop(name: str) -> Callable[[Path, Path], list[str]]:
    def setup(a: Path, b: Path) -> list[str]:
        (a / IDS_A[1] / f"{IDS_A[1]}-{name}.nii.gz").unlink()
        return [str(a)]

    return setup


def _moved_affine(a: Path, b: Path) -> list[str]:
    shifted = AFFINE.copy()
    shifted[0, 3] += 3.0
    save(image(0, 3), a / IDS_A[0] / f"{IDS_A[0]}-t2f.nii.gz", shifted)
    return [str(a)]


def _other_shape(a: Path, b: Path) -> list[str]:
    save(labels(0)[:, :, :15], a / IDS_A[0] / f"{IDS_A[0]}-seg.nii.gz")
    return [str(a)]


def _label_5(a: Path, b: Path) -> list[str]:
    seg = labels(1)
    seg[0, 0, 0] = 5
    save(seg, a / IDS_A[1] / f"{IDS_A[1]}-seg.nii.gz")
    return [str(a)]


def _duplicate(a: Path, b: Path) -> list[str]:
    copy = a.parent / "copy-of-a"
    shutil.copytree(a, copy)
    return [str(a), str(copy)]


def _empty(a: Path, b: Path) -> list[str]:
    (a.parent / "empty").mkdir()
    return [str(a.parent / "empty")]


CASES = [
    ("missing-modality", _drop("t2f"), [], "missing modality t2f"),
    ("missing-seg", _drop("seg"), [], f"{IDS_A[1]}: no segmentation file (-seg)"),
    ("unknown-folder", lambda a, b: [str(a.parent / "nope")], [], "nope: no such file or folder"),
    ("no-cases", _empty, [], "empty: no cases found"),
    ("id-0", lambda a, b: [str(a)], ["--dataset-id", "0"], "--dataset-id 0: must be 1..999"),
    ("id-1000", lambda a, b: [str(a)], ["--dataset-id", "1000"], "--dataset-id 1000: must be 1..999"),
    ("name-space", lambda a, b: [str(a)], ["--name", "My Data"], "--name 'My Data': use 1-64 letters"),
    ("name-path", lambda a, b: [str(a)], ["--name", "../x"], "--name '../x': use 1-64 letters"),
    ("affine", _moved_affine, [], f"{IDS_A[0]}: {IDS_A[0]}-t2f.nii.gz: affine differs"),
    ("shape", _other_shape, [], f"{IDS_A[0]}: {IDS_A[0]}-seg.nii.gz: shape [16, 16, 15] differs"),
    ("labels", _label_5, [], "unknown label values [5] (expected BraTS 2023 labels {0,1,2,3})"),
    ("duplicate", _duplicate, [], f"duplicate case id '{IDS_A[0]}': found in "),
]


@pytest.mark.parametrize(("setup", "extra", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(
    two_cohorts: tuple[Path, Path],
    tmp_path: Path,
    setup: Callable[[Path, Path], list[str]],
    extra: list[str],
    message: str,
) -> None:
    a, b = two_cohorts
    raw = tmp_path / "raw"
    options = {"--dataset-id": "7", "--name": "Synth", **dict(zip(extra[::2], extra[1::2], strict=True))}
    args = [*setup(a, b), *(x for kv in options.items() for x in kv), "--out", str(raw), "--quiet"]
    out = run_export(*args)
    assert out.exit_code == 2, out.output
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert not raw.exists() or os.listdir(raw) == []  # nothing written, no temporary folder left


def test_duplicate_names_both_sources(two_cohorts: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_cohorts
    copy = tmp_path / "copy-of-a"
    shutil.copytree(a, copy)
    out = run_export(str(a), str(copy), "--dataset-id", "7", "--name", "X", "--out", str(tmp_path / "raw"))
    assert out.exit_code == 2
    assert str(a / IDS_A[0]) in out.stderr and str(copy / IDS_A[0]) in out.stderr


def test_existing_dataset_is_refused_and_kept(two_cohorts: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_cohorts
    raw = tmp_path / "raw"
    (raw / "Dataset007_Synth").mkdir(parents=True)
    (raw / "Dataset007_Synth" / "keep.txt").write_text("mine")
    (raw / "Dataset008_Other").mkdir()
    (raw / "notes.txt").write_text("also mine")
    same = run_export(str(a), "--dataset-id", "7", "--name", "Synth", "--out", str(raw))
    taken = run_export(str(a), "--dataset-id", "8", "--name", "Synth", "--out", str(raw))
    as_file = run_export(str(a), "--dataset-id", "9", "--name", "S", "--out", str(raw / "notes.txt"))
    assert (same.exit_code, taken.exit_code, as_file.exit_code) == (2, 2, 2)
    assert same.stderr == (
        f"error: {raw / 'Dataset007_Synth'}: already exists and is not empty; remove it or choose "
        "another --dataset-id/--name\n"
    )
    assert taken.stderr == (
        f"error: {raw / 'Dataset008_Other'}: dataset id 8 is taken (nnU-Net needs unique ids); "
        "choose another --dataset-id\n"
    )
    assert as_file.stderr.startswith(f"error: --out {raw / 'notes.txt'}: is a file")
    assert sorted(os.listdir(raw)) == ["Dataset007_Synth", "Dataset008_Other", "notes.txt"]
    assert (raw / "Dataset007_Synth" / "keep.txt").read_text() == "mine"
    empty = tmp_path / "raw2" / "Dataset007_Synth"
    empty.mkdir(parents=True)  # an empty folder may be filled
    assert run_export(str(a), "--dataset-id", "7", "--name", "Synth", "--out", str(empty.parent)).exit_code == 0
    assert len(os.listdir(empty / "imagesTr")) == 8


def test_interrupt_leaves_nothing(
    two_cohorts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two_cohorts
    real = nnunet_module.export_case
    calls: list[str] = []

    def interrupted(record: object, folder: Path, *, copy: bool = False) -> object:
        calls.append("x")
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(record, folder, copy=copy)  # type: ignore[arg-type]

    monkeypatch.setattr(nnunet_module, "export_case", interrupted)
    raw = tmp_path / "raw"
    out = run_export(str(a), str(b), "--dataset-id", "7", "--name", "Synth", "--out", str(raw), "--quiet")
    assert out.exit_code == 130 and out.stderr == "error: interrupted\n"
    assert os.listdir(raw) == []
    assert os.stat(a / IDS_A[0] / f"{IDS_A[0]}-t1n.nii.gz").st_nlink == 1  # the links went with it


def test_nnunet_accepts_the_dataset(
    two_cohorts: tuple[Path, Path], brats2021: Path, tmp_path: Path
) -> None:
    """nnU-Net v2's own check (where nnunetv2 is installed; see docs/export.md)."""
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    result = export_nnunet([*two_cohorts, brats2021], tmp_path / "raw", 5, "Mixed")
    verify_dataset_integrity(str(result.folder), 1)  # raises on any problem
    assert len(result.case_ids) == 6


def test_generate_layout_is_what_find_cases_reads(tmp_path: Path) -> None:
    """The fixture's cohort is the layout ``gliomagen generate`` writes (BraTS 2023 names)."""
    from gliomagen.data.layouts import find_cases

    cohort = generate_cohort(tmp_path / "c", "SYN-00000000", [3])
    (case,) = find_cases([cohort])
    assert case.case_id == "SYN-00000000-s000003" and case.layout == "brats2023" and case.problem is None


def test_no_cohort_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(GliomagenError, match="^export nnunet: give at least one cohort"):
        export_nnunet([], tmp_path / "raw", 1, "X")
    assert not (tmp_path / "raw").exists()
