"""The conditioning judge of a checkpoint, per value of a condition: ``gliomagen evaluate --judge N``.

:func:`prepare` loads the checkpoint's generator and checks that it can be judged (a 3D
generator with a categorical ``grade`` holding HGG and LGG, ``by`` another categorical condition
of its schema), before any other work. :func:`judge_section` then samples ``N`` cases per grade
and per value of ``by`` (:func:`~gliomagen.evaluation.conditioning.judge_generator`; the other
conditions drawn from a training case given the set ones, as ``gliomagen generate`` does) and
judges the real training cases of the same value as the calibration
(:func:`judge_cases`); the result is the ``conditioning_judge`` section of ``metrics.json``.
``benchmarks/judge.py`` runs the same pieces on a store.

A rate is the share of faithful samples among the samples of a grade (what faithful means:
:data:`~gliomagen.evaluation.conditioning.FAITHFUL`), with a 95% Wilson score interval
(:func:`wilson`); a value's grade passes when its rate reaches the grade's target
(:data:`TARGETS`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.cases import NO_MASK, CaseSet
from gliomagen.evaluation.conditioning import (
    FAITHFUL,
    JudgeThresholds,
    judge,
    judge_generator,
    rates,
)
from gliomagen.generation.fill import case_table
from gliomagen.models.loading import load_generator

GRADES = ("HGG", "LGG")
TARGETS = {"HGG": 0.8, "LGG": 0.9}
"""The faithful rate each grade should reach."""
Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


@dataclasses.dataclass
class Judged:
    """A checkpoint ready to be judged (:func:`prepare`).

    Attributes:
        G: its generator (``G_ema``), in eval mode on the device.
        schema: its condition schema.
        checkpoint: the path it was loaded from.
        by: the categorical condition judged per value.
        values: the values of ``by`` (its categories in the schema).
        unset: how the conditions neither the grade nor ``by`` set are given: ``drawn`` (from the
            checkpoint's table of training conditions) or ``unknown`` (it holds no table).
        w_avg: the checkpoint's per-condition mean ``w`` (truncation's centre), if it has one.
    """

    G: Any
    schema: Any
    checkpoint: str
    by: str
    values: list[str]
    unset: str
    w_avg: Any = None


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a rate of ``k`` successes in ``n`` trials (``None`` for n=0).

    Example:
        >>> [round(b, 4) for b in wilson(8, 10)]
        [0.4902, 0.9433]
    """
    if n <= 0:
        return None
    p, zz = k / n, z * z
    centre = (p + zz / (2 * n)) / (1 + zz / n)
    half = z * math.sqrt(p * (1 - p) / n + zz / (4 * n * n)) / (1 + zz / n)
    lo = 0.0 if k <= 0 else max(0.0, centre - half)  # exact at the ends (no 1e-17 above 0)
    hi = 1.0 if k >= n else min(1.0, centre + half)
    return lo, hi


def prepare(
    checkpoint: str | os.PathLike[str], by: str, device: str | torch.device = "cpu"
) -> Judged:
    """Load ``checkpoint``'s generator and check that the judge applies to it.

    Raises:
        GliomagenError: a 2D generator, no categorical ``grade`` with HGG and LGG, a ``by`` that
            is not another categorical condition of the checkpoint, or a table of training
            conditions that does not fit the schema (one line, naming the option).
    """
    G, schema, _config, meta = load_generator(checkpoint, device=device)
    dims = len(tuple(G.size))  # type: ignore[arg-type]
    if dims != 3:
        raise GliomagenError(
            f"--judge: --checkpoint {checkpoint} is a {dims}D generator; the judge needs 3D volumes"
        )
    names = [f.name for f in schema.categorical]
    if "grade" not in names or not set(GRADES) <= set(schema["grade"].categories):
        raise GliomagenError(
            f"--judge: --checkpoint {checkpoint} has no categorical condition grade with HGG and LGG"
        )
    if by not in names or by == "grade":
        others = ", ".join(n for n in names if n != "grade") or "none"
        raise GliomagenError(
            f"--judge-by {by}: not a categorical condition of the checkpoint other than grade "
            f"(its categorical conditions: {others})"
        )
    unset = "drawn" if case_table(G, schema) is not None else "unknown"
    return Judged(
        G, schema, str(checkpoint), by, list(schema[by].categories), unset, meta.get("w_avg")
    )


def check_volumes(train: CaseSet) -> None:
    """Raise a GliomagenError unless the training cases are 3D volumes (the calibration)."""
    if len(train.spatial) != 3:
        raise GliomagenError(
            f"--judge: the training cases ({train.name}) are 2-D slices; the judge needs 3D volumes"
        )


def judge_cases(
    cases: CaseSet,
    by: str,
    thresholds: JudgeThresholds | None = None,
    batch_size: int = 4,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The judge on real cases, per value of label ``by`` and per grade.

    Only cases with a mask, a ``grade`` of HGG or LGG and a value of ``by`` are judged.

    Returns:
        ``{value: {"HGG": [judge(...) per case], "LGG": [...]}}``.
    """
    grades, values = cases.label_values("grade"), cases.label_values(by)
    keep = [i for i in range(len(cases)) if grades[i] in GRADES and values[i] is not None]
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    sub = cases.subset(keep)
    for pos, imgs, masks in sub.batches(batch_size):
        for j, i in enumerate(pos):
            mask = masks[j].numpy()
            if (mask == NO_MASK).any():
                continue
            row = keep[int(i)]
            per = out.setdefault(str(values[row]), {g: [] for g in GRADES})
            per[str(grades[row])].append(judge(imgs[j].numpy(), mask, thresholds))
    return out


def _rate(results: Sequence[Mapping[str, Any]], grade: str) -> dict[str, Any]:
    """``{"n", "faithful", "rate", "ci"}`` of the samples of one grade."""
    k, n = sum(bool(r[grade.lower()]) for r in results), len(results)
    ci = wilson(k, n)
    return {
        "n": n,
        "faithful": k,
        "rate": k / n if n else None,
        "ci": None if ci is None else list(ci),
    }


def judge_section(
    judged: Judged,
    train: CaseSet,
    n: int,
    seed: int,
    batch_size: int = 4,
    log: Callable[[str], None] | None = None,
    psi: float = 1.0,
) -> dict[str, Any]:
    """Judge ``n`` samples per grade and per value of ``judged.by``, and the training cases.

    The latents come from ``seed`` (the same for every value); the random noise of the synthesis
    from the global torch seed set to ``seed`` for the run (restored afterwards).

    Args:
        judged: the checkpoint (:func:`prepare`).
        train: the real training cases (the calibration), on a 3D grid.
        n: samples per grade and value.
        seed: seed of the samples.
        batch_size: cases per batch when reading the training cases.
        log: called with each progress message.
        psi: truncation toward each condition's mean ``w`` (1 = none), as ``generate
            --truncation`` samples.

    Returns:
        The ``conditioning_judge`` section: ``{"by", "samples_per_grade", "seed", "unset",
        "targets", "interval", "faithful", "passed", "per_value": {value: {"HGG": {"generated":
        {"n", "faithful", "rate", "ci"}, "target", "pass", "real": {...}}, "LGG": ...,
        "criteria": {...}}}}``; ``criteria`` is each HGG / LGG criterion's share among the
        generated samples (:func:`~gliomagen.evaluation.conditioning.rates`).

    Raises:
        GliomagenError: training cases that are not 3D volumes.
    """
    check_volumes(train)
    say = log or (lambda _m: None)
    G, by = judged.G, judged.by
    say(f"conditioning judge: {n} samples per grade and {by} value; training cases")
    real = judge_cases(train, by, JudgeThresholds.for_grid(train.spatial), batch_size)
    th = JudgeThresholds.for_grid(G.size)
    dev = next(G.parameters()).device
    per_value: dict[str, Any] = {}
    for value in judged.values:
        say(f"conditioning judge: {by}={value}")
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            gen = judge_generator(G, judged.schema, n, seed, thresholds=th, psi=psi, w_avg=judged.w_avg,
                                  conditions={by: value}, unset="drawn")  # fmt: skip
        entry: dict[str, Any] = {}
        for grade in GRADES:
            g = _rate(gen.get(grade, []), grade)
            entry[grade] = {
                "generated": g, "target": TARGETS[grade],
                "pass": g["rate"] is not None and g["rate"] >= TARGETS[grade],
                "real": _rate(real.get(value, {}).get(grade, []), grade),
            }  # fmt: skip
        entry["criteria"] = {k: v for k, v in rates(gen).items() if not k.startswith("faithful_")}
        per_value[value] = entry
    verdicts = [bool(e[g]["pass"]) for e in per_value.values() for g in GRADES]
    return {
        "checkpoint": judged.checkpoint, "by": by, "samples_per_grade": n, "seed": seed, "truncation": psi,
        "unset": judged.unset, "grid": list(G.size), "targets": dict(TARGETS),
        "interval": "95% Wilson score interval", "faithful": FAITHFUL,
        "thresholds": dataclasses.asdict(th),
        "passed": all(verdicts), "per_value": per_value,
    }  # fmt: skip


def summary_line(section: Mapping[str, Any]) -> str:
    """One line of the section: faithful HGG / LGG rate per value beside the targets."""
    parts = [
        f"{v} {_fmt(e['HGG']['generated']['rate'])} / {_fmt(e['LGG']['generated']['rate'])}"
        for v, e in section["per_value"].items()
    ]
    t = section["targets"]
    return (
        f"conditioning judge, faithful HGG / LGG per {section['by']}: {', '.join(parts)} "
        f"(targets {t['HGG']:.2f} / {t['LGG']:.2f}; "
        f"{'all pass' if section['passed'] else 'not all pass'})"
    )


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.2f}"
