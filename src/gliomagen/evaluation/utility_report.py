"""The downstream segmentation benchmark's report: JSON figures, a text table, a plot, HTML.

:func:`assemble_report` turns the per-seed, per-case tables of
:func:`gliomagen.evaluation.utility.run_utility` into one JSON-ready dict (summaries over seeds,
paired comparisons with the real-only arm, image-mask agreement by condition);
:func:`format_table` prints it; :func:`write_outputs` writes ``utility.json``, ``utility.png`` and a
self-contained ``index.html`` (jinja2, the plot embedded as base64), all three in full under
temporary names first, then renamed (:func:`gliomagen.evaluation.report_folder.write_files`): a
full disk changes none of them.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np

from gliomagen.evaluation import segmentation as seg
from gliomagen.evaluation.report_folder import write_files
from gliomagen.io.atomic import write_bytes, write_text

if TYPE_CHECKING:
    from gliomagen.evaluation.utility import ArmPlan, BenchmarkData, CaseRef


def _looks_categorical(values: Sequence[str]) -> bool:
    vals = {v for v in values if v not in ("", "nan", "NaN", "None")}
    if not vals:
        return False
    try:
        nums = [float(v) for v in vals]
    except ValueError:
        return True
    return all(n.is_integer() for n in nums) and len(vals) <= 6


_NOT_CONDITIONS = {
    "case_id",
    "case",
    "id",
    "split",
    "has_mask",
    "geometry",
    "source",
    "path",
    "seed",
    "mix_seed",
}


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
    if clinical_csv is not None and clinical_csv.is_file():
        with open(clinical_csv, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows:
            cols = list(rows[0].keys())
            id_col = next((k for k in ("case_id", "case", "id") if k in cols), cols[0])
            keep = [
                k
                for k in cols
                if k != id_col
                and k.lower() not in _NOT_CONDITIONS
                and not k.endswith("_path")
                and _looks_categorical([r[k] for r in rows])
            ]
            for r in rows:
                cid = str(r[id_col])
                if cid in table:
                    table[cid].update(
                        {k: str(r[k]) for k in keep if r[k] not in ("", "nan", "None")}
                    )
    return table


def _dice_groups(per_case: Mapping[str, Mapping[str, float]], ids: Sequence[str]) -> dict[str, Any]:
    return {r: seg.mean_std([per_case[c][r] for c in ids]) for r in seg.REGIONS}


CONVENTIONS: dict[str, str] = {
    "dice": "2|P&G|/(|P|+|G|); both empty -> 1.0, one empty -> 0.0",
    "hd95": "symmetric 95th-percentile surface distance in mm (MONAI, spacing-aware); "
    "both empty -> 0.0; one empty -> the volume diagonal in mm",
    "std": "over seeds of the per-seed mean over held-out cases (ddof=1; 0.0 for one seed)",
    "paired": "arm minus real per (seed, case); two-sided Wilcoxon signed-rank (scipy); "
    "pairs of one case under several seeds are not independent",
    "realism": "real-only segmenter on each image vs its own mask; per case mean over seeds; "
    "mean/std over cases",
}
"""How the report's numbers are defined (``conventions`` of ``utility.json``, with the regions)."""


def assemble_report(
    config: Mapping[str, Any],
    data: BenchmarkData,
    plans: Mapping[str, ArmPlan],
    results: Mapping[str, Mapping[int, Mapping[str, Any]]],
    syn_dice: Mapping[int, Mapping[str, Mapping[str, float]]],
    clinical_csv: Path | None,
) -> dict[str, Any]:
    """Every figure of a benchmark as one JSON-ready dict (see the module docstring)."""
    seeds = list(results["real"])
    base = {s: results["real"][s]["per_case"] for s in seeds}
    held_ids = [c.case_id for c in data.heldout]
    real_dice = {
        c: {r: float(np.mean([base[s][c][r]["dice"] for s in seeds])) for r in seg.REGIONS}
        for c in held_ids
    }
    realism: dict[str, Any] = {"real_heldout": _dice_groups(real_dice, held_ids)}
    if syn_dice:
        realism["synthetic"] = _synthetic_realism(data, syn_dice, seeds, clinical_csv)
    paired = {
        a: seg.paired_vs_baseline({s: results[a][s]["per_case"] for s in seeds}, base)
        for a in results
        if a != "real"
    }
    return {
        "config": dict(config),
        "conventions": {"regions": {k: list(v) for k, v in seg.REGIONS.items()}, **CONVENTIONS},
        "cases": {
            "real_train": [c.case_id for c in data.pools["real"]],
            "large_train": [c.case_id for c in data.pools["large"]],
            "synthetic": [c.case_id for c in data.pools["synthetic"]],
            "heldout": held_ids,
        },
        "arms": _arm_summaries(data, plans, results, seeds),
        "paired_vs_real": paired,
        "realism": realism,
    }


def _synthetic_realism(
    data: BenchmarkData,
    syn_dice: Mapping[int, Mapping[str, Mapping[str, float]]],
    seeds: list[int],
    clinical_csv: Path | None,
) -> dict[str, Any]:
    """The real-only segmenter's Dice on the synthetic cases: all, by condition, per case."""
    syn_ids = [c.case_id for c in data.pools["synthetic"]]
    per_case = {
        c: {r: float(np.mean([syn_dice[s][c][r] for s in seeds])) for r in seg.REGIONS}
        for c in syn_ids
    }
    conds = synthetic_conditions(data.pools["synthetic"], clinical_csv)
    by: dict[str, dict[str, Any]] = {}
    for col in sorted({k for d in conds.values() for k in d}):
        groups: dict[str, list[str]] = {}
        for cid in syn_ids:
            if col in conds[cid]:
                groups.setdefault(conds[cid][col], []).append(cid)
        by[col] = {val: _dice_groups(per_case, ids) for val, ids in sorted(groups.items())}
    return {
        "all": _dice_groups(per_case, syn_ids),
        "by_condition": by,
        "per_case": per_case,
        "conditions": conds,
    }


def _arm_summaries(
    data: BenchmarkData,
    plans: Mapping[str, ArmPlan],
    results: Mapping[str, Mapping[int, Mapping[str, Any]]],
    seeds: list[int],
) -> dict[str, Any]:
    """Per arm: its training composition, pool sizes, the summary over seeds and every seed."""
    arms: dict[str, Any] = {}
    for a, per_seed in results.items():
        plan = plans[a]
        arms[a] = {
            "composition": {p: f for p, f in plan.slots},
            "pool_sizes": {p: len(data.pools[p]) for p in plan.pools},
            "summary": seg.summarise_seeds([per_seed[s]["mean"] for s in seeds]),
            "seeds": {str(s): dict(per_seed[s]) for s in seeds},
        }
    return arms


def format_table(report: Mapping[str, Any]) -> str:
    """Plain-text table: Dice and HD95 (mean +- std over seeds) per arm and region, and the WT
    Dice difference to ``real`` with its Wilcoxon p-value."""
    regions = list(seg.REGIONS)
    head = f"{'arm':<22}" + "".join(f"{'Dice ' + r:>15}" for r in regions)
    head += "".join(f"{'HD95 ' + r:>14}" for r in regions) + f"{'dDice WT (p)':>20}"
    lines = [head, "-" * len(head)]
    for arm, res in report["arms"].items():
        s = res["summary"]
        row = f"{arm:<22}" + "".join(
            f"{s[r]['dice_mean']:>8.3f}+-{s[r]['dice_std']:.3f}" for r in regions
        )
        row += "".join(f"{s[r]['hd95_mean']:>8.1f}+-{s[r]['hd95_std']:<4.1f}" for r in regions)
        pr = report["paired_vs_real"].get(arm)
        tail = (
            "baseline"
            if pr is None
            else f"{pr['WT']['dice']['mean_diff']:+.3f} ({pr['WT']['dice']['p_value']:.2g})"
        )
        lines.append(row + f"{tail:>20}")
    real = report["realism"]
    lines.append("")
    lines.append("image-mask agreement (real-only segmenter, Dice vs own mask):")
    groups = [("real held-out", real["real_heldout"])]
    if "synthetic" in real:
        groups.append(("synthetic (all)", real["synthetic"]["all"]))
        for col, vals in real["synthetic"]["by_condition"].items():
            groups += [(f"synthetic {col}={v}", t) for v, t in vals.items()]
    for name, t in groups:
        cells = "".join(f"  {r} {t[r]['mean']:.3f}+-{t[r]['std']:.3f}" for r in regions)
        lines.append(f"  {name:<28}{cells}  (n={t['WT']['n']})")
    return "\n".join(lines)


def _plot(report: Mapping[str, Any]) -> bytes:
    """The Dice-per-arm bar chart as PNG bytes."""
    import matplotlib  # heavy; and the Agg backend must be chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms, regions = list(report["arms"]), list(seg.REGIONS)
    width = 0.8 / max(1, len(arms))
    fig, ax = plt.subplots(figsize=(8.0, 3.6), dpi=110)
    for k, arm in enumerate(arms):
        s = report["arms"][arm]["summary"]
        x = np.arange(len(regions)) + (k - (len(arms) - 1) / 2) * width
        ax.bar(
            x,
            [s[r]["dice_mean"] for r in regions],
            width,
            yerr=[s[r]["dice_std"] for r in regions],
            capsize=3,
            label=arm,
        )
    ax.set_xticks(np.arange(len(regions)), regions)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice (mean +- std over seeds)")
    cfg = report["config"]
    ax.set_title(
        f"{cfg['cohort']} held-out ({cfg['heldout']}), {len(cfg['seeds'])} seeds, {cfg['steps']} steps"
    )
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>gliomagen utility: {{ cfg.cohort }}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #bbb;padding:.25em .6em;text-align:right}th{background:#eee}td:first-child{text-align:left}
.note{background:#fff6d5;padding:.6em;border-left:4px solid #e0b000}</style></head><body>
<h1>Does synthetic data help? Segmentation on {{ cfg.cohort }}</h1>
<p>{{ cfg.network }} ({{ cfg.init_filters }} filters), {{ cfg.steps }} steps x batch {{ cfg.batch_size }} in every arm,
seeds {{ cfg.seeds|join(', ') }}, mix ratio {{ cfg.mix_ratio }}, grid {{ cfg.size|join('x') }} at
{{ cfg.spacing_mm|map('round', 2)|join('x') }} mm; scored on {{ n_held }} real {{ cfg.heldout }} cases of {{ cfg.cohort }};
large cohort: {{ cfg.large_cohort|join(', ') or 'none' }}.</p>
{% if cfg.synthetic_note %}<p class="note">{{ cfg.synthetic_note }}</p>{% endif %}
<img alt="Dice per arm" src="data:image/png;base64,{{ png }}">
<h2>Dice and HD95 (mean &plusmn; std over seeds)</h2>
<table><tr><th>arm</th>{% for r in regions %}<th>Dice {{ r }}</th>{% endfor %}{% for r in regions %}<th>HD95 {{ r }} (mm)</th>{% endfor %}</tr>
{% for arm, res in arms.items() %}<tr><td>{{ arm }}</td>
{% for r in regions %}<td>{{ '%.3f'|format(res.summary[r].dice_mean) }} &plusmn; {{ '%.3f'|format(res.summary[r].dice_std) }}</td>{% endfor %}
{% for r in regions %}<td>{{ '%.1f'|format(res.summary[r].hd95_mean) }} &plusmn; {{ '%.1f'|format(res.summary[r].hd95_std) }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Paired comparison with the real-only arm</h2>
<p>Mean per-case difference (arm &minus; real) over seeds x cases, Wilcoxon signed-rank p-value.</p>
<table><tr><th>arm</th>{% for r in regions %}<th>&Delta;Dice {{ r }} (p)</th>{% endfor %}{% for r in regions %}<th>&Delta;HD95 {{ r }} (p)</th>{% endfor %}</tr>
{% for arm, pr in paired.items() %}<tr><td>{{ arm }}</td>
{% for m, f in [('dice', '%+.3f'), ('hd95', '%+.2f')] %}{% for r in regions %}<td>{{ f|format(pr[r][m].mean_diff) }} ({{ '%.2g'|format(pr[r][m].p_value) }})</td>{% endfor %}{% endfor %}</tr>
{% endfor %}</table>
<h2>Image-mask agreement</h2>
<p>The real-only segmenter applied to each image, Dice against the image's own mask (mean &plusmn; std over cases).</p>
<table><tr><th>cases</th><th>n</th>{% for r in regions %}<th>Dice {{ r }}</th>{% endfor %}</tr>
{% for name, t in realism %}<tr><td>{{ name }}</td><td>{{ t.WT.n }}</td>
{% for r in regions %}<td>{{ '%.3f'|format(t[r].mean) }} &plusmn; {{ '%.3f'|format(t[r].std) }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p>Conventions: {% for k, v in conv.items() if k != 'regions' %}<b>{{ k }}</b>: {{ v }}. {% endfor %}
Regions: WT = {1,2,3}, TC = {1,3}, ET = {3}.</p>
</body></html>
"""


def write_outputs(report: Mapping[str, Any], out: str | Path) -> None:
    """Write ``utility.json``, ``utility.png`` and a self-contained ``index.html`` into ``out``.

    Raises:
        GliomagenError: a write failed (one line naming the file); none of the three was changed.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png = _plot(report)
    html = _html(report, png)
    write_files(out, {
        "utility.json": lambda tmp: write_text(tmp, json.dumps(report, indent=1, allow_nan=True)),
        "utility.png": lambda tmp: write_bytes(tmp, png),
        "index.html": lambda tmp: write_text(tmp, html),
    })  # fmt: skip


def _html(report: Mapping[str, Any], png: bytes) -> str:
    """The HTML page of the report, the plot ``png`` embedded."""
    real = report["realism"]
    rows = [("real held-out", real["real_heldout"])]
    if "synthetic" in real:
        rows.append(("synthetic (all)", real["synthetic"]["all"]))
        rows += [
            (f"synthetic {c}={v}", t)
            for c, vals in real["synthetic"]["by_condition"].items()
            for v, t in vals.items()
        ]
    return (
        jinja2.Environment(autoescape=True)
        .from_string(_HTML)
        .render(
            cfg=report["config"],
            regions=list(seg.REGIONS),
            arms=report["arms"],
            paired=report["paired_vs_real"],
            realism=rows,
            conv=report["conventions"],
            n_held=len(report["cases"]["heldout"]),
            png=base64.b64encode(png).decode("ascii"),
        )
    )
