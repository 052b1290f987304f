"""The downstream segmentation benchmark's figures: one JSON-ready dict, and its text tables.

:func:`assemble_report` turns the per-seed, per-case results of
:func:`gliomagen.evaluation.utility.run_utility` into the report (every number of ``utility.json``):
per arm and metric family the summaries over seeds and test cases
(:mod:`gliomagen.evaluation.utility_stats`), paired comparisons, the val curves and the
convergence check, the best real-data arm (chosen on val), how much of the stand-in's gain the
generator recovers, the target checks, image-mask agreement and the privacy report.
:func:`format_table` prints it; :mod:`gliomagen.evaluation.utility_html` writes the files.

Metric families (every table names its family): ``voxel`` = MONAI voxel-wise Dice and HD95 per
BraTS region; ``lesion`` = the official BraTS lesion-wise Dice and HD95 (when available). Regions
WT, TC, ET and ``mean`` (= the mean of the three; the headline is the mean region Dice).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gliomagen.evaluation import segmentation as seg
from gliomagen.evaluation import utility_stats as st
from gliomagen.evaluation.utility_arms import arm_name, largest_pool, parse_arm, plan_arm

if TYPE_CHECKING:
    from gliomagen.evaluation.utility_data import BenchmarkData, CaseRef

REGIONS_MEAN: tuple[str, ...] = (*seg.REGIONS, "mean")
FAMILIES: dict[str, str] = {
    "voxel": "MONAI voxel-wise Dice / HD95 (per BraTS region, whole volume)",
    "lesion": "BraTS lesion-wise Dice / HD95 (the official challenge metrics)",
}
CONVENTIONS: dict[str, str] = {
    "dice": "2|P&G|/(|P|+|G|); both empty -> 1.0, one empty -> 0.0",
    "hd95": "symmetric 95th-percentile surface distance in mm (MONAI, spacing-aware); "
    "both empty -> 0.0; one empty -> the volume diagonal in mm",
    "mean region": "mean of the WT, TC and ET values of a case (the headline: mean region Dice)",
    "estimate": "mean over seeds of the per-seed mean over test cases",
    "std": "over seeds of the per-seed means (ddof=1; 0.0 for one seed)",
    "ci": f"{st.LEVEL:.0%} percentile bootstrap over test cases of the seed-averaged per-case "
    f"values ({st.N_BOOT} resamples, seeded)",
    "paired": "per test case the difference averaged over seeds; mean, bootstrap CI, two-sided "
    "Wilcoxon signed-rank p over cases (scipy)",
    "selection": "each arm's weights: best mean region Dice (MONAI voxel-wise) on the val split; "
    "the test split is scored once",
    "realism": "real-only segmenter on each synthetic image vs its own mask (Dice); per case mean "
    "over seeds; mean/std over cases",
}
TARGETS: dict[str, float] = {"headroom": 0.05, "real+synthetic": 0.03, "best+synthetic": 0.01,
                             "recovery": 0.5, "p": 0.05}  # fmt: skip
"""Thresholds of the target checks (Dice as a fraction: 0.05 = 5 points)."""


def _looks_categorical(values: Sequence[str]) -> bool:
    vals = {v for v in values if v not in ("", "nan", "NaN", "None")}
    if not vals:
        return False
    try:
        nums = [float(v) for v in vals]
    except ValueError:
        return True
    return all(n.is_integer() for n in nums) and len(vals) <= 6


_NOT_CONDITIONS = {"case_id", "case", "id", "split", "has_mask", "geometry", "source", "path",
                   "seed", "mix_seed"}  # fmt: skip


def synthetic_conditions(
    syn_cases: Sequence[CaseRef], clinical_csv: Path | None
) -> dict[str, dict[str, str]]:
    """The categorical conditions of every synthetic case: ``{case_id: {column: value}}``.

    Columns are the categorical fields of the synthetic store's schema and, when the cohort has a
    ``clinical.csv``, its columns that look categorical (non-numeric, or at most 6 integer values).
    """
    table: dict[str, dict[str, str]] = {c.case_id: {} for c in syn_cases}
    for c in syn_cases:
        schema = getattr(c.dataset, "schema", None)
        names = [f.name for f in schema.categorical] if schema is not None else ["cohort", "grade"]
        for n in names:
            if n in c.row and str(c.row[n]) not in ("", "nan", "None"):
                table[c.case_id][n] = str(c.row[n])
    if clinical_csv is None or not clinical_csv.is_file():
        return table
    with open(clinical_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows:
        cols = list(rows[0].keys())
        id_col = next((k for k in ("case_id", "case", "id") if k in cols), cols[0])
        keep = [k for k in cols if k != id_col and k.lower() not in _NOT_CONDITIONS
                and not k.endswith("_path") and _looks_categorical([r[k] for r in rows])]  # fmt: skip
        for r in rows:
            if str(r[id_col]) in table:
                table[str(r[id_col])].update({k: str(r[k]) for k in keep if r[k] not in ("", "nan", "None")})
    return table


# -- tables -------------------------------------------------------------------------------------
def case_table(
    per_seed: Mapping[Any, Mapping[str, Any]], family: str, region: str, measure: str, ids: Sequence[str]
) -> np.ndarray | None:
    """``[n_seeds, n_cases]`` of one figure (``None`` when the family was not computed)."""
    key = "per_case" if family == "voxel" else "per_case_lesion"
    rows = []
    for res in per_seed.values():
        pc = res.get(key)
        if pc is None:
            return None
        regions = seg.REGIONS if region == "mean" else (region,)
        rows.append([float(np.mean([pc[c][r][measure] for r in regions])) for c in ids])
    return np.asarray(rows, dtype=np.float64)


def _summaries(per_seed: Mapping[Any, Any], families: Sequence[str], ids: Sequence[str], n_boot: int) -> dict:
    out: dict[str, Any] = {}
    for fam in families:
        out[fam] = {}
        for r in REGIONS_MEAN:
            out[fam][r] = {}
            for m in seg.METRICS:
                t = case_table(per_seed, fam, r, m, ids)
                out[fam][r][m] = None if t is None else st.summarise(t, n_boot)
    return out


def _paired(results: Mapping[str, Any], a: str, b: str, families: Sequence[str],
            ids: Sequence[str], n_boot: int) -> dict[str, Any]:  # fmt: skip
    seeds = [s for s in results[a] if s in results[b]]
    out: dict[str, Any] = {"arm": a, "ref": b, "seeds": [int(s) for s in seeds]}
    for fam in families:
        out[fam] = {}
        for r in REGIONS_MEAN:
            out[fam][r] = {}
            for m in seg.METRICS:
                ta = case_table({s: results[a][s] for s in seeds}, fam, r, m, ids)
                tb = case_table({s: results[b][s] for s in seeds}, fam, r, m, ids)
                out[fam][r][m] = None if ta is None or tb is None else st.paired(ta, tb, n_boot)
    return out


def comparisons(arms: Sequence[str], best: str | None = None) -> list[tuple[str, str]]:
    """Which pairs are compared: every arm with ``real``, every mixed arm with its base, and every
    arm with the best real-data arm ``best``."""
    pairs = [(a, "real") for a in arms if a != "real"]
    for a in arms:
        spec = parse_arm(a)
        if spec.source and spec.base not in (None, "real") and spec.base in arms:
            pairs.append((a, str(spec.base)))
    if best is not None:
        pairs += [(a, best) for a in arms if a not in (best, "real") and (a, best) not in pairs]
    return pairs


def best_real_arm(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The best of ``real+large`` and ``large-then-real``, chosen on **val** (mean over seeds of each
    run's best val score), never on test."""
    cands = {a: [r["best_val"] for r in results[a].values()] for a in ("real+large", "large-then-real")
             if a in results}  # fmt: skip
    scores = {a: float(np.mean(v)) for a, v in cands.items() if v and all(x is not None for x in v)}
    if not scores:
        return None
    best = max(scores, key=lambda a: scores[a])
    return {"arm": best, "chosen_on": "val", "val_dice": scores}


def _gain(summary: Mapping[str, Any], arm: str, ref: str, fam: str) -> float | None:
    if arm not in summary or ref not in summary or summary[arm]["summary"].get(fam) is None:
        return None
    return float(summary[arm]["summary"][fam]["mean"]["dice"]["mean"] - summary[ref]["summary"][fam]["mean"]["dice"]["mean"])


def recovery(arms: Mapping[str, Any], fam: str) -> dict[str, Any]:
    """Per synthetic arm with a stand-in twin: its gain over its base, the stand-in's, the ratio."""
    out: dict[str, Any] = {}
    for a in arms:
        spec = parse_arm(a)
        twin = arm_name(spec.base, "stand-in", spec.multiple)
        if spec.source != "synthetic" or twin not in arms:
            continue
        ref = spec.base or "real"
        g, gs = _gain(arms, a, ref, fam), _gain(arms, twin, ref, fam)
        ratio = None if g is None or gs is None or gs <= 0 else g / gs
        out[a] = {"stand_in": twin, "ref": ref, "gain": g, "stand_in_gain": gs, "ratio": ratio}
    return out


def _check(name: str, value: float | None, threshold: float, p: float | None = None,
           detail: str = "") -> dict[str, Any]:  # fmt: skip
    ok = None if value is None else bool(value >= threshold and (p is None or p < TARGETS["p"]))
    return {"name": name, "value": value, "threshold": threshold, "p_value": p, "passed": ok,
            "detail": detail}  # fmt: skip


def target_checks(report: Mapping[str, Any], fam: str) -> list[dict[str, Any]]:
    """The benchmark's targets on mean region Dice of one family, for every synthetic multiple
    (``passed`` None: not run)."""
    paired = report["paired"]

    def diff(a: str, b: str) -> tuple[float | None, float | None]:
        pr = paired.get(f"{a} vs {b}")
        cell = None if pr is None or pr.get(fam) is None else pr[fam]["mean"]["dice"]
        return (None, None) if cell is None else (cell["mean_diff"], cell["p_value"])

    conv = report["convergence"].get("real", {})
    checks = [{"name": "real arm converged on val", "value": conv.get("gain_last_third"),
               "threshold": conv.get("tol"), "p_value": None, "passed": conv.get("converged"),
               "detail": "rise of the best val mean region Dice over the last third of the steps "
                         "(passes below the threshold)"}]  # fmt: skip
    best = report.get("best_real_arm")
    for m in report["config"].get("synthetic_multiples", [1]):
        sfx = "" if int(m) == 1 else f"@{int(m)}x"
        v, _ = diff(f"real+stand-in{sfx}", "real")
        checks.append(_check(f"headroom: real+stand-in{sfx} - real", v, TARGETS["headroom"],
                             detail="a perfect generator's gain"))  # fmt: skip
        v, p = diff(f"real+synthetic{sfx}", "real")
        checks.append(_check(f"real+synthetic{sfx} - real", v, TARGETS["real+synthetic"], p))
        if best is not None:
            b = best["arm"]
            v, p = diff(f"{b}+synthetic{sfx}", b)
            checks.append(_check(f"{b}+synthetic{sfx} - {b} (best real-data arm, chosen on val)", v,
                                 TARGETS["best+synthetic"], p))  # fmt: skip
        rec = report["recovery"].get(fam, {}).get(f"real+synthetic{sfx}")
        checks.append(_check(f"recovery: (real+synthetic{sfx} - real) / (real+stand-in{sfx} - real)",
                             None if rec is None else rec["ratio"], TARGETS["recovery"]))  # fmt: skip
    return checks


def _realism(data: BenchmarkData, results: Mapping[str, Any], clinical: Mapping[str, Path | None]) -> dict:
    """Image-mask agreement of the real-only segmenter: held-out cases and each synthetic source."""
    seeds = list(results["real"])
    held = [c.case_id for c in data.heldout]
    real_dice = {c: {r: float(np.mean([results["real"][s]["per_case"][c][r]["dice"] for s in seeds]))
                     for r in seg.REGIONS} for c in held}  # fmt: skip
    out: dict[str, Any] = {"real_heldout": _dice_groups(real_dice, held)}
    for source in sorted({k for r in results["real"].values() for k in r.get("realism", {})}):
        per = [results["real"][s]["realism"][source] for s in seeds]
        ids = list(per[0])
        per_case = {c: {r: float(np.mean([p[c][r] for p in per])) for r in seg.REGIONS} for c in ids}
        pool = str(largest_pool(data.pools, source))
        conds = synthetic_conditions(data.pools[pool], clinical.get(source))
        by: dict[str, Any] = {}
        for col in sorted({k for d in conds.values() for k in d}):
            groups: dict[str, list[str]] = {}
            for cid in ids:
                if col in conds.get(cid, {}):
                    groups.setdefault(conds[cid][col], []).append(cid)
            by[col] = {val: _dice_groups(per_case, g) for val, g in sorted(groups.items())}
        out[source] = {"all": _dice_groups(per_case, ids), "by_condition": by, "per_case": per_case,
                       "conditions": conds}  # fmt: skip
    return out


def _dice_groups(per_case: Mapping[str, Mapping[str, float]], ids: Sequence[str]) -> dict[str, Any]:
    return {r: seg.mean_std([per_case[c][r] for c in ids]) for r in seg.REGIONS}


def assemble_report(
    config: Mapping[str, Any],
    data: BenchmarkData,
    results: Mapping[str, Mapping[int, Mapping[str, Any]]],
    pretraining: Mapping[int, Mapping[str, Any]],
    *,
    lesion: tuple[bool, str] = (False, ""),
    privacy: Mapping[str, Any] | None = None,
    clinical: Mapping[str, Path | None] | None = None,
    n_boot: int = st.N_BOOT,
) -> dict[str, Any]:
    """Every figure of one benchmark run as one JSON-ready dict (see the module docstring)."""
    ids = [c.case_id for c in data.heldout]
    fams = ["voxel", "lesion"] if lesion[0] else ["voxel"]
    arms: dict[str, Any] = {}
    for a, per_seed in results.items():
        plan = plan_arm(a, float(config.get("mix_ratio", 0.5)))
        arms[a] = {
            "composition": dict(plan.slots),
            "pool_sizes": {p: len(data.pools[p]) for p in plan.pools},
            "pretrain_steps": int(config["pretrain_steps"]) if parse_arm(a).pretrain else 0,
            "summary": _summaries(per_seed, fams, ids, n_boot),
            "best_val": [r["best_val"] for r in per_seed.values()],
            "best_step": [r["best_step"] for r in per_seed.values()],
            "seeds": {str(s): dict(r) for s, r in per_seed.items()},
        }
    report: dict[str, Any] = {
        "config": dict(config),
        "metrics": {"families": {f: FAMILIES[f] for f in fams}, "headline": fams[-1],
                    "lesion_available": lesion[0], "lesion_note": lesion[1]},  # fmt: skip
        "conventions": {"regions": {k: list(v) for k, v in seg.REGIONS.items()}, **CONVENTIONS},
        "cases": {"real_train": [c.case_id for c in data.pools["real"]], "val": [c.case_id for c in data.val],
                  "heldout": ids, **{k: [c.case_id for c in v] for k, v in data.pools.items() if k != "real"}},  # fmt: skip
        "arms": arms,
        "pretraining": {str(s): dict(v) for s, v in pretraining.items()},
        "paired": {f"{a} vs {b}": _paired(results, a, b, fams, ids, n_boot)
                   for a, b in comparisons(list(results), (best_real_arm(results) or {}).get("arm"))},  # fmt: skip
        "convergence": {a: st.convergence({s: r["curve"] for s, r in v.items()}, int(config["steps"]))
                        for a, v in results.items()},  # fmt: skip
        "best_real_arm": best_real_arm(results),
        "recovery": {f: recovery(arms, f) for f in fams},
        "realism": _realism(data, results, clinical or {}),
        "privacy": dict(privacy) if privacy is not None else None,
    }
    report["checks"] = {f: target_checks(report, f) for f in fams}
    return report


def _fmt(x: float | None, f: str = "{:.3f}") -> str:
    return "-" if x is None or not np.isfinite(x) else f.format(x)


def family_table(report: Mapping[str, Any], fam: str) -> list[str]:
    """Text rows of one metric family: per arm the mean region Dice (CI over cases, std over
    seeds), each region's Dice, mean HD95, and the paired difference with ``real``."""
    head = (f"{'arm':<30}{'mean Dice (95% CI)':>22}{'sd seeds':>9}" + "".join(f"{'Dice ' + r:>9}" for r in seg.REGIONS)
            + f"{'HD95 mm':>9}{'d vs real (95% CI)':>26}{'p':>8}{'best step':>11}")  # fmt: skip
    lines = [f"[{fam}] {FAMILIES[fam]}; mean = mean of WT, TC, ET", head, "-" * len(head)]
    for arm, res in report["arms"].items():
        s = res["summary"][fam]
        m = s["mean"]["dice"]
        cell = f"{_fmt(m['mean'])} ({_fmt(m['ci_low'])}-{_fmt(m['ci_high'])})"
        row = f"{arm:<30}{cell:>22}{_fmt(m['std_seeds']):>9}"
        row += "".join(f"{_fmt(s[r]['dice']['mean']):>9}" for r in seg.REGIONS)
        row += f"{_fmt(s['mean']['hd95']['mean'], '{:.1f}'):>9}"
        pr = report["paired"].get(f"{arm} vs real")
        if pr is None:
            row += f"{'baseline':>26}{'':>8}"
        else:
            d = pr[fam]["mean"]["dice"]
            ci = f"{_fmt(d['mean_diff'], '{:+.3f}')} ({_fmt(d['ci_low'], '{:+.3f}')}..{_fmt(d['ci_high'], '{:+.3f}')})"
            row += f"{ci:>26}{_fmt(d['p_value'], '{:.2g}'):>8}"
        steps = res["best_step"]
        lines.append(row + f"{'/'.join(map(str, steps)):>11}")
    return lines


def format_table(report: Mapping[str, Any]) -> str:
    """The console summary: every family's table, the target checks, convergence, realism and
    privacy."""
    cfg = report["config"]
    lines = [
        f"{cfg['cohort']}: n = {len(report['cases']['real_train'])} real training cases; scored on "
        f"{len(report['cases']['heldout'])} real {cfg['heldout']} cases; checkpoint chosen on "
        f"{len(report['cases']['val'])} val cases; seeds {cfg['seeds']}; {cfg['steps']} steps x "
        f"batch {cfg['batch_size']} per arm (+{cfg['pretrain_steps']} pretraining steps for "
        f"large-then-real); headline: mean region Dice [{report['metrics']['headline']}]",
    ]
    if not report["metrics"]["lesion_available"]:
        lines.append(f"BraTS lesion-wise metrics not computed: {report['metrics']['lesion_note']}")
    for fam in report["metrics"]["families"]:
        lines += ["", *family_table(report, fam), "", f"target checks [{fam}] (Dice as a fraction):"]
        for c in report["checks"][fam]:
            verdict = {True: "PASS", False: "FAIL", None: "not run"}[c["passed"]]
            p = "" if c["p_value"] is None else f", p {c['p_value']:.2g}"
            lines.append(f"  {verdict:<8}{c['name']}: {_fmt(c['value'], '{:+.4f}')} "
                         f"(threshold {_fmt(c['threshold'], '{:.3g}')}{p})")  # fmt: skip
    best = report.get("best_real_arm")
    if best is not None:
        lines.append(f"best real-data arm (on val): {best['arm']} {best['val_dice']}")
    real = report["realism"]
    lines += ["", "image-mask agreement (real-only segmenter, Dice vs own mask; voxel-wise):"]
    groups = [("real held-out", real["real_heldout"])]
    for source in (k for k in real if k != "real_heldout"):
        groups.append((f"{source} (all)", real[source]["all"]))
        for col, vals in real[source]["by_condition"].items():
            groups += [(f"{source} {col}={v}", t) for v, t in vals.items()]
    for name, t in groups:
        cells = "".join(f"  {r} {t[r]['mean']:.3f}+-{t[r]['std']:.3f}" for r in seg.REGIONS)
        lines.append(f"  {name:<28}{cells}  (n={t['WT']['n']})")
    if report.get("privacy"):
        lines += ["", "privacy:", report["privacy"].get("text", "")]
    return "\n".join(lines)
