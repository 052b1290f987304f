"""``generate`` with a 2D model: NIfTI and PNG slices with masks, per condition and view."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from slices2d_helpers import SIDE, run_cli

from gliomagen.data.preprocess import grid_affine
from gliomagen.data.slices import VIEW_AXIS, slice_affine
from gliomagen.generation.slices2d import plan_slices, read_slice_cohort
from gliomagen.models.loading import load_generator


def _clinical(folder: Path) -> list[dict[str, str]]:
    with open(folder / "clinical.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_files_per_slice_are_readable(cohort2d: Path) -> None:
    rows = _clinical(cohort2d)
    assert [r["view"] for r in rows] == [
        "axial",
        "coronal",
        "sagittal",
    ] * 2  # seed % 3: the views in turn
    manifest = json.loads((cohort2d / "manifest.json").read_text())
    assert (
        manifest["spatial_dims"] == 2
        and manifest["shape"] == [SIDE, SIDE]
        and manifest["n_cases"] == 6
    )
    assert manifest["views"] == ["axial", "coronal", "sagittal"]
    assert (cohort2d / "overview.png").is_file()
    for r in rows:
        cid, case = r["case_id"], cohort2d / r["case_id"]
        imgs = [nib.load(case / f"{cid}-{m}.nii.gz") for m in ("t1n", "t1c", "t2w", "t2f", "seg")]
        assert all(i.shape == (SIDE, SIDE) for i in imgs)
        seg = np.asarray(imgs[-1].dataobj)
        assert seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 1, 2, 3}
        t1c = np.asarray(imgs[1].dataobj)
        assert t1c.dtype == np.float32 and (t1c >= 0).all() and (seg[t1c == 0] == 0).all()
        for m in ("t1n", "t1c", "t2w", "t2f"):
            png = Image.open(case / f"{cid}-{m}.png")
            assert png.mode == "L" and png.size == (SIDE, SIDE)
        overlay = Image.open(case / f"{cid}-overlay.png")
        assert overlay.mode == "RGB" and overlay.size == (4 * SIDE + 3 * 2, SIDE)
        assert 0.0 <= float(r["position"]) <= 1.0


def test_slice_affines_place_the_plane(cohort2d: Path, run2d: Path) -> None:
    """Each NIfTI's affine is the template grid's, restricted to the slice's plane at its position."""
    _, _, _, meta = load_generator(run2d)
    volume = grid_affine(meta["template_geometry"])
    for r in _clinical(cohort2d):
        got = nib.load(cohort2d / r["case_id"] / f"{r['case_id']}-t1c.nii.gz").affine
        index = float(r["position"]) * (SIDE - 1)
        np.testing.assert_allclose(got, slice_affine(volume, r["view"], index), atol=1e-4)
        held = VIEW_AXIS[r["view"]]
        # voxel (0, 0) of the slice is voxel index along the held axis of the volume grid
        corner = np.zeros(4)
        corner[held], corner[3] = index, 1.0
        np.testing.assert_allclose(got[:, 3], volume @ corner, atol=1e-4)


def test_png_and_nifti_agree_after_reading_back(cohort2d: Path) -> None:
    images, masks, ids, labels, spacing = read_slice_cohort(cohort2d, SIDE)
    assert images.shape == (6, 4, SIDE, SIDE) and masks.shape == (6, SIDE, SIDE) and len(ids) == 6
    assert labels[0]["view"] == "axial" and isinstance(labels[0]["position"], float)
    assert spacing[0] > 1.0  # the 16^3 grid of a 2 mm phantom brain: coarse pixels
    for k, cid in enumerate(ids):
        for c, m in enumerate(("t1n", "t1c", "t2w", "t2f")):
            png = np.asarray(Image.open(cohort2d / cid / f"{cid}-{m}.png"), np.float32) / 127.5 - 1
            shown = images[k, c].astype(np.float32).T[::-1]  # display orientation
            np.testing.assert_allclose(png, shown, atol=1.5 / 127.5 + 2e-3)


def test_conditions_pick_view_and_position(run2d: Path, tmp_path: Path) -> None:
    out = tmp_path / "sag"
    code, stdout, err = run_cli("generate", "--checkpoint", run2d, "--n", 3, "--out", out, "--quiet",
                                "--condition", "view=sagittal", "--condition", "position=0.25", "--format", "int16")  # fmt: skip
    assert code == 0, err
    assert "wrote 3 slices" in stdout
    rows = _clinical(out)
    assert {r["view"] for r in rows} == {"sagittal"} and {r["position"] for r in rows} == {"0.25"}
    cid = rows[2]["case_id"]
    img = nib.load(out / cid / f"{cid}-t2f.nii.gz")
    assert img.get_data_dtype() == np.int16 and img.shape == (SIDE, SIDE)


def test_a_case_depends_on_its_seed_only(run2d: Path, cohort2d: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(
        "generate",
        "--checkpoint",
        run2d,
        "--n",
        1,
        "--seed",
        4,
        "--out",
        tmp_path / "one",
        "--quiet",
    )
    assert code == 0, err
    assert _clinical(tmp_path / "one")[0]["view"] == _clinical(cohort2d)[4]["view"]
    one, four = _clinical(tmp_path / "one")[0]["case_id"], _clinical(cohort2d)[4]["case_id"]
    assert one == four  # the same seed (4): the same id
    a = (tmp_path / "one" / one / f"{one}-t1c.nii.gz").read_bytes()
    b = (cohort2d / four / f"{four}-t1c.nii.gz").read_bytes()
    assert a == b


def test_unset_position_is_drawn_over_the_training_range(run2d: Path) -> None:
    _, schema, _, _ = load_generator(run2d)
    plan = plan_slices(schema, list(range(300)), {"view": "coronal"})
    pos = np.array([p["position"] for p in plan])
    f = schema["position"]
    assert {p["view"] for p in plan} == {"coronal"}
    assert pos.mean() == pytest.approx(f.mean, abs=0.05) and pos.std() == pytest.approx(
        f.std, rel=0.15
    )
    assert pos.min() >= 0.0 and pos.max() <= 1.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "brats"], "--space brats: a 2D model writes slices on its own grid"),
        (["--condition", "view=oblique"], "condition view='oblique' is not in the model"),
        (["--condition", "position=abc"], "condition position='abc' is not a number"),
    ],
)
def test_bad_input_exits_2(run2d: Path, tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = run_cli(
        "generate", "--checkpoint", run2d, "--n", 2, "--out", tmp_path / "x", "--quiet", *args
    )
    assert code == 2 and err.startswith("error: ") and message in err
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").glob("SYN-*"))


def test_unset_conditions_are_drawn_from_training_slices_given_view_and_position(
    run2d: Path, cohort2d: Path
) -> None:
    """After the view and position, the other unset fields come from one training slice each."""
    from gliomagen.generation.fill import METHOD

    G, schema, _, _ = load_generator(run2d)
    table = G.mapping.training_conditions()
    assert table is not None  # training keeps its slices' conditions
    drawn = json.loads((cohort2d / "manifest.json").read_text())["conditions_drawn"]
    assert drawn["method"] == METHOD and {"view", "position"} <= set(drawn["set"])
    rows = _clinical(cohort2d)
    others = [f for f in schema.names if f not in ("view", "position")]
    assert others and drawn["fields"] == others
    for r in rows:
        case = drawn["cases"][r["case_id"]]
        assert case["drawn"] and set(case["drawn"] + case["unknown"]) == set(others)
        cat, cont = table[0][case["donor"]], table[1][case["donor"]]
        donor = schema.decode(cat.numpy(), cont.numpy())
        assert donor["view"] == r["view"]  # the donor is a slice of the requested view
        for f in case["drawn"]:
            if schema[f].kind == "categorical":
                assert r[f] == donor[f]
            else:
                assert float(r[f]) == pytest.approx(donor[f], abs=1e-4 * schema[f].std)
