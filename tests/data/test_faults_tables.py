"""The tables people edit: manifests, ``--labels`` and a store's ``index.csv``.

A malformed table is one ``error: FILE line N: ...`` line naming the column; a doubtful one (a
number column with ``55y`` in it, cases without a row, no rows at all) is used with a
``warning:`` line saying what was inferred; a spreadsheet's byte order mark is fine everywhere.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from data_cli import one_error, run
from synth_brats import Synth

from gliomagen.data.store import open_store

IDS = [f"BraTS-{c}-{i:05d}-000" for i, c in enumerate(["GLI", "GLI", "SSA"])]


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    for i, cid in enumerate(IDS):
        Synth.case(tmp_path / "cohort", cid, seed=i)
    return tmp_path / "cohort"


def prepare(
    cohort: Path, out: Path, labels: Path | None = None, *more: str
) -> tuple[int, str, str]:
    extra = ["--labels", labels] if labels else []
    return run("prepare", cohort, "--out", out, "--size", "16", "--qc", "0", *extra, *more)


# -- defect 5: manifests ----------------------------------------------------------------------
def _manifest(folder: Path, text: str) -> Path:
    Synth.case(folder / "vols", "A", seed=0)  # vols/A/A-t1n.nii.gz, ...
    (folder / "m.csv").write_text(text.replace("{v}", "vols/A/A-"), encoding="utf-8")
    return folder / "m.csv"


def test_a_manifest_row_with_an_extra_field_is_one_error_line(tmp_path: Path) -> None:
    m = _manifest(
        tmp_path / "man",
        "case_id,t1n,t1c,t2w,t2f\nA,{v}t1n.nii.gz,{v}t1c.nii.gz,{v}t2w.nii.gz,{v}t2f.nii.gz,61\n",
    )
    code, _, stderr = run("prepare", m, "--out", tmp_path / "S", "--size", "16")
    one_error(code, stderr, f"{m} line 2: 6 fields but the header has 5 columns", "'61'")


def test_a_manifest_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    m = _manifest(
        tmp_path / "man",
        "\ufeffcase_id,t1n,t1c,t2w,t2f,seg\nA,{v}t1n.nii.gz,{v}t1c.nii.gz,{v}t2w.nii.gz,{v}t2f.nii.gz,{v}seg.nii.gz\n",
    )
    code, _, stderr = run("prepare", m, "--out", tmp_path / "S", "--size", "16", "--qc", "0")
    assert code == 0, stderr
    assert open_store(tmp_path / "S").case_ids == ["A"]


# -- defect 7: index.csv --------------------------------------------------------------------
@pytest.fixture
def store(cohort: Path, tmp_path: Path) -> Path:
    code, _, stderr = prepare(cohort, tmp_path / "S")
    assert code == 0, stderr
    return tmp_path / "S"


def _rewrite_index(
    store: Path, *, bom: bool = False, drop: str | None = None, encoding: str = "utf-8"
) -> None:
    with open(store / "index.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    header = [h for h in rows[0] if h != drop]
    with open(
        store / "index.csv", "w", newline="", encoding="utf-8-sig" if bom else encoding
    ) as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_an_index_saved_with_a_byte_order_mark_opens(store: Path) -> None:
    _rewrite_index(store, bom=True)
    assert open_store(store, split="train").case_ids
    code, stdout, stderr = run("inspect", store)
    assert code == 0 and IDS[0] in stdout, stderr


@pytest.mark.parametrize("column", ["split", "case_id", "has_mask"])
def test_an_index_without_a_required_column_is_one_error_line(store: Path, column: str) -> None:
    _rewrite_index(store, drop=column)
    code, _, stderr = run("inspect", store)
    one_error(code, stderr, f"{store / 'index.csv'}: no {column} column")


# -- defect 9: --labels ------------------------------------------------------------------------
def _labels(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clinical.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_labels_column_named_twice_is_an_error(cohort: Path, tmp_path: Path) -> None:
    labels = _labels(tmp_path, f"case_id,age,sex,age\n{IDS[0]},61,F,16\n")
    code, _, stderr = prepare(cohort, tmp_path / "S", labels)
    one_error(
        code, stderr, f"--labels {labels} line 1: column 'age' appears twice (columns 2 and 4)"
    )
    assert not (tmp_path / "S").exists()


@pytest.mark.parametrize(
    ("row", "message"),
    [("61", "line 3: 2 fields but the header has 3 columns (no value for column 'sex')"),
     ("61,F,1.5T", "line 3: 4 fields but the header has 3 columns (extra field(s) '1.5T' after column 'sex')")],
)  # fmt: skip
def test_a_ragged_labels_row_is_an_error(
    cohort: Path, tmp_path: Path, row: str, message: str
) -> None:
    labels = _labels(tmp_path, f"case_id,age,sex\n{IDS[0]},55,M\n{IDS[1]},{row}\n")
    code, _, stderr = prepare(cohort, tmp_path / "S", labels)
    one_error(code, stderr, f"--labels {labels} {message}")


def test_numbers_with_text_in_them_warn_and_inspect_says_what_was_inferred(
    cohort: Path, tmp_path: Path
) -> None:
    labels = _labels(tmp_path, f"case_id,age\n{IDS[0]},55y\n{IDS[1]},61\n{IDS[2]},n/a\n")
    code, _, stderr = prepare(cohort, tmp_path / "S", labels)
    assert code == 0, stderr
    assert "warning: label age (labels-csv): 2 value(s) are not numbers ('55y', 'n/a'), so age is read as categorical with 3 categories" in stderr  # fmt: skip
    code, stdout, _ = run("inspect", tmp_path / "S")
    assert "  age                  categorical 61 1, 55y 1, n/a 1  [labels-csv] (kind inferred from the values)" in stdout  # fmt: skip


def test_inf_in_a_number_column_warns(cohort: Path, tmp_path: Path) -> None:
    labels = _labels(tmp_path, f"case_id,age\n{IDS[0]},inf\n{IDS[1]},61\n{IDS[2]},47\n")
    code, _, stderr = prepare(cohort, tmp_path / "S", labels)
    assert (
        code == 0
        and "warning: label age (labels-csv): 1 value(s) are not numbers ('inf')" in stderr
    )


def test_a_labels_table_without_rows_warns(cohort: Path, tmp_path: Path) -> None:
    labels = _labels(tmp_path, "case_id,age,sex\n")
    code, _, stderr = prepare(cohort, tmp_path / "S", labels)
    assert code == 0, stderr
    assert f"warning: --labels {labels}: the table has a header but no rows" in stderr
    code, stdout, _ = run("inspect", tmp_path / "S")
    assert "  age                  left out    (no values)  [labels-csv]" in stdout


def test_cases_without_a_labels_row_warn(cohort: Path, tmp_path: Path) -> None:
    labels = _labels(tmp_path, f"case_id,age\n{IDS[0]},61\n")
    code, _, stderr = prepare(cohort, tmp_path / "S", labels)
    assert code == 0, stderr
    assert (
        f"warning: --labels {labels}: 2 of 3 case(s) have no row, e.g. {IDS[1]}, {IDS[2]}" in stderr
    )


def test_inspect_shows_what_decided_each_label(cohort: Path, tmp_path: Path) -> None:
    labels = _labels(
        tmp_path,
        "case_id,age,sex,site\n" + "".join(f"{c},{50 + i},F,A\n" for i, c in enumerate(IDS)),
    )
    code, _, stderr = prepare(cohort, tmp_path / "S", labels, "--label-type", "age=categorical",
                              "--label-type", "site=ignore")  # fmt: skip
    assert code == 0 and "warning" not in stderr, stderr
    code, stdout, _ = run("inspect", tmp_path / "S")
    assert (
        "  age                  categorical 50 1, 51 1, 52 1  [labels-csv] (kind from --label-type)"
        in stdout
    )
    assert (
        "  sex                  categorical F 3  [labels-csv]\n" in stdout
    )  # a known label: fixed kind
    assert "  site                 left out    (--label-type ignore)  [labels-csv]" in stdout
    assert "  cohort               categorical GLI 2, SSA 1  [id]\n" in stdout
