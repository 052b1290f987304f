"""``gliomagen prepare`` / ``inspect``: every layout, every kind of bad input, the real cases."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from synth_brats import Synth, phantom, ras_affine, save
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.data.preprocess import to_original_space
from gliomagen.data.store import open_store


def no_store_left(parent: Path, name: str = "S") -> bool:
    """Neither the store nor a temporary or old copy of it is in ``parent``."""
    return not (parent / name).exists() and not list(parent.glob(f".{name}.*"))


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_prepare_every_layout_then_inspect(tree: dict[str, Path]) -> None:
    out = tree["root"] / "S"
    code, stdout, stderr = run("prepare", tree["brats2023"], tree["brats2021"], tree["brats2018"], tree["manifest"],
                               "--out", out, "--size", "32,24,16", "--seed", "3", "--qc", "1")  # fmt: skip
    assert code == 0, stderr
    assert "cases      6 (5 with a tumour mask)" in stdout
    assert "grid       32 x 24 x 16" in stdout
    code, stdout, _ = run("inspect", out)
    assert code == 0
    assert "splits     train 4, val 1, test 1" in stdout
    assert "cohort               categorical GLI 4, MEN 1, SSA 1  [id]" in stdout
    assert "grade                categorical HGG 1, LGG 1, missing 4  [folder]" in stdout
    assert "hemisphere           categorical right 5, missing 1  [mask]" in stdout
    assert "  M1  " in stdout and "BraTS-SSA-00002-000" in stdout


def test_phantom_style_clinical_csv(tmp_path: Path, synth: Synth) -> None:
    src = tmp_path / "cohort"
    for i, cohort in enumerate(["GLI", "GLI", "SSA", "SSA"]):
        synth.case(src, f"BraTS-{cohort}-{i:05d}-000", seed=i)
    (src / "clinical.csv").write_text(
        "case_id,cohort,grade,age,sex\n"
        + "".join(f"BraTS-{c}-{i:05d}-000,{c},{g},{a},{s}\n" for i, (c, g, a, s) in
                  enumerate([("GLI", "HGG", 60, "F"), ("GLI", "LGG", 35, "M"), ("SSA", "HGG", 52, "M"), ("SSA", "", 47, "F")]))
    )  # fmt: skip
    code, stdout, stderr = run(
        "prepare",
        src,
        "--labels",
        src / "clinical.csv",
        "--out",
        tmp_path / "S",
        "--size",
        "16",
        "--qc",
        "0",
    )
    assert code == 0, stderr
    ds = open_store(tmp_path / "S")
    assert ds.schema.names[:4] == ["cohort", "grade", "age", "sex"]
    assert [r["grade"] for r in ds.rows] == ["HGG", "LGG", "HGG", None]
    assert ds.schema["age"].kind == "continuous" and ds.schema["sex"].categories == ["F", "M"]
    assert ds.schema["cohort"].source == "labels-csv"


def _bad_missing_modality(root: Path, s: Synth) -> list[str]:
    s.case(root, "BraTS-GLI-00002-000", skip=("t2w",))
    return ["BraTS-GLI-00002-000", "missing modality t2w"]


def _bad_shape(root: Path, s: Synth) -> list[str]:
    d = s.case(root, "BraTS-GLI-00002-000")
    save(d / "BraTS-GLI-00002-000-t1c.nii.gz", np.ones((24, 28, 19), np.int16), ras_affine())
    return ["BraTS-GLI-00002-000", "BraTS-GLI-00002-000-t1c.nii.gz: shape [24, 28, 19] differs"]


def _bad_affine(root: Path, s: Synth) -> list[str]:
    d = s.case(root, "BraTS-GLI-00002-000")
    aff = ras_affine()
    aff[2, 3] += 3.0
    save(d / "BraTS-GLI-00002-000-seg.nii.gz", phantom(0)[1], aff)
    return [
        "BraTS-GLI-00002-000",
        "-seg.nii.gz: affine differs from BraTS-GLI-00002-000-t1n.nii.gz",
    ]


def _bad_corrupt(root: Path, s: Synth) -> list[str]:
    d = s.case(root, "BraTS-GLI-00002-000")
    p = d / "BraTS-GLI-00002-000-t2f.nii.gz"
    p.write_bytes(p.read_bytes()[:200])
    return ["BraTS-GLI-00002-000", "-t2f.nii.gz: ", "NIfTI file"]


def _bad_not_nifti(root: Path, s: Synth) -> list[str]:
    d = s.case(root, "BraTS-GLI-00002-000")
    (d / "BraTS-GLI-00002-000-t1n.nii.gz").write_text("hello")
    return ["BraTS-GLI-00002-000", "-t1n.nii.gz: not a readable NIfTI file"]


def _bad_4d(root: Path, s: Synth) -> list[str]:
    d = s.case(root, "BraTS-GLI-00002-000")
    save(d / "BraTS-GLI-00002-000-t2w.nii.gz", np.ones((24, 28, 20, 3), np.int16), ras_affine())
    return ["BraTS-GLI-00002-000", "-t2w.nii.gz: 4D (3 volumes) image"]


def _bad_empty(root: Path, s: Synth) -> list[str]:
    for m in ("t1n", "t1c", "t2w", "t2f"):
        save(
            root / "BraTS-GLI-00002-000" / f"BraTS-GLI-00002-000-{m}.nii.gz",
            np.zeros((24, 28, 20), np.int16),
            ras_affine(),
        )
    return ["BraTS-GLI-00002-000", "empty brain"]


def _bad_nan(root: Path, s: Synth) -> list[str]:
    d = s.case(root, "BraTS-GLI-00002-000")
    x = phantom(0)[0]["t1c"].astype(np.float32)
    x[5, 5, 5] = np.nan
    save(d / "BraTS-GLI-00002-000-t1c.nii.gz", x, ras_affine())
    return ["BraTS-GLI-00002-000", "-t1c.nii.gz: image holds 1 NaN"]


def _bad_labels(root: Path, s: Synth) -> list[str]:
    d = s.case(root, "BraTS-GLI-00002-000")
    m = phantom(0)[1]
    m[m == 3] = 7
    save(d / "BraTS-GLI-00002-000-seg.nii.gz", m, ras_affine())
    return ["BraTS-GLI-00002-000", "-seg.nii.gz: unknown label values [7]"]


BAD_CASES: dict[str, Callable[[Path, Synth], list[str]]] = {
    "missing-modality": _bad_missing_modality,
    "mismatched-shape": _bad_shape,
    "mismatched-affine": _bad_affine,
    "corrupt": _bad_corrupt,
    "not-nifti": _bad_not_nifti,
    "4d": _bad_4d,
    "empty-brain": _bad_empty,
    "nan": _bad_nan,
    "unknown-labels": _bad_labels,
}


@pytest.mark.parametrize("kind", sorted(BAD_CASES))
def test_bad_case_fails_cleanly_or_is_skipped(tmp_path: Path, synth: Synth, kind: str) -> None:
    src = tmp_path / "src"
    synth.case(src, "BraTS-GLI-00001-000")
    expected = BAD_CASES[kind](src, synth)
    out = tmp_path / "out" / "S"
    code, stdout, stderr = run("prepare", src, "--out", out, "--size", "16", "--qc", "0")
    assert code == 2
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    for part in expected:
        assert part in stderr, (part, stderr)
    assert not (tmp_path / "out").exists()  # not even the parent folder it would have created
    assert no_store_left(tmp_path)

    code, stdout, stderr = run(
        "prepare", src, "--out", out, "--size", "16", "--qc", "0", "--skip-bad"
    )
    assert code == 0, stderr
    assert open_store(out).case_ids == ["BraTS-GLI-00001-000"]
    report = (out / "skipped.csv").read_text()
    assert "BraTS-GLI-00002-000" in report and expected[-1] in report
    assert "skipped    1 case(s)" in stdout


def test_duplicate_case_ids(tmp_path: Path, synth: Synth) -> None:
    synth.case(tmp_path / "a", "BraTS-GLI-00001-000")
    synth.case(tmp_path / "b", "BraTS-GLI-00001-000")
    code, _, stderr = run(
        "prepare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "S", "--skip-bad"
    )
    assert (
        code == 2
        and "duplicate case id 'BraTS-GLI-00001-000'" in stderr
        and stderr.count("\n") == 1
    )
    assert no_store_left(tmp_path)


def test_label_rows_for_unknown_cases(tmp_path: Path, synth: Synth) -> None:
    synth.case(tmp_path / "a", "BraTS-GLI-00001-000")
    labels = tmp_path / "labels.csv"
    labels.write_text("case_id,age\nBraTS-GLI-00001-000,50\nBraTS-GLI-00042-000,61\n")
    code, _, stderr = run("prepare", tmp_path / "a", "--labels", labels, "--out", tmp_path / "S")
    assert code == 2 and stderr.count("\n") == 1
    assert f"--labels {labels}: 1 row(s) for unknown cases, e.g. 'BraTS-GLI-00042-000'" in stderr
    assert no_store_left(tmp_path)


def test_unwritable_output(tmp_path: Path, synth: Synth) -> None:
    synth.case(tmp_path / "a", "BraTS-GLI-00001-000")
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, stderr = run("prepare", tmp_path / "a", "--out", blocker / "S")
    assert code == 2 and stderr.startswith(
        f"error: --out {blocker / 'S'}: cannot create it, {blocker} is a file"
    )
    assert stderr.count("\n") == 1 and not (blocker.parent / ".S.tmp").exists()
    other = tmp_path / "notastore"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    code, _, stderr = run("prepare", tmp_path / "a", "--out", other)
    assert code == 2 and "is not a gliomagen store; not overwriting it" in stderr
    assert (other / "keep.txt").read_text() == "mine" and not list(tmp_path.glob(".notastore.*"))


def test_reserved_label_column(tmp_path: Path, synth: Synth) -> None:
    synth.case(tmp_path / "a", "BraTS-GLI-00001-000")
    labels = tmp_path / "labels.csv"
    labels.write_text("case_id,split\nBraTS-GLI-00001-000,train\n")
    code, _, stderr = run("prepare", tmp_path / "a", "--labels", labels, "--out", tmp_path / "S")
    assert code == 2 and "label column 'split' is reserved by the store index" in stderr
    assert stderr.count("\n") == 1 and no_store_left(tmp_path)


def test_bad_options(tmp_path: Path, synth: Synth) -> None:
    synth.case(tmp_path / "a", "BraTS-GLI-00001-000")
    for args, message in [
        (["--size", "64,64"], "error: --size '64,64': expected one number or three"),
        (["--workers", "0"], "error: --workers 0: must be at least 1"),
        (
            ["--label-type", "age"],
            "error: --label-type 'age': expected name=categorical|continuous|ignore",
        ),
        (["--label-type", "age=continuous"], "error: --label-type age: no such label"),
    ]:
        code, _, stderr = run(
            "prepare", tmp_path / "a", "--out", tmp_path / "S", "--qc", "0", *args
        )
        assert code == 2 and stderr.startswith(message), (args, stderr)
        assert not (tmp_path / "S").exists() and not any(
            p.name.startswith(".") for p in tmp_path.iterdir()
        )
    code, _, stderr = run("inspect", tmp_path / "nothing")
    assert code == 2 and "not a gliomagen store" in stderr


@pytest.mark.realdata
def test_real_cases_at_size_64(real_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "S"
    code, stdout, stderr = run(
        "prepare", real_data / "brats2021", real_data / "brats2023", "--out", out, "--size", "64"
    )
    assert code == 0, stderr
    ds = open_store(out)
    assert ds.case_ids == ["BraTS2021_07294", "BraTS-GLI-00001-000"] and ds.size == (64, 64, 64)
    masks = np.load(out / "masks.npy")
    assert set(np.unique(masks[0]).tolist()) == {0, 1, 2}  # this 2021 case has no enhancing label
    assert (masks[1] == 255).all() and ds.has_mask.tolist() == [True, False]
    images = np.load(out / "images.npy")
    assert images.min() == -1.0 and images.max() == 1.0
    brain = (images[0] > -1).any(axis=0)  # [64, 64, 64]
    extent = [
        int(np.ptp(np.flatnonzero(brain.any(axis=tuple(a for a in range(3) if a != ax))))) + 1
        for ax in range(3)
    ]
    assert (
        extent[1] >= 62 and min(extent) >= 45
    )  # cropped to the brain: its longest (A-P) axis fills the grid
    meta = json.loads((out / "meta.json").read_text())
    assert meta["template_geometry"]["shape"] == [240, 240, 155]


@pytest.mark.realdata
@pytest.mark.slow
def test_real_round_trip_at_128_keeps_the_whole_tumour(real_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "S"
    code, _, stderr = run(
        "prepare", real_data / "brats2021", "--out", out, "--size", "128", "--qc", "0"
    )
    assert code == 0, stderr
    ds = open_store(out)
    _, mask, _, _ = ds[0]
    back = to_original_space(mask.numpy().astype(np.uint8), ds.geometry(0), order=0)
    seg = real_data / "brats2021" / "BraTS2021_07294" / "BraTS2021_07294_seg.nii.gz"
    orig = np.asarray(nib.load(str(seg)).dataobj) > 0
    wt = back > 0
    dice = 2 * (wt & orig).sum() / (wt.sum() + orig.sum())
    assert dice >= 0.9, dice
