"""The utility benchmark's files: ``utility.json``, ``utility.png`` and a self-contained ``index.html``.

The page holds every table of the report (each naming its metric family: MONAI voxel-wise or
BraTS lesion-wise), the headline figure (mean region Dice per arm with its 95% interval over test
cases) and the val curves of every arm and seed (the checkpoint choice and the convergence check),
the target checks, the privacy report with its flagged synthetic cases, and image-mask agreement.
The three files are written in full under temporary names, then renamed
(:func:`gliomagen.evaluation.report_folder.write_files`): a full disk changes none of them.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from gliomagen.evaluation import segmentation as seg
from gliomagen.evaluation.report_folder import write_files
from gliomagen.io.atomic import write_bytes, write_text


def _figure(reports: Mapping[str, Mapping[str, Any]]) -> bytes:
    """Per run: mean region Dice per arm (95% CI over cases) and the val curves, as PNG bytes."""
    import matplotlib  # heavy; and the Agg backend must be chosen before pyplot is imported

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(len(r["arms"]) for r in reports.values())
    height = max(4.2, 0.3 * rows + 1.6)
    fig, axes = plt.subplots(len(reports), 2, figsize=(12.0, height * len(reports)), dpi=100, squeeze=False)
    colours = plt.get_cmap("tab20")
    for (key, rep), (bar, cur) in zip(reports.items(), axes, strict=True):
        fam = rep["metrics"]["headline"]
        arms = list(rep["arms"])
        m = np.array([rep["arms"][a]["summary"][fam]["mean"]["dice"]["mean"] for a in arms])
        lo = np.array([rep["arms"][a]["summary"][fam]["mean"]["dice"]["ci_low"] for a in arms])
        hi = np.array([rep["arms"][a]["summary"][fam]["mean"]["dice"]["ci_high"] for a in arms])
        y = np.arange(len(arms))[::-1]
        bar.barh(y, m, xerr=[m - lo, hi - m], capsize=3, color="#7aa6c2")
        bar.set_yticks(y, arms, fontsize=8)
        bar.axvline(m[0], color="k", lw=0.8, ls="--")
        bar.set_xlabel(f"mean region Dice [{fam}] (mean over seeds; 95% CI over test cases)")
        bar.set_title(f"{key}: test split, {rep['config']['cohort']}", fontsize=10)
        for k, a in enumerate(arms):
            runs = rep["arms"][a]["seeds"].values()
            curves = [r["curve"] for r in runs if r["curve"].get("step")]
            if not curves:
                continue
            mean = np.mean([c["val_dice"] for c in curves], axis=0)
            line = cur.plot(curves[0]["step"], mean, lw=2.4 if a == "real" else 1.2, label=a,
                            color=colours(k % 20), ls="--" if "stand-in" in a else "-")  # fmt: skip
            for c in curves:
                cur.plot(c["step"], c["val_dice"], lw=0.5, alpha=0.35, color=line[0].get_color())
        cur.set_xlabel("optimiser step (after pretraining for large-then-real)")
        cur.set_ylabel("val mean region Dice [voxel]")
        cur.set_title("val curves: mean over seeds, each seed thin; stand-in dashed; real thick", fontsize=10)
        cur.legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


_SECTION = """
<h2>{{ key }}</h2>
<p>{{ cfg.network }} ({{ cfg.init_filters }} filters), {{ cfg.steps }} steps x batch {{ cfg.batch_size }} in every arm
({{ cfg.pretrain_steps }} pretraining steps on the large cohort first for large-then-real, once per seed);
val every {{ cfg.val_every }} steps; seeds {{ cfg.seeds|join(', ') }}; mix ratio {{ cfg.mix_ratio }};
grid {{ cfg.size|join('x') }} at {{ cfg.spacing_mm|map('round', 2)|join('x') }} mm.
n = {{ r.cases.real_train|length }} real {{ cfg.cohort }} training cases; checkpoint chosen on {{ r.cases.val|length }}
val cases; scored once on {{ r.cases.heldout|length }} real {{ cfg.heldout }} cases of {{ cfg.cohort }};
large cohort: {{ cfg.large_cohort|join(', ') or 'none' }}.</p>
{% if cfg.synthetic_note %}<p class="note">{{ cfg.synthetic_note }}</p>{% endif %}
{% if not r.metrics.lesion_available %}<p class="note">BraTS lesion-wise metrics not computed: {{ r.metrics.lesion_note }}</p>{% endif %}
{% for fam, famname in r.metrics.families.items() %}
<h3>[{{ fam }}] {{ famname }}</h3>
<div class="scroll"><table><tr><th>arm</th><th>mean region Dice [{{ fam }}] (95% CI)</th><th>sd seeds</th>
{% for g in regions %}<th>Dice {{ g }} [{{ fam }}]</th>{% endfor %}<th>HD95 mean [{{ fam }}] mm</th>
{% for g in regions %}<th>HD95 {{ g }} mm</th>{% endfor %}<th>best step per seed</th><th>batch composition</th></tr>
{% for arm, a in r.arms.items() %}{% set s = a.summary[fam] %}<tr><td>{{ arm }}</td>
<td>{{ f3(s.mean.dice.mean) }} ({{ f3(s.mean.dice.ci_low) }}&ndash;{{ f3(s.mean.dice.ci_high) }})</td><td>{{ f3(s.mean.dice.std_seeds) }}</td>
{% for g in regions %}<td>{{ f3(s[g].dice.mean) }}</td>{% endfor %}<td>{{ f1(s.mean.hd95.mean) }}</td>
{% for g in regions %}<td>{{ f1(s[g].hd95.mean) }}</td>{% endfor %}<td>{{ a.best_step|join(' / ') }}</td>
<td>{% for p, f in a.composition.items() %}{{ p }} {{ '%.2f'|format(f) }}{% if not loop.last %}, {% endif %}{% endfor %}{% if a.pretrain_steps %} (after {{ a.pretrain_steps }} pretraining steps){% endif %}</td></tr>
{% endfor %}</table></div>
<h4>Paired differences [{{ fam }}]: per test case averaged over seeds; mean (95% CI), Wilcoxon p</h4>
<div class="scroll"><table><tr><th>comparison</th>{% for g in regions_mean %}<th>&Delta;Dice {{ g }} [{{ fam }}]</th>{% endfor %}<th>&Delta;HD95 mean mm</th></tr>
{% for name, pr in r.paired.items() %}<tr><td>{{ name }}</td>
{% for g in regions_mean %}{% set d = pr[fam][g].dice %}<td>{{ sf3(d.mean_diff) }} ({{ sf3(d.ci_low) }}..{{ sf3(d.ci_high) }}) p={{ p2(d.p_value) }}</td>{% endfor %}
{% set h = pr[fam].mean.hd95 %}<td>{{ sf1(h.mean_diff) }} p={{ p2(h.p_value) }}</td></tr>
{% endfor %}</table></div>
<h4>Target checks [{{ fam }}], mean region Dice as a fraction (0.05 = 5 points)</h4>
<table><tr><th>check</th><th>value</th><th>threshold</th><th>p</th><th>verdict</th></tr>
{% for c in r.checks[fam] %}<tr><td>{{ c.name }}</td><td>{{ sf3(c.value) }}</td><td>{{ c.threshold }}</td><td>{{ p2(c.p_value) }}</td>
<td class="{{ {True: 'pass', False: 'fail', None: ''}[c.passed] }}">{{ {True: 'pass', False: 'FAIL', None: 'not run'}[c.passed] }}</td></tr>{% endfor %}</table>
{% if r.recovery[fam] %}<p>Recovery of the stand-in's gain [{{ fam }}]:
{% for a, v in r.recovery[fam].items() %}{{ a }}: {{ sf3(v.gain) }} of {{ sf3(v.stand_in_gain) }} ({{ v.stand_in }}) = {{ f3(v.ratio) }}; {% endfor %}</p>{% endif %}
{% endfor %}
<h3>Convergence and checkpoint choice (val split, MONAI voxel-wise mean region Dice)</h3>
<table><tr><th>arm</th><th>rise of the best val score over the last third</th><th>converged (&lt; {{ r.convergence.real.tol }})</th><th>best val per seed</th></tr>
{% for a, c in r.convergence.items() %}<tr><td>{{ a }}</td><td>{{ sf3(c.gain_last_third) }}</td><td>{{ c.converged }}</td>
<td>{{ r.arms[a].best_val|map('round', 3)|join(' / ') if r.arms[a].best_val[0] is not none else '-' }}</td></tr>{% endfor %}</table>
{% if r.best_real_arm %}<p>Best real-data arm, chosen on val: <b>{{ r.best_real_arm.arm }}</b> ({{ r.best_real_arm.val_dice }}).</p>{% endif %}
{% for s, p in r.pretraining.items() %}<p>Pretraining, seed {{ s }}: {{ p.steps }} steps on the large cohort, {{ p.seconds|round(0) }} s;
val (zero-shot on {{ cfg.cohort }}) at the last step: {{ f3(p.curve.val_dice[-1]) if p.curve.val_dice else '-' }}.</p>{% endfor %}
<h3>Privacy</h3>
{% if r.privacy and r.privacy.available %}<p>train = {{ r.privacy.train }}; heldout = {{ r.privacy.heldout }}.</p>
{% for src, p in r.privacy.sources.items() %}<h4>{{ src }} ({{ p.pool }})</h4><pre>{{ p.text }}</pre>
<p>Flagged synthetic cases ({{ p.flagged|length }}): {{ p.flagged|join(', ') or 'none' }}</p>{% endfor %}
{% else %}<p class="note">Privacy not computed{% if r.privacy %}: {{ r.privacy.why }}{% endif %}.</p>{% endif %}
<h3>Image-mask agreement</h3>
<p>The real-only segmenter applied to each image, Dice [voxel] against the image's own mask (mean &plusmn; std over cases).</p>
<table><tr><th>cases</th><th>n</th>{% for g in regions %}<th>Dice {{ g }} [voxel]</th>{% endfor %}</tr>
{% for name, t in realism[key] %}<tr><td>{{ name }}</td><td>{{ t.WT.n }}</td>
{% for g in regions %}<td>{{ f3(t[g].mean) }} &plusmn; {{ f3(t[g].std) }}</td>{% endfor %}</tr>{% endfor %}</table>
"""

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>gliomagen utility</title>
<style>body{font-family:sans-serif;margin:2em;max-width:90em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #bbb;padding:.25em .6em;text-align:right;font-size:90%}th{background:#eee}td:first-child{text-align:left}
.note{background:#fff6d5;padding:.6em;border-left:4px solid #e0b000}.scroll{overflow-x:auto}.pass{background:#dfd}.fail{background:#fdd}</style></head><body>
<h1>Does synthetic data help a segmenter on the scarce cohort?</h1>
<p>Metric families: <b>[voxel]</b> MONAI voxel-wise Dice / HD95; <b>[lesion]</b> the official BraTS lesion-wise Dice / HD95.
Regions: WT = {1,2,3}, TC = {1,3}, ET = {3}; mean = the mean of the three (headline: mean region Dice).</p>
{% for n in notes %}<p class="note">{{ n }}</p>{% endfor %}
<img alt="mean region Dice per arm and val curves" style="max-width:100%" src="data:image/png;base64,{{ png }}">
{% for key, r in reports.items() %}{% set cfg = r.config %}""" + _SECTION + """{% endfor %}
<h2>Conventions</h2><p>{% for k, v in conv.items() if k != 'regions' %}<b>{{ k }}</b>: {{ v }}. {% endfor %}</p>
</body></html>
"""


def _num(fmt: str) -> Any:
    def f(x: Any) -> str:
        return "-" if x is None or not np.isfinite(float(x)) else fmt.format(float(x))

    return f


def _realism_rows(rep: Mapping[str, Any]) -> list[tuple[str, Any]]:
    real = rep["realism"]
    rows = [("real held-out", real["real_heldout"])]
    for source in (k for k in real if k != "real_heldout"):
        rows.append((f"{source} (all)", real[source]["all"]))
        rows += [(f"{source} {c}={v}", t) for c, vals in real[source]["by_condition"].items()
                 for v, t in vals.items()]  # fmt: skip
    return rows


def render_html(reports: Mapping[str, Mapping[str, Any]], png: bytes, notes: Sequence[str] = ()) -> str:
    """The page of one or more runs (e.g. one per n), the figure ``png`` embedded."""
    first = next(iter(reports.values()))
    env = jinja2.Environment(autoescape=True)
    return env.from_string(_PAGE).render(
        reports=reports, regions=list(seg.REGIONS), regions_mean=[*seg.REGIONS, "mean"],
        realism={k: _realism_rows(r) for k, r in reports.items()}, conv=first["conventions"],
        png=base64.b64encode(png).decode("ascii"), notes=list(notes),
        f3=_num("{:.3f}"), f1=_num("{:.1f}"), sf3=_num("{:+.3f}"), sf1=_num("{:+.1f}"), p2=_num("{:.2g}"),
    )  # fmt: skip


def write_outputs(
    report: Mapping[str, Any],
    out: str | Path,
    *,
    runs: Mapping[str, Mapping[str, Any]] | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Write ``utility.json``, ``utility.png`` and ``index.html`` into ``out``.

    Args:
        report: the JSON written (one run's report, or a document holding several).
        out: the output folder.
        runs: the runs shown on the page, by title (default: ``report`` alone).
        notes: paragraphs shown above the figure (e.g. the benchmark's design and timing).

    Raises:
        GliomagenError: a write failed (one line naming the file); none of the three was changed.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shown = dict(runs) if runs is not None else {f"n = {len(report['cases']['real_train'])}": report}
    png = _figure(shown)
    html = render_html(shown, png, notes)
    write_files(out, {
        "utility.json": lambda tmp: write_text(tmp, json.dumps(report, indent=1, allow_nan=True)),
        "utility.png": lambda tmp: write_bytes(tmp, png),
        "index.html": lambda tmp: write_text(tmp, html),
    })  # fmt: skip
