"""Unset conditions are drawn from the training cases given the set ones (generation.fill)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from generation_fixtures import case_file, save_tiny_checkpoint, store_meta, tiny_generator
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.errors import GliomagenError
from gliomagen.generation import generate_cohort
from gliomagen.generation.fill import (
    METHOD,
    NO_TABLE,
    NOT_DRAWN,
    CaseTable,
    donor_value,
    fill_unset,
)
from gliomagen.generation.plan import plan_conditions
from gliomagen.models.case_table import BANDWIDTH, MISMATCH_LOG

# grade, age, enhancing fraction of the training cases: LGG never enhances, HGG always does
TRAINING = [
    ("GLI", "LGG", 30.0, 0.0), ("SSA", "LGG", 35.0, 0.0), ("GLI", "LGG", 40.0, 0.0),
    ("SSA", "LGG", 45.0, 0.0), ("GLI", "HGG", 60.0, 0.3), ("SSA", "HGG", 65.0, 0.4),
    ("GLI", "HGG", 70.0, 0.5), ("GLI", "HGG", 75.0, 0.6),
]  # fmt: skip


def schema() -> ConditionSchema:
    return ConditionSchema([
        ConditionField("cohort", "categorical", categories=["GLI", "SSA"]),
        ConditionField("grade", "categorical", categories=["HGG", "LGG"]),
        ConditionField("age", "continuous", mean=55.0, std=12.0),
        ConditionField("enhancing_fraction", "continuous", mean=0.2, std=0.2, source="mask"),
    ])  # fmt: skip


def table(rows: list[tuple[Any, ...]] = TRAINING) -> CaseTable:
    s = schema()
    cat, cont = s.encode_many(
        [dict(zip(["cohort", "grade", "age", "enhancing_fraction"], r, strict=True)) for r in rows]
    )
    return CaseTable(torch.as_tensor(cat), torch.as_tensor(cont), [2, 2])


def fill(conditions: dict[str, Any], seeds: list[int], **kw: Any):  # noqa: ANN201
    s = schema()
    plan = plan_conditions(s, len(seeds), conditions)
    return fill_unset(s, plan, seeds, **{"table": table(), **kw})


def test_an_lgg_request_draws_lgg_values_and_hgg_hgg_ones() -> None:
    seeds = list(range(30))
    lgg, hgg = fill({"grade": "LGG"}, seeds), fill({"grade": "HGG"}, seeds)
    assert {r["enhancing_fraction"] for r in lgg.plan} == {0.0}
    assert {r["grade"] for r in lgg.plan} == {"LGG"}
    assert {r["age"] for r in lgg.plan} <= {30.0, 35.0, 40.0, 45.0}
    assert min(r["enhancing_fraction"] for r in hgg.plan) > 0.1
    assert {r["age"] for r in hgg.plan} == {60.0, 65.0, 70.0, 75.0}  # every HGG case drawn
    assert set(lgg.donors) == {0, 1, 2, 3} and set(hgg.donors) == {4, 5, 6, 7}
    assert lgg.drawn == [["cohort", "age", "enhancing_fraction"]] * 30
    # a donor's values travel together: its cohort, age and enhancing fraction
    for row, d in zip(hgg.plan, hgg.donors, strict=True):
        assert (row["cohort"], row["age"], row["enhancing_fraction"]) == (
            TRAINING[d][0], TRAINING[d][2], TRAINING[d][3],
        )  # fmt: skip


def test_set_fields_are_kept_and_weigh_the_donors() -> None:
    out = fill({"grade": "LGG", "age": 33, "enhancing_fraction": 0.45}, list(range(20)))
    kept = {(r["grade"], r["age"], r["enhancing_fraction"]) for r in out.plan}
    assert kept == {("LGG", 33.0, 0.45)}
    # the LGG cases weighted by age: 30 and 35 (0.25 and 0.17 sd from 33) by 0.88 and 0.95,
    # 40 and 45 (0.58 and 1 sd) by 0.51 and 0.14
    assert set(out.donors) <= {0, 1, 2, 3} and out.drawn[0] == ["cohort"]
    assert sum(d in (0, 1) for d in out.donors) > sum(d in (2, 3) for d in out.donors)
    # a number alone picks the cases near it: 72 years -> HGG cases
    old = fill({"age": 72}, list(range(20)))
    assert {r["grade"] for r in old.plan} == {"HGG"} and {r["age"] for r in old.plan} == {72.0}


def test_same_seed_same_donor_other_seeds_other_donors() -> None:
    a = fill({"grade": "HGG"}, [3, 4, 5, 6, 7, 8])
    b = fill({"grade": "HGG"}, [5])  # case 5 alone, as --seeds 5
    assert b.donors == [a.donors[2]] and b.plan == [a.plan[2]]
    assert fill({"grade": "HGG"}, [3, 4, 5, 6, 7, 8]).donors == a.donors
    assert len(set(a.donors)) >= 3
    # a request row elsewhere in a CSV does not change a case's draw
    s = schema()
    mixed = plan_conditions(s, 2, [{"grade": "LGG"}, {"grade": "HGG"}])
    assert fill_unset(s, mixed, [9, 5], table()).plan[1] == b.plan[0]


def test_a_donor_without_a_value_leaves_the_field_unknown() -> None:
    rows = [(None, "HGG", None, 0.5)]  # a training case without cohort and age
    out = fill_unset(schema(), [{"grade": "HGG"}], [0], table(rows))
    assert out.plan == [{"cohort": None, "grade": "HGG", "age": None, "enhancing_fraction": 0.5}]
    assert out.drawn == [["enhancing_fraction"]] and out.left_unknown == [["cohort", "age"]]


def test_without_a_table_or_when_asked_fields_stay_unknown() -> None:
    s = schema()
    plan = plan_conditions(s, 2, {"grade": "LGG"})
    old = fill_unset(s, plan, [0, 1], None)
    asked = fill_unset(s, plan, [0, 1], table(), "unknown")
    for out, why in ((old, NO_TABLE), (asked, NOT_DRAWN)):
        assert out.plan == plan and out.donors == [None, None] and out.drawn == [[], []]
        assert out.record(["a", "b"]) == why
    with pytest.raises(GliomagenError, match="--unset 'x': must be one of drawn, blended, unknown"):
        fill_unset(s, plan, [0, 1], table(), "x")


def test_blended_numbers_lie_between_two_donors_of_the_same_set_fields() -> None:
    """unset="blended": no drawn row repeats a training case's numbers; each lies between its donor's
    and a second donor's (LGG stays at enhancing fraction 0; HGG ages within the HGG cases');
    categories stay the donor's; the same seed gives the same row."""
    seeds = list(range(40))
    lgg = fill({"grade": "LGG"}, seeds, unset="blended")
    hgg = fill({"grade": "HGG"}, seeds, unset="blended")
    assert {r["enhancing_fraction"] for r in lgg.plan} == {0.0}
    assert all(30.0 <= r["age"] <= 45.0 for r in lgg.plan)
    assert all(60.0 <= r["age"] <= 75.0 and 0.3 <= r["enhancing_fraction"] <= 0.6 for r in hgg.plan)
    ages = {t[2] for t in TRAINING}
    assert not any(r["age"] in ages for r in hgg.plan + lgg.plan)  # the partner is another case
    for row, d in zip(hgg.plan, hgg.donors, strict=True):
        assert row["cohort"] == TRAINING[d][0]
    assert fill({"grade": "HGG"}, [7], unset="blended").plan == [hgg.plan[7]]
    assert fill({"grade": "HGG"}, seeds).plan != hgg.plan  # off by default
    rec = hgg.record([f"c{i}" for i in range(40)])
    assert rec["method"].endswith("u ~ U(0, 1))")
    partner, u = rec["cases"]["c3"]["partner"], rec["cases"]["c3"]["blend"]
    assert partner != hgg.donors[3] and 0 <= u <= 1
    assert "partner" not in fill({"grade": "HGG"}, seeds).record(["c"] * 40)["cases"]["c"]


def test_drawn_numbers_are_what_clinical_csv_shows() -> None:
    f = schema()["enhancing_fraction"]
    assert donor_value(f, np.float32((0.0 - 0.2) / 0.2)) == 0.0  # not -1.49e-09 nor -0
    assert donor_value(f, np.float32((0.123456789 - 0.2) / 0.2)) == 0.123457
    assert donor_value(f, 0.0) is None  # exactly the mean: how a missing number was encoded
    assert donor_value(schema()["grade"], 2) is None and donor_value(schema()["grade"], 1) == "LGG"


# --- the whole command ----------------------------------------------------------------------------


def _checkpoint(folder: Path, reference_record: Any, with_table: bool = True) -> Path:
    s = schema()
    G = tiny_generator(s)
    if with_table:
        t = table()
        G.mapping.set_case_table(t.cat, t.cont)
    return save_tiny_checkpoint(folder, G, s, store_meta(reference_record, schema=s))


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "clinical.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def _gen(ckpt: Path, out: Path, conditions: dict[str, Any], **kw: Any) -> Path:
    kw = {"n": 4, "seed": 0, "space": "native", "noise_mode": "const", "progress": False, **kw}
    return generate_cohort(ckpt, out, conditions=conditions, **kw)


def test_clinical_csv_and_manifest_say_what_was_drawn(tmp_path: Path, reference_record: Any) -> None:
    ckpt = _checkpoint(tmp_path / "run", reference_record)
    lgg = _gen(ckpt, tmp_path / "lgg", {"grade": "LGG"})
    hgg = _gen(ckpt, tmp_path / "hgg", {"grade": "HGG", "cohort": "GLI"})
    assert [r["enhancing_fraction"] for r in _rows(lgg)] == ["0"] * 4
    assert {r["age"] for r in _rows(lgg)} <= {"30", "35", "40", "45"}
    assert all(float(r["enhancing_fraction"]) > 0.1 for r in _rows(hgg))
    assert {r["cohort"] for r in _rows(hgg)} == {"GLI"}  # set: kept
    assert {r["age"] for r in _rows(hgg)} <= {"60", "70", "75"}  # the GLI HGG cases
    drawn = _manifest(lgg)["conditions_drawn"]
    assert {k: v for k, v in drawn.items() if k != "cases"} == {
        "method": METHOD,
        "fields": ["cohort", "age", "enhancing_fraction"],
        "set": ["grade"],
        "kernel": {"bandwidth_sd": BANDWIDTH, "category_mismatch_log": MISMATCH_LOG},
    }
    cases = drawn["cases"]
    assert list(cases) == _manifest(lgg)["case_ids"]
    assert [c["drawn"] for c in cases.values()] == [["cohort", "age", "enhancing_fraction"]] * 4
    assert [c["unknown"] for c in cases.values()] == [[]] * 4
    assert all(c["donor"] in (0, 1, 2, 3) for c in cases.values())
    assert _manifest(hgg)["conditions_drawn"]["set"] == ["cohort", "grade"]
    assert _manifest(hgg)["conditions_requested"] == {"grade": "HGG", "cohort": "GLI"}


def test_one_seed_regenerates_its_case_bit_for_bit(tmp_path: Path, reference_record: Any) -> None:
    ckpt = _checkpoint(tmp_path / "run", reference_record)
    cohort = _gen(ckpt, tmp_path / "all", {"grade": "HGG"}, noise_mode="random")
    alone = _gen(ckpt, tmp_path / "one", {"grade": "HGG"}, n=None, seeds=[2], noise_mode="random")
    assert _rows(alone)[0] == _rows(cohort)[2]
    for suffix in ("t1c.nii.gz", "seg.nii.gz"):
        assert case_file(alone, 0, suffix).read_bytes() == case_file(cohort, 2, suffix).read_bytes()


def test_unset_unknown_and_old_checkpoints_behave_as_before(
    tmp_path: Path, reference_record: Any
) -> None:
    new = _checkpoint(tmp_path / "new", reference_record)
    old = _checkpoint(tmp_path / "old", reference_record, with_table=False)
    asked = _gen(new, tmp_path / "asked", {"grade": "LGG"}, unset="unknown")
    before = _gen(old, tmp_path / "before", {"grade": "LGG"})
    drawn = _gen(new, tmp_path / "drawn", {"grade": "LGG"})
    assert _manifest(asked)["conditions_drawn"] == NOT_DRAWN
    assert _manifest(before)["conditions_drawn"] == NO_TABLE
    for rows in (_rows(asked), _rows(before)):
        assert {(r["cohort"], r["age"]) for r in rows} == {("", "")}  # unknown, as before
    measured = [r["enhancing_fraction"] for r in _rows(asked)]
    assert measured == [r["enhancing_fraction"] for r in _rows(before)]  # from the masks

    def t1c(out: Path, i: int) -> np.ndarray:
        return np.asarray(nib.load(case_file(out, i, "t1c.nii.gz")).dataobj)

    for i in range(4):  # the same weights, conditions and seeds: the same images
        assert np.array_equal(t1c(asked, i), t1c(before, i))
    assert not all(np.array_equal(t1c(asked, i), t1c(drawn, i)) for i in range(4))


def test_cli_unset_option(tmp_path: Path, reference_record: Any) -> None:
    ckpt = _checkpoint(tmp_path / "run", reference_record)
    runner = CliRunner()
    common = ["generate", "--checkpoint", str(ckpt), "--n", "2", "--space", "native", "--quiet"]
    ok = runner.invoke(
        app, [*common, "--out", str(tmp_path / "a"), "--condition", "grade=LGG", "--unset", "unknown"]
    )
    assert ok.exit_code == 0, ok.output
    assert _manifest(tmp_path / "a")["conditions_drawn"] == NOT_DRAWN
    assert ok.stdout.splitlines() == [f"wrote 2 cases to {tmp_path / 'a'}"]
    old = _checkpoint(tmp_path / "old", reference_record, with_table=False)
    said = runner.invoke(app, [*common[:2], str(old), *common[3:], "--out", str(tmp_path / "c")])
    assert said.exit_code == 0 and said.stderr == ""
    assert said.stdout.splitlines()[1] == f"conditions the request leaves unset: {NO_TABLE}"
    bad = runner.invoke(app, [*common, "--out", str(tmp_path / "b"), "--unset", "mean"])
    assert bad.exit_code == 2 and not (tmp_path / "b").exists()
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert lines == ["error: --unset 'mean': must be one of drawn, blended, unknown"]
    mixed = runner.invoke(app, [*common, "--out", str(tmp_path / "d"), "--condition", "grade=HGG", "--unset", "blended"])
    assert mixed.exit_code == 0, mixed.output
    assert _manifest(tmp_path / "d")["conditions_drawn"]["method"].startswith(METHOD + "; numbers blended")
    text = " ".join(runner.invoke(app, ["generate", "--help"]).stdout.replace("│", " ").split())
    assert "--unset" in text and "given the conditions that are set" in text
