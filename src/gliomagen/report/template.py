"""The jinja2 template of the HTML report (rendered by :func:`gliomagen.report.html.render`)."""

from __future__ import annotations

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gliomagen evaluation{% if inputs %}: {{ inputs.synthetic.name }}{% endif %}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em;overflow-wrap:break-word}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}
.scroll{overflow-x:auto;max-width:100%}
.warn{background:#fff4ce;border:1px solid #d9a400;border-radius:4px;padding:.5em .8em;margin:.6em 0;max-width:60em}
details{margin:1.5em 0;color:#555}summary{cursor:pointer;font-weight:600}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.flag{background:#fde0dc}.note{color:#555;font-size:.85em;max-width:60em}
img{max-width:100%;height:auto;display:block;margin:.4em 0}
.ci{color:#666;font-size:.9em}
</style></head><body>
<h1>gliomagen evaluation report</h1>
{% if inputs %}
<div class="scroll"><table>
<tr><th class="l">held-out real</th><td class="l">{{ inputs.real.name }} ({{ inputs.real.n }} cases)</td></tr>
<tr><th class="l">training (reference)</th><td class="l">{{ inputs.train.name }} ({{ inputs.train.n }} cases)</td></tr>
<tr><th class="l">synthetic</th><td class="l">{{ inputs.synthetic.name }} ({{ inputs.synthetic.n }} cases)</td></tr>
<tr><th class="l">grid</th><td class="l">{{ inputs.grid | join(" x ") }} voxels, {{ inputs.spacing_mm | map("round", 2) | join(" x ") }} mm</td></tr>
<tr><th class="l">features</th><td class="l">{{ extractor.name }} ({{ extractor.dim }} dims){% if extractor.weights %}, weights {{ extractor.weights }}{% endif %}</td></tr>
<tr><th class="l">settings</th><td class="l">{{ settings.bootstrap }} bootstrap resamples ({{ (settings.ci_level * 100) | round | int }}% intervals), seed {{ settings.seed }}{% if settings.device %}, networks on {{ settings.device }}{% endif %}</td></tr>
<tr><th class="l">created</th><td class="l">{{ created }} by gliomagen {{ version }}</td></tr>
</table></div>
{% endif %}

{% if distances %}
<h2 id="distances">Feature distances</h2>
<p class="note">Frechet distance (FD), kernel inception distance (KID), precision, recall, density and coverage
in {{ extractor.name }} feature space; synthetic cases against the held-out real cases, beside the floor:
training cases (as many as there are synthetic ones) against the same held-out cases. Lower FD/KID is better; a
synthetic FD near the floor means the two sets are as alike as two real samples. KID is shown times 1000. KID is an
unbiased estimate, so it can be slightly negative when the two sets are alike; read a negative value as zero.</p>
{% if few_cases %}<div class="warn"><b>Too few cases:</b> with fewer than {{ min_cases }} cases in a set, FD, KID and their
intervals say little; compare them with caution. Conditions concerned: {{ few_cases | join("; ") }}.</div>{% endif %}
<div class="scroll"><table><tr><th class="l">condition</th><th>n real</th><th>n syn</th><th>FD synthetic</th><th>FD floor</th><th>KID x 1000 synthetic</th><th>KID x 1000 floor</th>
<th>precision</th><th>recall</th><th>density</th><th>coverage</th></tr>
{% for key, d in distances.items() %}<tr><td class="l">{{ key }}</td><td>{{ d.n_real }}</td><td>{{ d.n_synthetic }}</td>
<td>{{ ci(d.synthetic, "fd") }}</td><td>{{ ci(d.floor, "fd") }}</td><td>{{ ci(d.synthetic, "kid", 3, kid_scale) }}</td><td>{{ ci(d.floor, "kid", 3, kid_scale) }}</td>
{% for m in ["precision", "recall", "density", "coverage"] %}<td>{{ ci(d.synthetic, m) }}<br><span class="ci">floor {{ num((d.floor or {}).get(m, {}).get("value")) }}</span></td>{% endfor %}</tr>
{% endfor %}</table></div>
<img alt="FD and KID per condition" src="{{ images.distances }}">
{% endif %}

{% if diversity %}
<h2 id="diversity">Diversity</h2>
<p class="note">Mean MS-SSIM inside the brain over pairs of distinct cases (up to {{ settings.n_pairs }} pairs). A synthetic
value well above the real one means the generator repeats itself (mode collapse).</p>
<div class="scroll"><table><tr><th class="l">condition</th><th>synthetic</th><th>pairs</th><th>real held-out</th><th>pairs</th></tr>
{% for key, d in diversity.items() %}<tr><td class="l">{{ key }}</td><td>{{ mean_ci(d.synthetic) }}</td><td>{{ d.synthetic.n_pairs }}</td>
<td>{{ mean_ci(d.real) }}</td><td>{{ d.real.n_pairs }}</td></tr>{% endfor %}</table></div>
<img alt="diversity per condition" src="{{ images.diversity }}">
{% endif %}

{% if memo and memo.cases %}
<h2 id="memorisation">Memorisation audit</h2>
<p class="note">Each synthetic case's nearest training case by SSIM (inside the brain) and by standardised feature
distance. A case is flagged when it is closer than the {{ memo.percentile | round(1) }}th percentile of the held-out real
cases' nearest-training distances by both measures (SSIM above {{ num(memo.threshold.ssim, 4) }} and feature distance
below {{ num(memo.threshold.feature_distance) }}); the flag column also shows each criterion alone. Among the held-out
cases themselves {{ pct(memo.expected_fraction) }} cross both thresholds.</p>
<p><b>{{ memo.n_flagged }}</b> of {{ memo.cases | length }} synthetic cases flagged ({{ pct(memo.fraction_flagged) }}).</p>
<div class="scroll"><table><tr><th class="l">condition</th><th>synthetic cases</th><th>flagged</th></tr>
{% for key, d in memo.by_condition.items() %}<tr><td class="l">{{ key }}</td><td>{{ d.n }}</td><td>{{ d.n_flagged }}</td></tr>{% endfor %}</table></div>
<div class="scroll"><table><tr><th class="l">synthetic case</th><th class="l">labels</th><th class="l">nearest by SSIM</th><th>SSIM</th><th class="l">nearest by features</th><th>feature distance</th><th class="l">flag</th></tr>
{% for r in memo_rows %}<tr{% if r.flagged %} class="flag"{% endif %}><td class="l">{{ r.case_id }}</td><td class="l">{{ labels(r.labels) }}</td>
<td class="l">{{ r.nearest_by_ssim }}</td><td>{{ num(r.ssim, 4) }}</td><td class="l">{{ r.nearest_by_feature }}</td><td>{{ num(r.feature_distance) }}</td>
<td class="l">{% if r.flag_ssim %}SSIM {% endif %}{% if r.flag_feature %}features{% endif %}</td></tr>{% endfor %}</table></div>
{% if memo_hidden %}<p class="note">{{ memo_hidden }} further unflagged cases are listed in metrics.json.</p>{% endif %}
<img alt="nearest-training distances" src="{{ images.memorisation }}">
{% elif memo %}<details id="memorisation"><summary>Memorisation audit: no synthetic cases to audit</summary></details>
{% endif %}

{% if fidelity %}
<h2 id="fidelity">Conditional fidelity</h2>
<p class="note">A classifier (logistic regression on standardised features; ridge regression for continuous labels)
trained on the real training split predicts each synthetic case's label; accuracy against the requested label,
beside the same classifier on held-out real cases and chance (the majority class).</p>
<div class="scroll"><table><tr><th class="l">label</th><th>n synthetic</th><th>synthetic</th><th>held-out real</th><th>chance</th><th class="l">per category (synthetic)</th></tr>
{% for name, f in fidelity.items() %}<tr><td class="l">{{ name }}</td>
{% if f.skipped %}<td class="l" colspan="5">not scored: {{ f.skipped }}</td>
{% elif f.kind == "categorical" %}<td>{{ f.synthetic.n }}</td><td>{{ pct(f.synthetic.accuracy) }}</td><td>{{ pct(f.heldout.accuracy) }}</td><td>{{ pct(f.chance) }}</td>
<td class="l">{% for c, e in (f.synthetic.per_category or {}).items() %}{{ c }}: {{ pct(e.accuracy) }} (n={{ e.n }}){% if not loop.last %}; {% endif %}{% endfor %}</td>
{% else %}<td>{{ f.synthetic.n }}</td><td>r={{ num(f.synthetic.pearson_r) }}, MAE={{ num(f.synthetic.mae) }}</td><td>r={{ num(f.heldout.pearson_r) }}, MAE={{ num(f.heldout.mae) }}</td><td></td><td></td>{% endif %}</tr>
{% endfor %}</table></div>
{% endif %}

{% if judge and judge.per_value %}
<h2 id="judge">Conditioning judge</h2>
<p class="note">{{ judge.faithful }} {{ judge.samples_per_grade }} samples per grade and {{ judge.by }} value from
{{ judge.checkpoint }} (seed {{ judge.seed }}{% if judge.truncation is defined and judge.truncation < 1 %}; truncation psi {{ judge.truncation }} toward each condition's mean w{% endif %}; the other conditions {% if judge.unset == "drawn" %}drawn from a training
case given the set ones, as gliomagen generate does{% else %}unknown: the checkpoint holds no table of training
conditions{% endif %}); a grade passes when its faithful rate reaches the target. Rates with a {{ judge.interval }};
the real training cases judged alike are the calibration: what the judge gives real tumours.</p>
<p><b>{% if judge.passed %}Every {{ judge.by }} and grade reaches its target.{% else %}Not every {{ judge.by }} and grade reaches its target.{% endif %}</b></p>
<div class="scroll"><table><tr><th class="l">{{ judge.by }}</th><th class="l">grade</th><th>faithful (generated)</th><th>target</th><th class="l">pass</th><th>faithful (real training cases)</th></tr>
{% for value, e in judge.per_value.items() %}{% for grade in ["HGG", "LGG"] %}{% set g = e[grade] %}<tr{% if not g["pass"] %} class="flag"{% endif %}><td class="l">{{ value }}</td><td class="l">{{ grade }}</td>
<td>{{ rate_ci(g.generated) }}</td><td>{{ pct(g.target) }}</td><td class="l">{{ "pass" if g["pass"] else "fail" }}</td><td>{{ rate_ci(g.real) }}</td></tr>
{% endfor %}{% endfor %}</table></div>
{% elif judge %}<details id="judge"><summary>Conditioning judge: nothing judged</summary></details>
{% endif %}

{% if masks %}
<h2 id="masks">Tumour masks</h2>
<p class="note">Whole-tumour volume (labels 1-3) and enhancing fraction (label 3 / labels 1-3) of the cases with a
mask; two-sample Kolmogorov-Smirnov statistic and p-value, Wasserstein-1 distance.</p>
<div class="scroll"><table><tr><th class="l">condition</th><th class="l">quantity</th><th>real median [IQR]</th><th>synthetic median [IQR]</th><th>KS</th><th>p</th><th>W1</th></tr>
{% for key, m in masks.items() %}{% for q, e in m.items() %}<tr><td class="l">{{ key }}</td><td class="l">{{ q }}</td>
<td>{{ iqr(e.real) }}</td><td>{{ iqr(e.synthetic) }}</td><td>{{ num(e.ks) }}</td><td>{{ num(e.ks_p, 3) }}</td><td>{{ num(e.wasserstein) }}</td></tr>{% endfor %}{% endfor %}</table></div>
<h3>Tumour sizes</h3><img alt="tumour volume distributions" src="{{ images.wt_volume }}">
<h3>Enhancing fraction</h3><img alt="enhancing fraction distributions" src="{{ images.enhancing }}">
{% endif %}

{% if intensity %}
<h2 id="intensity">Intensities per tissue label</h2>
<p class="note">Densities of each modality's intensities in the normal-appearing brain (label 0) and in each tumour
label; Wasserstein-1 distance (intensity units of [-1, 1]) between real and synthetic.</p>
<div class="scroll"><table><tr><th class="l">condition</th>{% for mod in w1_columns %}<th>{{ mod }}</th>{% endfor %}</tr>
{% for key, row in w1_rows.items() %}<tr><td class="l">{{ key }}</td>{% for v in row %}<td>{{ num(v, 3) }}</td>{% endfor %}</tr>{% endfor %}</table></div>
{% for key, src in images.histograms.items() %}<h3>{{ key }}</h3><img alt="intensity histograms {{ key }}" src="{{ src }}">{% endfor %}
{% endif %}

{% if montages %}
<h2 id="montages">Montages</h2>
<p class="note">Real (held-out) and synthetic cases per condition: every modality in three planes through the tumour,
mask overlaid (red NCR, green ED, yellow ET).</p>
{% for key, m in montages.items() %}<h3>{{ key }}</h3>{% if m.real %}<img alt="real {{ key }}" src="{{ m.real }}">{% endif %}
{% if m.synthetic %}<img alt="synthetic {{ key }}" src="{{ m.synthetic }}">{% endif %}{% endfor %}
{% endif %}

{% if reconstruction and reconstruction.cases %}
<h2 id="reconstruction">Reconstruction of held-out cases</h2>
<p class="note">Held-out real cases projected into the generator's {{ reconstruction.space }} latent space
({{ reconstruction.steps }} optimisation steps each); similarity inside the brain and whole-tumour Dice.</p>
<div class="scroll"><table><tr><th class="l">case</th><th>SSIM</th><th>MS-SSIM</th><th>PSNR (dB)</th><th>MSE</th><th>Dice WT</th></tr>
{% for r in reconstruction.cases %}<tr><td class="l">{{ r.case_id }}</td><td>{{ num(r.ssim, 4) }}</td><td>{{ num(r.ms_ssim, 4) }}</td><td>{{ num(r.psnr, 2) }}</td><td>{{ num(r.mse, 4) }}</td><td>{{ num(r.dice_wt) }}</td></tr>{% endfor %}
<tr><th class="l">mean</th><th>{{ num(reconstruction.mean.ssim, 4) }}</th><th>{{ num(reconstruction.mean.ms_ssim, 4) }}</th><th>{{ num(reconstruction.mean.psnr, 2) }}</th><th>{{ num(reconstruction.mean.mse, 4) }}</th><th>{{ num(reconstruction.mean.dice_wt) }}</th></tr></table></div>
{% elif reconstruction %}<details id="reconstruction"><summary>Reconstruction of held-out cases: no cases reconstructed</summary></details>
{% endif %}

{% if images.curves %}
<h2 id="curves">Training curves</h2><p class="note">From {{ curves.run }}.</p>
<img alt="training curves" src="{{ images.curves }}">
{% elif curves %}<details id="curves"><summary>Training curves: none found</summary>
<p class="note">No TensorBoard events or .jsonl metrics in {{ curves.run }}.</p></details>
{% endif %}
</body></html>
"""
