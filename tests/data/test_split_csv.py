"""``prepare --split-csv FILE``: the table fixes each case's split; every bad table is one error line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from data_cli import one_error, run
from synth_brats import Synth

from gliomagen.data.nifti import sha256
from gliomagen.data.splits import apply_split_csv, read_split_csv
from gliomagen.data.store import open_store
from gliomagen.errors import GliomagenError

IDS = [f"BraTS-{c}-{i:05d}-000" for i, c in enumerate(["GLI", "GLI", "GLI", "SSA"])]
AGES = [30, 40, 60, 71]


def no_store_left(parent: Path, name: str = "S") -> bool:
    """Neither the store nor a temporary or old copy of it is in ``parent``."""
    return not (parent / name).exists() and not list(parent.glob(f".{name}.*"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """Four BraTS 2023 cases (three GLI, one SSA) and ``labels.csv`` with their ages."""
    src = tmp_path / "cohort"
    for i, cid in enumerate(IDS):
        Synth.case(src, cid, seed=i)
    write(tmp_path / "labels.csv", "case_id,age\n" + "".join(f"{c},{a}\n" for c, a in zip(IDS, AGES, strict=True)))  # fmt: skip
    return src


def prepare(cohort: Path, out: Path, *more: str | Path) -> tuple[int, str, str]:
    labels = cohort.parent / "labels.csv"
    return run("prepare", cohort, "--labels", labels, "--out", out, "--size", "16", "--qc", "0", *more)  # fmt: skip


def index_splits(store: Path, column: str = "case_id") -> dict[str, str]:
    with open(store / "index.csv", newline="", encoding="utf-8") as fh:
        return {r[column]: r["split"] for r in csv.DictReader(fh)}


def test_the_table_fixes_the_split_and_the_train_statistics(cohort: Path, tmp_path: Path) -> None:
    # a spreadsheet's byte order mark, mixed case, spaces, an extra column and a blank line are fine
    table = write(tmp_path / "split.csv", f"\ufeffcase_id,split,note\n{IDS[0]}, Train ,x\n\n"
                  f"{IDS[1]},VAL,\n{IDS[2]},test,\n{IDS[3]},train,\n")  # fmt: skip
    out = tmp_path / "S"
    code, stdout, stderr = prepare(cohort, out, "--split-csv", table, "--seed", "7")
    assert code == 0, stderr
    assert index_splits(out) == dict(zip(IDS, ["train", "val", "test", "train"], strict=True))
    assert open_store(out, split="train").case_ids == [IDS[0], IDS[3]]
    assert open_store(out, split="val").case_ids == [IDS[1]]
    assert open_store(out, split="test").case_ids == [IDS[2]]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["split"] == {"method": "split-csv", "file": str(table.resolve()), "sha256": sha256(table)}
    assert meta["splits"] == {"train": 2, "val": 1, "test": 1}
    assert "seed" not in meta["options"] and meta["options"]["split"]["sha256"] == sha256(table)
    age = open_store(out).schema["age"]  # standardised on the table's training cases: 30 and 71
    assert age.mean == pytest.approx(50.5) and age.std == pytest.approx(np.std([30, 71]))
    assert f"splits     train 2, val 1, test 1 (from --split-csv {table.resolve()})" in stdout
    # --seed is ignored with --split-csv: another seed leaves the store as it is
    code, _, stderr = prepare(cohort, out, "--split-csv", table, "--seed", "8")
    assert code == 0 and "up to date with its inputs; nothing to do" in stderr, stderr


def test_another_table_rebuilds_and_the_same_table_elsewhere_does_not(
    cohort: Path, tmp_path: Path
) -> None:
    table = write(tmp_path / "split.csv", "case_id,split\n" + "".join(f"{c},train\n" for c in IDS))
    out = tmp_path / "S"
    assert prepare(cohort, out, "--split-csv", table)[0] == 0
    assert set(index_splits(out).values()) == {"train"}
    moved = write(tmp_path / "elsewhere.csv", table.read_text())
    code, _, stderr = prepare(cohort, out, "--split-csv", moved)
    assert code == 0 and "nothing to do" in stderr, stderr
    write(table, "case_id,split\n" + "".join(f"{c},{s}\n" for c, s in zip(IDS, ["test", "train", "train", "val"], strict=True)))  # fmt: skip
    code, _, stderr = prepare(cohort, out, "--split-csv", table)
    assert code == 0 and "nothing to do" not in stderr, stderr
    assert list(index_splits(out).values()) == ["test", "train", "train", "val"]
    assert open_store(out, split="val").case_ids == [IDS[3]]
    # without the table: the seeded split again, recorded as such
    code, _, stderr = prepare(cohort, out, "--seed", "3")
    assert code == 0 and "nothing to do" not in stderr, stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["split"] == {"method": "seeded", "seed": 3} and meta["options"]["seed"] == 3


ROWS = "".join(f"{c},train\n" for c in IDS)
BAD_TABLES: dict[str, tuple[str | bytes | None, list[str]]] = {
    "missing": (None, ["file not found"]),
    "not-utf8": (b"case_id,split\n" + "Café,train\n".encode("latin-1"), ["cannot read the table", "utf-8"]),
    "empty": ("", ["no header line"]),
    "no-rows": ("case_id,split\n", ["no rows (expected one case_id,split row per case)"]),
    "no-split-column": ("case_id,fold\n" + ROWS, ["no split column (columns: case_id, fold)"]),
    "no-case-id-column": ("id,split\n" + ROWS, ["no case_id column"]),
    "bad-value": ("case_id,split\n" + ROWS + "X,dev\n", ["line 6: split 'dev' of case 'X' is not one of train, val, test"]),
    "blank-value": (f"case_id,split\n{IDS[0]},\n" + ROWS, ["line 2: split '' of case", "is not one of train, val, test"]),
    "twice": ("case_id,split\n" + ROWS + f"{IDS[1]},val\n", [f"line 6: case '{IDS[1]}' is given twice (first on line 3)"]),
    "blank-id": ("case_id,split\n" + ROWS + ",val\n", ["line 6: no case_id (split 'val')"]),
    "unknown-id": ("case_id,split\n" + ROWS + "X1,val\nX2,test\n",
                   ["case 'X1' is not among the cases to prepare (2 such id(s); first: 'X1', 'X2')"]),
    "missing-case": ("case_id,split\n" + ROWS.split("\n", 2)[2], [f"no split for case '{IDS[0]}' (2 case(s) have none)"]),
    "no-train": ("case_id,split\n" + "".join(f"{c},{s}\n" for c, s in zip(IDS, "vvtt", strict=True)).replace(",v", ",val").replace(",t", ",test"),
                 ["no case to prepare is in the train split (val 2, test 2)"]),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(BAD_TABLES))
def test_a_bad_table_is_one_error_line_and_writes_no_store(
    cohort: Path, tmp_path: Path, kind: str
) -> None:
    content, parts = BAD_TABLES[kind]
    table = tmp_path / "split.csv"
    if isinstance(content, bytes):
        table.write_bytes(content)
    elif content is not None:
        write(table, content)
    code, _, stderr = prepare(cohort, tmp_path / "S", "--split-csv", table)
    one_error(code, stderr, f"--split-csv {table}", *parts)
    assert no_store_left(tmp_path)


def test_a_bad_table_keeps_the_old_store(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "S"
    assert prepare(cohort, out)[0] == 0
    before = (out / "meta.json").read_bytes()
    table = write(tmp_path / "split.csv", "case_id,split\n" + ROWS + "X,val\n")
    one_error(*prepare(cohort, out, "--split-csv", table)[::2], "'X' is not among the cases")
    assert (out / "meta.json").read_bytes() == before and not list(tmp_path.glob(".S.*"))


def test_skipped_cases_may_be_in_the_table(tmp_path: Path) -> None:
    src = tmp_path / "mixed"
    for i in range(3):
        Synth.case(src, f"BraTS-GLI-{i:05d}-000", seed=i)
    Synth.case(src, "BraTS-GLI-00003-000", skip=("t1c",))  # known bad when the cases are found
    bad = Synth.case(src, "BraTS-GLI-00004-000")
    (bad / "BraTS-GLI-00004-000-t2w.nii.gz").write_text("garbage")  # fails when prepared
    table = write(tmp_path / "split.csv", "case_id,split\n" + "".join(
        f"BraTS-GLI-{i:05d}-000,{s}\n" for i, s in enumerate(["train", "val", "test", "train", "train"])))  # fmt: skip
    out = tmp_path / "S"
    base = ("prepare", src, "--out", out, "--size", "16", "--qc", "0", "--split-csv", table)
    code, _, stderr = run(*base, "--skip-bad")
    assert code == 0, stderr
    assert index_splits(out) == {"BraTS-GLI-00000-000": "train", "BraTS-GLI-00001-000": "val",
                                 "BraTS-GLI-00002-000": "test"}  # fmt: skip
    assert "BraTS-GLI-00004-000" in (out / "skipped.csv").read_text()
    # the training cases the table names all fail: no store
    write(table, "case_id,split\nBraTS-GLI-00000-000,val\nBraTS-GLI-00001-000,val\n"
          "BraTS-GLI-00002-000,test\nBraTS-GLI-00004-000,train\n")  # fmt: skip
    code, _, stderr = run(*base, "--skip-bad", "--out", tmp_path / "T")
    one_error(code, stderr, "no case to prepare is in the train split (val 2, test 1)")
    assert no_store_left(tmp_path, "T")


def test_slices_keep_each_case_in_its_table_split(tmp_path: Path) -> None:
    src = tmp_path / "cohort"
    for i, cid in enumerate(IDS[:3]):
        Synth.case(src, cid, seed=i)
    table = write(tmp_path / "split.csv", f"case_id,split\n{IDS[0]},test\n{IDS[1]},train\n{IDS[2]},val\n")
    out = tmp_path / "S"
    code, stdout, stderr = run("prepare", src, "--out", out, "--slices", "--size", "16", "--qc", "0",
                               "--views", "axial", "--split-csv", table)  # fmt: skip
    assert code == 0, stderr
    with open(out / "index.csv", newline="", encoding="utf-8") as fh:
        pairs = {(r["source_case"], r["split"]) for r in csv.DictReader(fh)}
    assert pairs == {(IDS[0], "test"), (IDS[1], "train"), (IDS[2], "val")}
    assert {r["source_case"] for r in open_store(out, split="train").index_rows} == {IDS[1]}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["split"]["method"] == "split-csv" and meta["case_splits"] == {"train": 1, "val": 1, "test": 1}
    assert "seed" not in meta["options"] and "(from --split-csv" in stdout
    write(table, f"case_id,split\n{IDS[0]},train\n{IDS[1]},train\n{IDS[2]},val\nX,test\n")
    code, _, stderr = run("prepare", src, "--out", out, "--slices", "--size", "16", "--qc", "0",
                          "--views", "axial", "--split-csv", table)  # fmt: skip
    one_error(code, stderr, "case 'X' is not among the cases to prepare")
    assert json.loads((out / "meta.json").read_text()) == meta  # the old store is kept


def test_read_and_apply(tmp_path: Path) -> None:
    table = read_split_csv(write(tmp_path / "s.csv", "split,case_id\n TEST ,b\nval,a\nTrain,c\n"))
    assert table == {"b": "test", "a": "val", "c": "train"}
    assert apply_split_csv(["a", "b", "c"], table, "s.csv") == ["val", "test", "train"]
    assert apply_split_csv(["c"], table, "s.csv", skipped=["a", "b"]) == ["train"]
    with pytest.raises(GliomagenError, match=r"^--split-csv s.csv: case 'a' is not among"):
        apply_split_csv(["b", "c"], table, "s.csv")
    with pytest.raises(GliomagenError, match=r"^--split-csv s.csv: no split for case 'd' \(1 case"):
        apply_split_csv(["a", "b", "c", "d"], table, "s.csv")
