"""The arms of the downstream benchmark: names, what each trains on, and the batch schedule.

An arm name is ``BASE``, ``BASE+SOURCE``, or ``SOURCE`` alone, optionally followed by ``@Mx``:

- ``BASE``: ``real`` (the scarce cohort's *n* training cases), ``real+large`` (those and the large
  cohort's training cases, pooled: joint training) or ``large-then-real`` (pretrain on the large
  cohort's training cases, then fine-tune on the scarce cohort's: the BraTS-Africa winners'
  recipe);
- ``SOURCE``: a synthetic cohort, ``synthetic`` (a generator's) or ``stand-in`` (the benchmark's
  perfect-generator upper bound: more cases from the simulator the real ones came from);
- ``@Mx``: that source's pool holds ``M`` x *n* cases, following the real cases' mix of labels
  (no suffix: ``M = 1``).

A mixed arm fills a fraction ``mix_ratio`` of every batch with the source's cases and the rest
with the base's; ``large-then-real+SOURCE`` mixes in the fine-tuning stage. Every arm gets the same
``steps`` x ``batch_size`` cases after its (shared, cached) pretraining.

Example:
    >>> spec = parse_arm("large-then-real+synthetic@4x")
    >>> spec.base, spec.source, spec.multiple, spec.pretrain
    ('large-then-real', 'synthetic', 4, True)
    >>> plan_arm("real+large+stand-in@4x", 0.25).slots
    (('real+large', 0.75), ('stand-in@4x', 0.25))
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gliomagen.errors import GliomagenError

BASES: tuple[str, ...] = ("real", "real+large", "large-then-real")
"""Real-data arms, in report order; ``real`` is the baseline of every paired comparison."""

SOURCES: tuple[str, ...] = ("synthetic", "stand-in")
"""Synthetic sources: a generator's cohort, and the benchmark's perfect-generator stand-in."""

ARMS: tuple[str, ...] = (
    "real",
    "real+large",
    "large-then-real",
    "real+synthetic",
    "real+large+synthetic",
    "large-then-real+synthetic",
    "synthetic",
)
"""The arms of ``gliomagen utility`` (without a stand-in), in report order."""

STAND_IN_ARMS: tuple[str, ...] = ("real+stand-in", "real+large+stand-in", "large-then-real+stand-in")
"""The stand-in arms the benchmark script adds: the gain a perfect generator would bring."""

_MULTIPLE = re.compile(r"^(?P<arm>.+)@(?P<m>\d+)x$")


@dataclass(frozen=True)
class ArmSpec:
    """A parsed arm name (see the module docstring)."""

    name: str
    base: str | None  # None: the source alone
    source: str | None  # None: real data only
    multiple: int = 1

    @property
    def pretrain(self) -> bool:
        """Whether the arm starts from the large-cohort pretraining."""
        return self.base == "large-then-real"

    @property
    def pool(self) -> str | None:
        """The source's pool name, ``SOURCE@Mx`` (``None`` for a real-data arm)."""
        return None if self.source is None else source_pool(self.source, self.multiple)

    @property
    def base_pool(self) -> str | None:
        """The real pool this arm trains on (``real`` after pretraining; ``None``: source alone)."""
        return {"real": "real", "real+large": "real+large", "large-then-real": "real"}.get(
            self.base or ""
        )


def source_pool(source: str, multiple: int) -> str:
    """The pool name of ``multiple`` x n cases of a synthetic source, e.g. ``synthetic@4x``."""
    return f"{source}@{int(multiple)}x"


def largest_pool(pools: Iterable[str], source: str) -> str | None:
    """The largest ``SOURCE@Mx`` among pool names (``None`` when there is none).

    Example:
        >>> largest_pool(["real", "synthetic@1x", "synthetic@4x", "stand-in@8x"], "synthetic")
        'synthetic@4x'
    """
    mine = [(int(m["m"]), p) for p in pools if (m := _MULTIPLE.match(p)) and m["arm"] == source]
    return max(mine)[1] if mine else None


def arm_name(base: str | None, source: str | None, multiple: int = 1) -> str:
    """The name of an arm; ``@Mx`` only for ``M != 1``."""
    name = "+".join(p for p in (base, source) if p)
    return name if source is None or multiple == 1 else f"{name}@{multiple}x"


def parse_arm(name: str, sources: Sequence[str] = SOURCES) -> ArmSpec:
    """Parse an arm name; a GliomagenError naming ``--arms`` for anything else."""
    raw, multiple = name.strip(), 1
    m = _MULTIPLE.match(raw)
    if m:
        raw, multiple = m["arm"], int(m["m"])
    source = next((s for s in sources if raw == s or raw.endswith("+" + s)), None)
    base: str | None = raw[: -len(source) - 1] if source and raw != source else None
    if source is None:
        base = raw
    ok = (base is None or base in BASES) and (source is not None or not m) and multiple >= 1
    if not ok or not raw:
        known = ", ".join([*BASES, *(f"[BASE+]{s}[@Mx]" for s in sources)])
        raise GliomagenError(f"--arms: unknown arm {name!r}; choose from {known}")
    return ArmSpec(arm_name(base, source, multiple), base, source, multiple)


def expand_arms(arms: Sequence[str], multiples: Sequence[int], sources: Sequence[str] = SOURCES) -> list[str]:
    """Arm names in report order: ``real`` first, then real-data arms, then every synthetic arm
    once per multiple (a name without ``@Mx`` becomes one arm per multiple; an explicit ``@Mx``
    stays as given); duplicates dropped.

    Example:
        >>> expand_arms(["real+synthetic", "real+large"], [1, 4])
        ['real', 'real+large', 'real+synthetic', 'real+synthetic@4x']
    """
    if not multiples or any(int(m) < 1 for m in multiples):
        raise GliomagenError(f"--synthetic-multiple {list(multiples)}: give whole numbers >= 1")
    specs: list[ArmSpec] = [parse_arm("real", sources)]
    for a in arms:
        spec = parse_arm(a, sources)
        if spec.source is None or _MULTIPLE.match(a.strip()):
            specs.append(spec)
        else:
            specs += [ArmSpec(arm_name(spec.base, spec.source, int(m)), spec.base, spec.source, int(m))
                      for m in multiples]  # fmt: skip
    order = {b: k for k, b in enumerate([*BASES, None])}
    specs.sort(key=lambda s: (s.source is not None, s.multiple, sources.index(s.source) if s.source else -1,
                              order[s.base]))  # fmt: skip
    return list(dict.fromkeys(s.name for s in specs))


@dataclass(frozen=True)
class ArmPlan:
    """What an arm's batch slots are drawn from: ``(pool name, fraction of slots)`` pairs."""

    name: str
    slots: tuple[tuple[str, float], ...]

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.slots)


def plan_arm(arm: str | ArmSpec, mix_ratio: float = 0.5) -> ArmPlan:
    """The batch composition of an arm's (fine-tuning) steps.

    Example:
        >>> plan_arm("real+synthetic", 0.25).slots
        (('real', 0.75), ('synthetic@1x', 0.25))
    """
    spec = arm if isinstance(arm, ArmSpec) else parse_arm(arm)
    r = float(mix_ratio)
    if spec.pool is None:
        return ArmPlan(spec.name, ((str(spec.base_pool), 1.0),))
    if spec.base_pool is None:
        return ArmPlan(spec.name, ((spec.pool, 1.0),))
    return ArmPlan(spec.name, ((spec.base_pool, 1.0 - r), (spec.pool, r)))


def batch_schedule(
    plan: ArmPlan, pool_sizes: Mapping[str, int], steps: int, batch_size: int, seed: int
) -> list[list[tuple[str, int]]]:
    """Which case fills every batch slot of a run: ``[steps][batch_size]`` of ``(pool, index)``.

    A pool with fraction ``f`` gets exactly ``round(f * steps * batch_size)`` slots (the last pool
    the remainder), shuffled over the run; within a pool the cases are drawn epoch by epoch (a
    fresh permutation each pass), so every case is seen ``floor`` or ``ceil`` of its share.
    Deterministic for a seed.
    """
    total = steps * batch_size
    rng = np.random.default_rng(seed)
    counts: list[int] = []
    for k, (_, frac) in enumerate(plan.slots):
        counts.append(total - sum(counts) if k == len(plan.slots) - 1 else int(round(frac * total)))
    labels = np.concatenate([np.full(n, k) for k, n in enumerate(counts)]).astype(np.int64)
    labels = rng.permutation(labels)  # [total]
    draws: list[list[int]] = []
    for (pool, _), n in zip(plan.slots, counts, strict=True):
        size = int(pool_sizes.get(pool, 0))
        if n and size <= 0:
            raise GliomagenError(f"arm {plan.name}: the {pool} pool has no cases with a mask")
        order: list[int] = []
        while len(order) < n:
            order.extend(int(i) for i in rng.permutation(size))
        draws.append(order[:n])
    taken = [0] * len(counts)
    flat: list[tuple[str, int]] = []
    for k in labels:
        flat.append((plan.slots[k][0], draws[k][taken[k]]))
        taken[k] += 1
    return [flat[s * batch_size : (s + 1) * batch_size] for s in range(steps)]
