"""``prepare --slices``: shapes, the slices themselves, conditions, split by case, inspect, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from slices2d_helpers import SIDE, run_cli

from gliomagen.data.slices import VIEW_AXIS, parse_slice_size, take_slice
from gliomagen.data.store import build_store, open_store
from gliomagen.errors import GliomagenError


def _rows(store: Path, name: str = "index.csv") -> list[dict[str, str]]:
    with open(store / name, newline="") as fh:
        return list(csv.DictReader(fh))


def test_store_shapes_and_meta(slice_store: Path) -> None:
    meta = json.loads((slice_store / "meta.json").read_text())
    images = np.load(slice_store / "images.npy", mmap_mode="r")
    masks = np.load(slice_store / "masks.npy", mmap_mode="r")
    rows = _rows(slice_store)
    assert images.shape == (len(rows), 4, SIDE, SIDE) and images.dtype == np.float16
    assert masks.shape == (len(rows), SIDE, SIDE) and masks.dtype == np.uint8
    assert (
        meta["spatial_dims"] == 2 and meta["size"] == [SIDE, SIDE] and meta["n_slices"] == len(rows)
    )
    assert meta["slices"]["views"] == ["axial", "coronal", "sagittal"]
    assert sum(meta["slices"]["per_view"].values()) == len(rows) and meta["n_cases"] == 5
    assert set(np.unique(masks)) <= {0, 1, 2, 3}
    assert float(images.min()) == -1.0 and float(images.max()) <= 1.0
    assert len(_rows(slice_store, "cases.csv")) == 5  # the per-case index of the volume pipeline
    assert (slice_store / "qc").is_dir() and list((slice_store / "qc").glob("*-slices.png"))
    # no volume arrays and no temporary folder are left behind
    assert not (slice_store / "volumes").exists() and not list(slice_store.parent.glob(".S2.*"))
    ds = open_store(slice_store)
    img, mask, cond, cid = ds[0]
    assert ds.spatial_dims == 2 and img.shape == (4, SIDE, SIDE) and mask.shape == (SIDE, SIDE)
    assert cid == rows[0]["case_id"] and cid.startswith(
        rows[0]["source_case"] + "-" + rows[0]["view"]
    )


def test_slices_are_the_cut_volumes_and_keep_enough_brain(
    phantoms: Path, slice_store: Path, tmp_path: Path
) -> None:
    """Every stored slice equals the slice of the same case in a 16^3 volume store, and has brain >= 0.1."""
    vol = build_store([phantoms], tmp_path / "V", labels_csv=phantoms / "clinical.csv", size=SIDE,
                      progress=False, qc_cases=0)  # fmt: skip
    vds = open_store(vol)
    rows = _rows(slice_store)
    images = np.load(slice_store / "images.npy")
    masks = np.load(slice_store / "masks.npy")
    by_case = {cid: i for i, cid in enumerate(vds.case_ids)}
    kept: dict[tuple[str, str], list[int]] = {}
    for k, row in enumerate(rows):
        v_img, v_mask, _, _ = vds[by_case[row["source_case"]]]
        i = int(row["slice_index"])
        np.testing.assert_array_equal(
            images[k], take_slice(v_img.numpy().astype(np.float16), row["view"], i)
        )
        np.testing.assert_array_equal(masks[k], take_slice(v_mask.numpy(), row["view"], i))
        assert float(row["position"]) == pytest.approx(i / (SIDE - 1), abs=1e-6)
        kept.setdefault((row["source_case"], row["view"]), []).append(i)
    # the kept slices are exactly those whose brain covers >= 10 % of the slice
    for (case, view), idx in kept.items():
        v_img, v_mask, _, _ = vds[by_case[case]]
        brain = (v_img.numpy() > -1).any(0) | ((v_mask.numpy() >= 1) & (v_mask.numpy() <= 3))
        frac = brain.mean(axis=tuple(a for a in range(3) if a != VIEW_AXIS[view]))
        assert idx == [i for i in range(SIDE) if frac[i] >= 0.1]
        assert 0 < len(idx) < SIDE  # the edges of the brain box are dropped


def test_conditions_view_and_position(slice_store: Path) -> None:
    ds = open_store(slice_store)
    view, pos = ds.schema["view"], ds.schema["position"]
    assert view.kind == "categorical" and view.categories == ["axial", "coronal", "sagittal"]
    assert pos.kind == "continuous" and pos.source == "slice"
    train = open_store(slice_store, "train")
    train_pos = np.array([float(r["position"]) for r in train.index_rows])
    assert pos.mean == pytest.approx(train_pos.mean()) and pos.std == pytest.approx(train_pos.std())
    assert {"cohort", "grade", "age", "sex"} <= set(ds.schema.names)
    cat_names = [f.name for f in ds.schema.categorical]
    for i in (0, len(ds) // 2, len(ds) - 1):
        cond = ds[i][2]
        assert (
            view.categories[int(cond["cat"][cat_names.index("view")])] == ds.index_rows[i]["view"]
        )


def test_split_is_by_case(slice_store: Path) -> None:
    rows = _rows(slice_store)
    cases = {r["case_id"]: r["split"] for r in _rows(slice_store, "cases.csv")}
    per_case: dict[str, set[str]] = {}
    for r in rows:
        per_case.setdefault(r["source_case"], set()).add(r["split"])
    assert all(len(s) == 1 for s in per_case.values())
    assert {c: next(iter(s)) for c, s in per_case.items()} == cases
    meta = json.loads((slice_store / "meta.json").read_text())
    assert meta["case_splits"] == {"train": 3, "val": 1, "test": 1}
    assert meta["splits"]["train"] == sum(r["split"] == "train" for r in rows)


def test_inspect_describes_the_slices(slice_store: Path) -> None:
    code, out, err = run_cli("inspect", slice_store)
    assert code == 0, err
    n = len(_rows(slice_store))
    assert f"slices     {n} from 5 cases" in out
    assert f"grid       {SIDE} x {SIDE} slices of a {SIDE}^3 grid" in out
    assert "(by case: train 3, val 1, test 1)" in out
    assert "view                 categorical axial " in out and "[view]" in out
    assert "position             continuous" in out


def test_options_change_what_is_kept(phantoms: Path, slice_store: Path, tmp_path: Path) -> None:
    code, _, err = run_cli("prepare", phantoms, "--out", tmp_path / "A", "--slices", "--size", SIDE,
                           "--views", "sagittal,axial", "--min-brain-fraction", "0.4", "--slice-step", "2", "--qc", 0)  # fmt: skip
    assert code == 0, err
    rows = _rows(tmp_path / "A")
    assert {r["view"] for r in rows} == {"axial", "sagittal"}
    assert all(float(r["brain_fraction"]) >= 0.4 and int(r["slice_index"]) % 2 == 0 for r in rows)
    assert 0 < len(rows) < len(_rows(slice_store)) / 2
    meta = json.loads((tmp_path / "A" / "meta.json").read_text())
    assert meta["schema"]["fields"][-2]["categories"] == ["axial", "sagittal"]
    stamp = (tmp_path / "A" / "meta.json").stat().st_mtime_ns  # unchanged inputs: nothing to do
    code, _, err = run_cli("prepare", phantoms, "--out", tmp_path / "A", "--slices", "--size", SIDE,
                           "--views", "sagittal,axial", "--min-brain-fraction", "0.4", "--slice-step", "2", "--qc", 0)  # fmt: skip
    assert (
        code == 0
        and "up to date" in err
        and (tmp_path / "A" / "meta.json").stat().st_mtime_ns == stamp
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--slices", "--size", "16,16,16"],
            "--size '16,16,16': with --slices give the side of a square slice",
        ),
        (["--slices", "--size", "16,24"], "--size '16,24': with --slices"),
        (["--slices", "--size", "2"], "--size"),
        (
            ["--slices", "--min-brain-fraction", "1.5"],
            "--min-brain-fraction 1.5: must be in [0, 1)",
        ),
        (
            ["--slices", "--views", "axial,oblique"],
            "--views axial,oblique: expected one or more of",
        ),
        (["--slices", "--slice-step", "0"], "--slice-step 0: must be at least 1"),
        (["--min-brain-fraction", "0.2"], "--min-brain-fraction: only with --slices"),
        (["--views", "axial"], "--views: only with --slices"),
        (
            ["--slices", "--size", "16", "--min-brain-fraction", "0.999"],
            "no slice has a brain fraction of at least 0.999",
        ),
    ],
)
def test_bad_input_exits_2_and_leaves_nothing(
    phantoms: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "bad" / "S"
    code, _, err = run_cli("prepare", phantoms, "--out", out, "--qc", 0, *args)
    assert code == 2, err
    last = err.strip().splitlines()[-1]  # progress lines may come first
    assert last.startswith("error: ") and message in last
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())


def test_a_label_named_view_is_refused(phantoms: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    ids = sorted(p.name for p in phantoms.iterdir() if p.is_dir())
    labels.write_text("case_id,view\n" + "".join(f"{c},x\n" for c in ids))
    code, _, err = run_cli(
        "prepare", phantoms, "--labels", labels, "--out", tmp_path / "S", "--slices", "--size", SIDE
    )
    assert code == 2 and "label column 'view' is reserved in a slice store" in err
    assert not (tmp_path / "S").exists()


def test_parse_slice_size() -> None:
    assert (
        parse_slice_size(256) == 256
        and parse_slice_size("64") == 64
        and parse_slice_size("32,32") == 32
    )
    assert parse_slice_size("32x32") == 32
    with pytest.raises(GliomagenError, match="square slice"):
        parse_slice_size([16, 16, 16])
