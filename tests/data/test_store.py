"""Building and reading the store: contract, determinism, streaming, atomicity, re-runs."""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from synth_brats import Synth
from torch.utils.data import DataLoader

from gliomagen.data import build_workers as build_mod
from gliomagen.data import open_store as open_store_reexport
from gliomagen.data.preprocess import to_original_space
from gliomagen.data.store import assign_splits, build_store, open_store, parse_size
from gliomagen.data.store_output import NpyWriter
from gliomagen.errors import GliomagenError

SIZE = (32, 24, 16)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture
def built(tree: dict[str, Path]) -> Path:
    src = [tree["brats2023"], tree["brats2021"], tree["brats2018"], tree["manifest"]]
    return build_store(src, tree["root"] / "S", size=SIZE, progress=False, qc_cases=2)


def test_store_contract(built: Path) -> None:
    meta = json.loads((built / "meta.json").read_text())
    ids = [
        "BraTS-GLI-00001-000",
        "BraTS-SSA-00002-000",
        "BraTS2021_00001",
        "Brats18_2013_2_1",
        "Brats18_TCIA10_1",
        "M1",
    ]
    assert meta["format_version"] == 1 and meta["size"] == list(SIZE) and meta["n_cases"] == 6
    assert (
        meta["modalities"] == ["t1n", "t1c", "t2w", "t2f"]
        and meta["canonical_orientation"] == "RAS"
    )
    assert sorted(meta["sources"]) == sorted(ids) and len(meta["sources"]["M1"]["seg"]) == 64
    assert "seg" not in meta["sources"]["BraTS-SSA-00002-000"]
    assert sum(meta["splits"].values()) == 6 and meta["preprocessing"]["percentiles"] == [0.5, 99.5]
    assert meta["template_geometry"]["shape"] == [24, 28, 20] and len(meta["spacing_mm"]) == 3
    images = np.load(built / "images.npy", mmap_mode="r")
    masks = np.load(built / "masks.npy", mmap_mode="r")
    assert images.dtype == np.float16 and images.shape == (6, 4, *SIZE)
    assert masks.dtype == np.uint8 and masks.shape == (6, *SIZE)
    assert float(images.min()) == -1.0 and float(images.max()) <= 1.0
    with open(built / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case_id"] for r in rows] == ids
    assert [r["has_mask"] for r in rows] == ["1", "0", "1", "1", "1", "1"]
    assert (masks[1] == 255).all() and set(np.unique(masks[0]).tolist()) == {0, 1, 2, 3}
    # same phantom anatomy => every labelled case has the same classes after remapping 2021 4 -> 3
    for i in (2, 3, 4):
        assert set(np.unique(masks[i]).tolist()) == {0, 1, 2, 3}
    assert [r["cohort"] for r in rows] == ["GLI", "SSA", "GLI", "GLI", "GLI", "MEN"]
    assert [r["grade"] for r in rows] == ["", "", "", "HGG", "LGG", ""]
    assert rows[5]["age"] == "61" and rows[5]["t2f_path"].endswith("vols/m1_t2f.nii.gz")
    assert rows[0]["hemisphere"] == "right" and float(rows[0]["wt_volume_ml"]) > 0
    assert json.loads(rows[0]["geometry"])["size"] == list(SIZE)
    pngs = sorted((built / "qc").iterdir())
    assert len(pngs) == 2 and {p.stem for p in pngs} <= set(ids)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert not (built / "skipped.csv").exists()


def test_open_store_dataset(built: Path) -> None:
    ds = open_store_reexport(built)
    assert len(ds) == 6 and ds.size == SIZE and ds.modalities == ["t1n", "t1c", "t2w", "t2f"]
    assert ds.schema.names == [
        "cohort",
        "grade",
        "age",
        "wt_volume_ml",
        "enhancing_fraction",
        "hemisphere",
    ]
    assert ds.has_mask.tolist() == [True, False, True, True, True, True]
    assert ds.cond_cat.shape == (6, 3) and ds.cond_cont.shape == (6, 3)
    assert ds.cond_cat.dtype == np.int64 and ds.cond_cont.dtype == np.float32
    assert ds.rows[1] == {"cohort": "SSA", "grade": None, "age": None, "wt_volume_ml": None,
                          "enhancing_fraction": None, "hemisphere": None}  # fmt: skip
    image, mask, cond, cid = ds[3]
    assert cid == "Brats18_2013_2_1"
    assert image.dtype == torch.float32 and image.shape == (4, *SIZE)
    assert mask.dtype == torch.int64 and mask.shape == SIZE
    stored = np.load(built / "images.npy")[3].astype(np.float32)
    np.testing.assert_array_equal(image.numpy(), stored)
    assert cond["cat"].tolist() == [
        ds.schema["cohort"].categories.index("GLI"),
        0,
        ds.cond_cat[3, 2],
    ]
    assert cond["cont"].dtype == torch.float32 and cond["cont"].shape == (3,)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert (
        batch[0].shape == (4, 4, *SIZE) and batch[2]["cat"].shape == (4, 3) and len(batch[3]) == 4
    )
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[0][0].numpy(), ds[0][0].numpy())
    with pytest.raises(IndexError):
        ds[6]
    back = to_original_space(ds[0][1].numpy().astype(np.uint8), ds.geometry(0), order=0)
    assert back.shape == (24, 28, 20)


def test_splits_are_subsets_and_unknown_split_fails(built: Path) -> None:
    parts = {s: open_store(built, split=s) for s in ("train", "val", "test")}
    assert sorted(sum((p.case_ids for p in parts.values()), [])) == sorted(
        open_store(built).case_ids
    )
    assert [len(p) for p in parts.values()] == [4, 1, 1]
    for p in parts.values():
        for i in range(len(p)):
            assert p[i][3] == p.case_ids[i]
    with pytest.raises(GliomagenError, match="split 'dev': must be one of train, val, test"):
        open_store(built, split="dev")
    with pytest.raises(GliomagenError, match="not a gliomagen store"):
        open_store(built.parent / "nothing")


def test_assign_splits_is_seeded_and_stratified() -> None:
    keys = ["GLI"] * 30 + ["SSA"] * 10
    a, b, c = assign_splits(keys, 0), assign_splits(keys, 0), assign_splits(keys, 1)
    assert a == b and a != c
    assert [a.count(s) for s in ("train", "val", "test")] == [32, 4, 4]
    ssa = a[30:]
    assert ssa.count("train") == 8 and ssa.count("val") + ssa.count("test") == 2
    assert assign_splits(["x"] * 2, 0) == ["train", "train"]
    assert assign_splits(["x"] * 5, 0).count("train") == 3
    assert assign_splits([], 0) == []


def test_parse_size() -> None:
    assert parse_size("64") == (64, 64, 64) and parse_size(32) == (32, 32, 32)
    assert parse_size("96,112,96") == (96, 112, 96) and parse_size([8, 9, 10]) == (8, 9, 10)
    for bad in ("0", "64,64", "a", "-8"):
        with pytest.raises(GliomagenError, match="--size"):
            parse_size(bad)


def test_rerun_on_unchanged_inputs_does_no_work(
    built: Path, tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (built / "meta.json").stat().st_mtime_ns
    src = [tree["brats2023"], tree["brats2021"], tree["brats2018"], tree["manifest"]]

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("prepare_case called on unchanged inputs")

    monkeypatch.setattr(build_mod, "prepare_case", boom)
    build_store(src, built, size=SIZE, progress=False, qc_cases=2)
    assert (built / "meta.json").stat().st_mtime_ns == before
    monkeypatch.undo()
    # a changed input or option rebuilds
    seg = tree["brats2021"] / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz"
    os.utime(seg, ns=(seg.stat().st_atime_ns, seg.stat().st_mtime_ns + 10**9))
    build_store(src, built, size=SIZE, progress=False, qc_cases=2)
    assert (built / "meta.json").stat().st_mtime_ns != before
    build_store(src, built, size=(16, 16, 16), progress=False, qc_cases=0)
    assert open_store(built).size == (16, 16, 16) and not (built / "qc").exists()
    assert _leftovers(built.parent) == []


def test_interrupted_run_leaves_nothing(
    tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = build_mod.prepare_case

    def interrupt(record, size):  # type: ignore[no-untyped-def]
        calls.append(record.case_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(record, size)

    monkeypatch.setattr(build_mod, "prepare_case", interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_store(
            [tree["brats2023"], tree["brats2021"]], tree["root"] / "S", size=SIZE, progress=False
        )
    assert not (tree["root"] / "S").exists() and _leftovers(tree["root"]) == []


def test_stale_temp_of_a_killed_run_is_removed(tree: dict[str, Path]) -> None:
    stale = tree["root"] / ".S.tmp-999999999"
    (stale / "qc").mkdir(parents=True)
    build_store([tree["brats2021"]], tree["root"] / "S", size=SIZE, progress=False, qc_cases=0)
    assert not stale.exists() and _leftovers(tree["root"]) == []


def test_labels_csv_join_inference_and_override(tree: dict[str, Path]) -> None:
    labels = tree["root"] / "clinical.csv"
    labels.write_text(
        "case_id,grade,age,sex,idh\nBraTS-GLI-00001-000,HGG,61,F,1\nBraTS-SSA-00002-000,LGG,45,M,0\n"
    )
    out = build_store([tree["brats2023"]], tree["root"] / "S", labels_csv=labels, size=SIZE, progress=False,
                      label_types=["idh=categorical", "age=continuous"], qc_cases=0)  # fmt: skip
    ds = open_store(out)
    assert ds.schema.names == [
        "cohort",
        "grade",
        "age",
        "sex",
        "idh",
        "wt_volume_ml",
        "enhancing_fraction",
        "hemisphere",
    ]
    assert [f.source for f in ds.schema.fields][:5] == [
        "id",
        "labels-csv",
        "labels-csv",
        "labels-csv",
        "labels-csv",
    ]
    assert ds.rows[0]["grade"] == "HGG" and ds.rows[1]["age"] == 45.0 and ds.rows[1]["idh"] == "0"
    assert ds.schema["age"].kind == "continuous"
    labels.write_text("case_id,age\nBraTS-GLI-00001-000,61\nBraTS-GLI-09999-000,45\n")
    with pytest.raises(
        GliomagenError, match=r"1 row\(s\) for unknown cases, e.g. 'BraTS-GLI-09999-000'"
    ):
        build_store(
            [tree["brats2023"]], tree["root"] / "T", labels_csv=labels, size=SIZE, progress=False
        )
    assert not (tree["root"] / "T").exists()


def test_skip_bad_stores_good_cases_and_reports(tree: dict[str, Path], synth: Synth) -> None:
    src = tree["root"] / "mixed"
    synth.case(src, "BraTS-GLI-00001-000")
    synth.case(src, "BraTS-GLI-00002-000", skip=("t1c",))
    bad = synth.case(src, "BraTS-GLI-00003-000")
    (bad / "BraTS-GLI-00003-000-t2w.nii.gz").write_text("garbage")
    out = build_store(
        [src], tree["root"] / "S", size=SIZE, skip_bad=True, progress=False, qc_cases=0
    )
    ds = open_store(out)
    assert ds.case_ids == ["BraTS-GLI-00001-000"]
    assert "grade" not in ds.schema and ds.rows[0]["grade"] is None  # always there, None if unknown
    cat, cont = ds.schema.encode(ds.rows[0])
    np.testing.assert_array_equal(cat, ds.cond_cat[0])
    np.testing.assert_array_equal(cont, ds.cond_cont[0])
    with open(out / "skipped.csv", newline="") as fh:
        report = list(csv.DictReader(fh))
    assert [r["case_id"] for r in report] == ["BraTS-GLI-00002-000", "BraTS-GLI-00003-000"]
    assert report[0]["problem"].endswith("missing modality t1c")
    assert "-t2w.nii.gz: not a readable NIfTI file" in report[1]["problem"]
    assert len(json.loads((out / "meta.json").read_text())["skipped"]) == 2
    assert np.load(out / "images.npy", mmap_mode="r").shape[0] == 1
    with pytest.raises(GliomagenError, match="BraTS-GLI-00002-000: .*missing modality t1c"):
        build_store([src], tree["root"] / "T", size=SIZE, progress=False)


def test_two_workers_give_the_same_store(tree: dict[str, Path]) -> None:
    src = [tree["brats2023"], tree["brats2021"], tree["brats2018"]]
    one = build_store(src, tree["root"] / "one", size=SIZE, workers=1, progress=False, qc_cases=0)
    two = build_store(src, tree["root"] / "two", size=SIZE, workers=2, progress=False, qc_cases=0)
    for name in ("images.npy", "masks.npy", "index.csv"):
        assert (one / name).read_bytes() == (two / name).read_bytes()


def test_npy_writer_shrinks_to_the_written_count(tmp_path: Path) -> None:
    w = NpyWriter(tmp_path / "a.npy", np.float16, (2, 3), capacity=1000)
    w.write(0, np.ones((2, 3)))
    w.write(1, np.full((2, 3), 2.0))
    w.close(2)
    arr = np.load(tmp_path / "a.npy")
    assert arr.shape == (2, 2, 3) and arr.dtype == np.float16
    np.testing.assert_array_equal(arr[:, 0, 0], [1.0, 2.0])
    assert (tmp_path / "a.npy").stat().st_size == 128 + 2 * 2 * 3 * 2


def test_sigterm_with_workers_leaves_no_store_and_no_processes(tree: dict[str, Path]) -> None:
    marker = "gliomagen-sigterm-test"
    code = f"""
import sys, time
import gliomagen.data.build as b
import gliomagen.data.build_workers as w
real = w.prepare_case
def slow(record, size):
    time.sleep(0.5)
    return real(record, size)
w.prepare_case = slow
b.build_store([{str(tree["brats2023"])!r}, {str(tree["brats2018"])!r}], {str(tree["root"] / "S")!r},
              size=16, workers=2, progress=False, qc_cases=0)
"""
    proc = subprocess.Popen([sys.executable, "-c", code, marker])
    deadline = time.time() + 60
    while not any(p.name.startswith(".S.tmp-") for p in tree["root"].iterdir()):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) != 0
    assert not (tree["root"] / "S").exists() and _leftovers(tree["root"]) == []
    time.sleep(0.5)
    alive = []
    for pid in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state != "Z":
            alive.append(pid)
    assert alive == []
