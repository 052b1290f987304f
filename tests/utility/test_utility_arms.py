"""Arm composition: which cases go in which arm, with the same budget for every arm."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.utility import (
    ARMS,
    STAND_IN_ARMS,
    batch_schedule,
    load_benchmark_data,
    plan_arm,
)
from gliomagen.evaluation.utility_arms import expand_arms, parse_arm
from gliomagen.evaluation.utility_data import CaseRef, matched_subset


def test_plans_of_every_arm() -> None:
    assert plan_arm("real").slots == (("real", 1.0),)
    assert plan_arm("real+large").slots == (("real+large", 1.0),)
    assert plan_arm("large-then-real").slots == (("real", 1.0),)  # after the pretraining
    assert plan_arm("synthetic").slots == (("synthetic@1x", 1.0),)
    assert plan_arm("synthetic@4x").slots == (("synthetic@4x", 1.0),)
    assert plan_arm("real+synthetic", 0.3).slots == (("real", 0.7), ("synthetic@1x", 0.3))
    assert plan_arm("real+large+synthetic", 0.25).slots == (
        ("real+large", 0.75),
        ("synthetic@1x", 0.25),
    )
    assert plan_arm("large-then-real+synthetic@4x", 0.5).slots == (("real", 0.5), ("synthetic@4x", 0.5))
    assert plan_arm("real+large+stand-in@4x", 0.5).slots == (("real+large", 0.5), ("stand-in@4x", 0.5))
    with pytest.raises(GliomagenError, match="unknown arm 'fake'"):
        plan_arm("fake")


def test_arm_names_parse_and_expand() -> None:
    s = parse_arm("large-then-real+synthetic@4x")
    assert (s.base, s.source, s.multiple, s.pretrain, s.pool) == ("large-then-real", "synthetic", 4, True, "synthetic@4x")
    assert parse_arm("synthetic").base is None and parse_arm("real").source is None
    assert parse_arm("real+synthetic@1x").name == "real+synthetic"  # 1x: no suffix
    assert not parse_arm("real+large+stand-in").pretrain
    for bad in ("real@4x", "large+real", "real+synthetic@0x", "real+", "synthetic+real"):
        with pytest.raises(GliomagenError, match="--arms: unknown arm"):
            parse_arm(bad)
    assert expand_arms(list(ARMS) + list(STAND_IN_ARMS), [1, 4]) == [
        "real", "real+large", "large-then-real",
        "real+synthetic", "real+large+synthetic", "large-then-real+synthetic", "synthetic",
        "real+stand-in", "real+large+stand-in", "large-then-real+stand-in",
        "real+synthetic@4x", "real+large+synthetic@4x", "large-then-real+synthetic@4x", "synthetic@4x",
        "real+stand-in@4x", "real+large+stand-in@4x", "large-then-real+stand-in@4x",
    ]  # fmt: skip
    assert expand_arms(["real+synthetic@4x", "real+large"], [1]) == ["real", "real+large", "real+synthetic@4x"]
    with pytest.raises(GliomagenError, match="--synthetic-multiple"):
        expand_arms(["real"], [0])


@pytest.mark.parametrize("arm", [*ARMS, *STAND_IN_ARMS, "real+synthetic@4x"])
def test_every_arm_gets_the_same_budget(arm: str) -> None:
    sizes = {"real": 3, "real+large": 10, "synthetic@1x": 7, "synthetic@4x": 12, "stand-in@1x": 5}
    sched = batch_schedule(plan_arm(arm, 0.5), sizes, steps=11, batch_size=3, seed=0)
    assert len(sched) == 11 and all(len(b) == 3 for b in sched)
    for pool, i in (slot for b in sched for slot in b):
        assert 0 <= i < sizes[pool]


def test_mix_ratio_is_exact_and_cases_are_used_evenly() -> None:
    sizes = {"real": 4, "synthetic@1x": 6}
    sched = batch_schedule(plan_arm("real+synthetic", 0.25), sizes, steps=20, batch_size=2, seed=3)
    flat = [s for b in sched for s in b]
    pools = Counter(p for p, _ in flat)
    assert pools == {"real": 30, "synthetic@1x": 10}  # 0.75 and 0.25 of 40 slots
    real_use = Counter(i for p, i in flat if p == "real")
    syn_use = Counter(i for p, i in flat if p == "synthetic@1x")
    assert sorted(real_use.values()) == [7, 7, 8, 8]  # 30 draws over 4 cases, epoch by epoch
    assert sorted(syn_use.values()) == [1, 1, 2, 2, 2, 2]  # 10 over 6
    assert set(real_use) == set(range(4))


def test_schedule_is_deterministic_for_a_seed() -> None:
    sizes = {"real+large": 9, "synthetic@1x": 5}
    plan = plan_arm("real+large+synthetic", 0.5)
    a = batch_schedule(plan, sizes, steps=7, batch_size=2, seed=1)
    assert a == batch_schedule(plan, sizes, steps=7, batch_size=2, seed=1)
    assert a != batch_schedule(plan, sizes, steps=7, batch_size=2, seed=2)


def test_empty_pool_is_an_error() -> None:
    with pytest.raises(GliomagenError, match="synthetic@1x pool has no cases"):
        batch_schedule(plan_arm("synthetic"), {"real": 3, "synthetic@1x": 0}, steps=2, batch_size=1, seed=0)


def test_pools_hold_the_right_case_ids(tiny_real: Path, tiny_synthetic: Path, tmp_path: Path) -> None:
    data = load_benchmark_data(tiny_real, tiny_synthetic, "SSA", cache_dir=tmp_path / "cache")
    ids = {k: [c.case_id for c in v] for k, v in data.pools.items()}
    # scarce cohort's train cases with a mask (SSA-nomask has none)
    assert ids["real"] == ["SSA-000", "SSA-001", "SSA-002", "SSA-003"]
    assert ids["large"] == [f"GLI-{k:03d}" for k in range(6)]  # GLI train only, not GLI-006 (val)
    assert ids["real+large"] == ids["real"] + ids["large"]
    assert [c.case_id for c in data.val] == ["SSA-004"]  # chooses checkpoints
    assert [c.case_id for c in data.heldout] == ["SSA-005"]  # scored: test only by default
    assert data.large_cohorts == ["GLI"] and data.size == (16, 16, 16)
    assert data.spacing == [2.0, 2.0, 2.0] and data.n_real == 4
    # the synthetic pool follows the real cases' mix (4 x cohort=SSA, grade=HGG): the first 4 HGG
    assert ids["synthetic@1x"] == ["SYN-00000", "SYN-00002", "SYN-00004", "SYN-00006"]
    with pytest.raises(GliomagenError, match="--synthetic: 2 x 4 = 8 cases with cohort=SSA, grade=HGG needed .* only 4"):
        load_benchmark_data(tiny_real, tiny_synthetic, "SSA", cache_dir=tmp_path / "cache", multiples=(1, 2))
    assert data.bank is not None
    for name, rows in data.index.items():
        assert [data.bank.ids[i] for i in rows] == ([c.case_id for c in data.pools[name]]
            if name in data.pools else [c.case_id for c in getattr(data, name)])  # fmt: skip
    val_test = {"SSA-004", "SSA-005"}
    for name in ("real", "large", "real+large"):
        assert not val_test & set(ids[name])  # no val or test case trains a segmenter
    both = load_benchmark_data(tiny_real, None, "SSA", heldout="val+test", needs_synthetic=False, read=False)
    assert [c.case_id for c in both.heldout] == ["SSA-004", "SSA-005"] and both.bank is None


def test_roles_swap_with_the_cohort(tiny_real: Path) -> None:
    data = load_benchmark_data(tiny_real, None, "GLI", needs_synthetic=False, heldout="val+test")
    assert [c.case_id for c in data.pools["real"]] == [f"GLI-{k:03d}" for k in range(6)]
    assert [c.case_id for c in data.pools["large"]] == ["SSA-000", "SSA-001", "SSA-002", "SSA-003"]
    assert [c.case_id for c in data.heldout] == ["GLI-006"]


def test_real_cases_pick_a_nested_subset_of_train_cases_only(tiny_real: Path) -> None:
    kw = dict(needs_synthetic=False, read=False)
    d2 = load_benchmark_data(tiny_real, None, "SSA", real_cases=["SSA-002", "SSA-000"], **kw)
    d3 = load_benchmark_data(tiny_real, None, "SSA", real_cases=["SSA-002", "SSA-000", "SSA-003"], **kw)
    assert [c.case_id for c in d2.pools["real"]] == ["SSA-002", "SSA-000"]  # in the given order
    assert {c.case_id for c in d2.pools["real"]} < {c.case_id for c in d3.pools["real"]}
    assert [c.case_id for c in d3.pools["real+large"]][:3] == ["SSA-002", "SSA-000", "SSA-003"]
    for case in ("SSA-004", "SSA-005", "SSA-nomask", "GLI-000"):  # val, test, no mask, other cohort
        with pytest.raises(GliomagenError, match=f"--real-cases: {case} .*not a train case of SSA"):
            load_benchmark_data(tiny_real, None, "SSA", real_cases=["SSA-000", case], **kw)
    with pytest.raises(GliomagenError, match="listed twice"):
        load_benchmark_data(tiny_real, None, "SSA", real_cases=["SSA-000", "SSA-000"], **kw)


def test_bad_inputs_name_the_option(tiny_real: Path, tmp_path: Path, stores: Any) -> None:
    with pytest.raises(GliomagenError, match=r"--cohort MEN: not in .*cohorts: GLI, SSA"):
        load_benchmark_data(tiny_real, None, "MEN", needs_synthetic=False)
    with pytest.raises(GliomagenError, match="--cohort GLI: no test cases"):
        load_benchmark_data(tiny_real, None, "GLI", heldout="test", needs_synthetic=False)
    with pytest.raises(GliomagenError, match="--large-cohort PED"):
        load_benchmark_data(tiny_real, None, "SSA", large_cohort="PED", needs_synthetic=False)
    with pytest.raises(GliomagenError, match="--synthetic: a synthetic cohort is required"):
        load_benchmark_data(tiny_real, None, "SSA")
    with pytest.raises(GliomagenError, match="--synthetic .*no such folder"):
        load_benchmark_data(tiny_real, tmp_path / "nowhere", "SSA")
    with pytest.raises(GliomagenError, match="--stand-in .*no such folder"):
        load_benchmark_data(tiny_real, None, "SSA", needs_synthetic=False, stand_in=tmp_path / "nowhere")
    no_val = stores.write(tmp_path / "noval", stores.cases("SSA", "SSA", {"train": 2, "test": 1}, 0))
    with pytest.raises(GliomagenError, match="--val-every: .* no val cases of SSA"):
        load_benchmark_data(no_val, None, "SSA", needs_large=False, needs_synthetic=False, needs_val=True)


def _ref(cid: str, **row: str) -> CaseRef:
    return CaseRef(None, 0, cid, row)


def test_matched_subset_follows_the_mix_and_nests() -> None:
    real = [_ref(f"R{k}", cohort="SSA", grade=g) for k, g in enumerate("HHHL")]
    syn = [_ref(f"S{k}", cohort="SSA", grade=g) for k, g in enumerate("LHLHHHHHHHHHHLHL")]
    one = matched_subset(syn, real, 1)
    three = matched_subset(syn, real, 3)
    assert [c.case_id for c in one] == ["S0", "S1", "S3", "S4"]  # 3 H + 1 L, first in order
    assert Counter(c.row["grade"] for c in three) == {"H": 9, "L": 3}
    assert {c.case_id for c in one} < {c.case_id for c in three}  # nested
    with pytest.raises(GliomagenError, match="5 x 3 = 15 cases with cohort=SSA, grade=H needed .* only 12"):
        matched_subset(syn, real, 5)
    unlabelled = [_ref(f"U{k}") for k in range(9)]  # a cohort without labels: the first k cases
    assert [c.case_id for c in matched_subset(unlabelled, real, 2)] == [f"U{k}" for k in range(8)]
