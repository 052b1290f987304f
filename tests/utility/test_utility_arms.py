"""Arm composition: which cases go in which arm, with the same budget for every arm."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.utility import ARMS, batch_schedule, load_benchmark_data, plan_arm


def test_plans_of_every_arm() -> None:
    assert plan_arm("real").slots == (("real", 1.0),)
    assert plan_arm("real+large").slots == (("real+large", 1.0),)
    assert plan_arm("synthetic").slots == (("synthetic", 1.0),)
    assert plan_arm("real+synthetic", 0.3).slots == (("real", 0.7), ("synthetic", 0.3))
    assert plan_arm("real+large+synthetic", 0.25).slots == (
        ("real+large", 0.75),
        ("synthetic", 0.25),
    )
    with pytest.raises(GliomagenError, match="unknown arm 'fake'"):
        plan_arm("fake")


@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_gets_the_same_budget(arm: str) -> None:
    sizes = {"real": 3, "real+large": 10, "synthetic": 7}
    sched = batch_schedule(plan_arm(arm, 0.5), sizes, steps=11, batch_size=3, seed=0)
    assert len(sched) == 11 and all(len(b) == 3 for b in sched)
    for pool, i in (slot for b in sched for slot in b):
        assert 0 <= i < sizes[pool]


def test_mix_ratio_is_exact_and_cases_are_used_evenly() -> None:
    sizes = {"real": 4, "synthetic": 6}
    sched = batch_schedule(plan_arm("real+synthetic", 0.25), sizes, steps=20, batch_size=2, seed=3)
    flat = [s for b in sched for s in b]
    pools = Counter(p for p, _ in flat)
    assert pools == {"real": 30, "synthetic": 10}  # 0.75 and 0.25 of 40 slots
    real_use = Counter(i for p, i in flat if p == "real")
    syn_use = Counter(i for p, i in flat if p == "synthetic")
    assert sorted(real_use.values()) == [7, 7, 8, 8]  # 30 draws over 4 cases, epoch by epoch
    assert sorted(syn_use.values()) == [1, 1, 2, 2, 2, 2]  # 10 over 6
    assert set(real_use) == set(range(4))


def test_schedule_is_deterministic_for_a_seed() -> None:
    sizes = {"real+large": 9, "synthetic": 5}
    plan = plan_arm("real+large+synthetic", 0.5)
    a = batch_schedule(plan, sizes, steps=7, batch_size=2, seed=1)
    assert a == batch_schedule(plan, sizes, steps=7, batch_size=2, seed=1)
    assert a != batch_schedule(plan, sizes, steps=7, batch_size=2, seed=2)


def test_empty_pool_is_an_error() -> None:
    with pytest.raises(GliomagenError, match="synthetic pool has no cases"):
        batch_schedule(
            plan_arm("synthetic"), {"real": 3, "synthetic": 0}, steps=2, batch_size=1, seed=0
        )


def test_pools_hold_the_right_case_ids(
    tiny_real: Path, tiny_synthetic: Path, tmp_path: Path
) -> None:
    data = load_benchmark_data(tiny_real, tiny_synthetic, "SSA", cache_dir=tmp_path / "cache")
    ids = {k: [c.case_id for c in v] for k, v in data.pools.items()}
    # scarce cohort's train cases with a mask (SSA-nomask has none)
    assert ids["real"] == ["SSA-000", "SSA-001", "SSA-002", "SSA-003"]
    assert ids["large"] == [f"GLI-{k:03d}" for k in range(6)]  # GLI train only, not GLI-006 (val)
    assert ids["real+large"] == ids["real"] + ids["large"]
    assert ids["synthetic"] == [f"SYN-{k:05d}" for k in range(4)]
    assert [c.case_id for c in data.heldout] == ["SSA-004", "SSA-005"]  # val + test
    assert data.large_cohorts == ["GLI"] and data.size == (16, 16, 16)
    assert data.spacing == [2.0, 2.0, 2.0]
    test_only = load_benchmark_data(tiny_real, None, "SSA", heldout="test", needs_synthetic=False)
    assert [c.case_id for c in test_only.heldout] == ["SSA-005"]
    assert test_only.pools["synthetic"] == []


def test_roles_swap_with_the_cohort(tiny_real: Path) -> None:
    data = load_benchmark_data(tiny_real, None, "GLI", needs_synthetic=False)
    assert [c.case_id for c in data.pools["real"]] == [f"GLI-{k:03d}" for k in range(6)]
    assert [c.case_id for c in data.pools["large"]] == ["SSA-000", "SSA-001", "SSA-002", "SSA-003"]
    assert [c.case_id for c in data.heldout] == ["GLI-006"]


def test_bad_inputs_name_the_option(tiny_real: Path, tmp_path: Path) -> None:
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
