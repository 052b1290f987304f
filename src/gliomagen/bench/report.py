"""Tables, ratios and target checks of a ``gliomagen bench`` results document; markdown output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gliomagen.config import preset
from gliomagen.io.atomic import write_text

START, END = "<!-- bench:start -->", "<!-- bench:end -->"

TARGETS_TEXT = {
    "origin_train_vs_naive": "origin training step at 64^3 >= 1.5x the naive implementation",
    "origin_train_conv_peak": "origin training step at 64^3 >= 60% of the measured conv3d peak",
    "generate_128_small-data": "generation at 128^3 (small-data widths) <= 1.5 s per volume",
    "generate_128_origin": "generation at 128^3 (origin widths) <= 1.5 s per volume",
}


def _find(results: list[dict[str, Any]], kind: str, **match: Any) -> dict[str, Any] | None:
    for r in results:
        if r.get("kind") == kind and "error" not in r and all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _naive_for(results: list[dict[str, Any]], kind: str, r: dict[str, Any]) -> dict[str, Any] | None:
    """The naive measurement at ``r``'s grid and widths (measured once per distinct widths)."""
    m = preset(r["preset"]).model
    for cand in results:
        if cand.get("kind") != kind or "error" in cand or cand.get("size") != r["size"]:
            continue
        c = preset(cand["preset"]).model
        if (c.g_channels, c.g_max_channels, c.d_channels, c.d_max_channels) == (
            m.g_channels, m.g_max_channels, m.d_channels, m.d_max_channels
        ) and cand.get("batch") == r.get("batch"):  # fmt: skip
            return cand
    return None


def _f(v: float | None, fmt: str = ".2f") -> str:
    return "-" if v is None else format(v, fmt)


def rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (preset, size): ours, the naive reference, the LDM and their ratios."""
    res, peaks = doc["results"], doc["peaks"]
    conv_peak = peaks["conv3d"]["flop_per_s"]
    mm_peak = peaks.get("matmul_bf16", peaks["matmul"])["flop_per_s"]
    out = []
    o = doc["options"]
    for size in o["sizes"]:
        ldm = _find(res, "ldm", size=size)
        for p in o["presets"]:
            tr = _find(res, "train", preset=p, size=size, checkpointing=None)
            ge = _find(res, "generate", preset=p, size=size)
            row: dict[str, Any] = {"preset": p, "size": size}
            if tr:
                ntr = _naive_for(res, "naive_train", tr)
                row.update(train_vol_s=tr["volumes_per_s"], train_step_s=tr["step_s"],
                           train_gflop=tr["flops_per_step"] / 1e9,
                           train_gflop_s=tr["flop_per_s"] / 1e9,
                           train_conv_peak=tr["flop_per_s"] / conv_peak,
                           train_mm_peak=tr["flop_per_s"] / mm_peak,
                           train_mem_mb=tr.get("peak_gpu_mb", tr["peak_rss_mb"]),
                           r1_step_s=tr.get("r1_step_s"))  # fmt: skip
                if ntr:
                    row.update(naive_train_vol_s=ntr["volumes_per_s"],
                               train_speedup=tr["volumes_per_s"] / ntr["volumes_per_s"],
                               naive_train_mem_mb=ntr.get("peak_gpu_mb", ntr["peak_rss_mb"]))  # fmt: skip
                ck = _find(res, "train", preset=p, size=size, checkpointing=True)
                if ck:
                    row.update(ckpt_train_vol_s=ck["volumes_per_s"],
                               ckpt_train_mem_mb=ck.get("peak_gpu_mb", ck["peak_rss_mb"]))  # fmt: skip
            if ge:
                nge = _naive_for(res, "naive_generate", ge)
                row.update(gen_s_vol=ge["s_per_volume"], gen_gflop=ge["flops_per_volume"] / 1e9,
                           gen_conv_peak=ge["flop_per_s"] / conv_peak,
                           gen_mem_mb=ge.get("peak_gpu_mb", ge["peak_rss_mb"]))  # fmt: skip
                if nge:
                    row.update(naive_gen_s_vol=nge["s_per_volume"],
                               gen_speedup=nge["s_per_volume"] / ge["s_per_volume"])  # fmt: skip
                if ldm:
                    row.update(ldm_ddim_s=ldm["ddim_s"], ldm_ddpm_s=ldm["ddpm_1000_s"],
                               ldm_ddim_ratio=ldm["ddim_s"] / ge["s_per_volume"],
                               ldm_ddpm_ratio=ldm["ddpm_1000_s"] / ge["s_per_volume"])  # fmt: skip
            out.append(row)
    return out


def targets(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's CPU targets that this run can check: ``{name: {"value", "met", "text"}}``."""
    got: dict[str, dict[str, Any]] = {}
    if doc["options"]["device"] != "cpu":
        return got
    by = {(r["preset"], r["size"]): r for r in rows(doc)}
    o64 = by.get(("origin", 64), {})
    if "train_speedup" in o64:
        got["origin_train_vs_naive"] = {"value": o64["train_speedup"], "met": o64["train_speedup"] >= 1.5}
    if "train_conv_peak" in o64:
        got["origin_train_conv_peak"] = {"value": o64["train_conv_peak"], "met": o64["train_conv_peak"] >= 0.6}
    for p in ("small-data", "origin"):
        r = by.get((p, 128), {})
        if "gen_s_vol" in r:
            got[f"generate_128_{p}"] = {"value": r["gen_s_vol"], "met": r["gen_s_vol"] <= 1.5}
    for k, v in got.items():
        v["text"] = TARGETS_TEXT[k]
    return got


def table_lines(doc: dict[str, Any], markdown: bool = False) -> list[str]:
    """The results table (plain text for the terminal, or markdown)."""
    head = ["preset", "grid", "train vol/s", "naive vol/s", "x naive", "GFLOP/step", "GFLOP/s",
            "% conv peak", "train mem MB", "gen s/vol", "naive s/vol", "x naive", "LDM DDIM-50 s",
            "LDM DDPM-1000 s*", "LDM/ours (DDIM)"]  # fmt: skip
    body = []
    for r in rows(doc):
        body.append([r["preset"], f"{r['size']}^3", _f(r.get("train_vol_s"), ".3f"),
                     _f(r.get("naive_train_vol_s"), ".3f"), _f(r.get("train_speedup")),
                     _f(r.get("train_gflop"), ".1f"), _f(r.get("train_gflop_s"), ".1f"),
                     _f(None if r.get("train_conv_peak") is None else 100 * r["train_conv_peak"], ".0f"),
                     _f(r.get("train_mem_mb"), ".0f"), _f(r.get("gen_s_vol"), ".3f"),
                     _f(r.get("naive_gen_s_vol"), ".3f"), _f(r.get("gen_speedup")),
                     _f(r.get("ldm_ddim_s"), ".1f"), _f(r.get("ldm_ddpm_s"), ".0f"),
                     _f(r.get("ldm_ddim_ratio"), ".0f")])  # fmt: skip
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return lines + ["| " + " | ".join(b) + " |" for b in body]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return [fmt.format(*head)] + [fmt.format(*b) for b in body]


def summary_lines(doc: dict[str, Any], markdown: bool = False) -> list[str]:
    """Machine, peaks, targets, memory estimate and the notes that go with the table."""
    m, peaks = doc["machine"], doc["peaks"]
    bullet = "- " if markdown else "  "
    where = m.get("gpu") or m["cpu"]
    lines = [f"Machine: {where}; {m['cpu_cores']} CPU cores ({m['cpu']}), threads: {m['threads']}, "
             f"torch {m['torch']}, {m['platform']}; load average {_f(m.get('load_average_1min'))} at "
             f"the start, {_f(m.get('load_average_1min_end'))} at the end; {doc['total_s'] / 60:.1f} min."]  # fmt: skip
    lines.append("Peaks measured in this run: " + "; ".join(
        f"{k} {v['flop_per_s'] / 1e9:.1f} GFLOP/s ({v['dtype']}"
        + (f", {v['layout']}" if "layout" in v else "") + ")" for k, v in peaks.items()))  # fmt: skip
    t = targets(doc)
    if t:
        lines.append("Targets:")
        for v in t.values():
            val = f"{100 * v['value']:.0f}%" if "peak" in v["text"] else f"{v['value']:.2f}"
            lines.append(f"{bullet}{v['text']}: {val} -> {'met' if v['met'] else 'NOT met'}")
    for r in rows(doc):
        if "ckpt_train_vol_s" in r:
            lines.append(f"{bullet}{r['preset']} {r['size']}^3 with activation checkpointing: "
                         f"{r['ckpt_train_vol_s']:.3f} vol/s, {r['ckpt_train_mem_mb']:.0f} MB "
                         f"(without: {_f(r.get('train_vol_s'), '.3f')} vol/s, {_f(r.get('train_mem_mb'), '.0f')} MB)")  # fmt: skip
    mem = next((r for r in doc["results"] if r.get("kind") == "memory" and "error" not in r), None)
    if mem:
        lines.append(f"ESTIMATED (not measured) GPU training memory, {mem['preset']}, bf16, "
                     f"from CPU activation measurements at {mem['measured_at']}^3:")  # fmt: skip
        for r in mem["rows"]:
            lines.append(f"{bullet}{r['size']}^3 batch {r['batch']}, activation checkpointing "
                         f"{'on' if r['checkpointing'] else 'off'}: ~{r['estimated_peak_gb']:.1f} GB "
                         f"(budget {r['budget_gb']:.0f} GB: {'fits' if r['fits'] else 'does NOT fit'})")  # fmt: skip
    lines.append("Notes: train = one G step + one D step through gliomagen's loss code (lazy R1 "
                 "not in the timed steps); gen = all modalities + mask, one volume at a time on the "
                 "CPU; GFLOP counted by torch.utils.flop_counter (convolutions and matrix products); "
                 "* DDPM-1000 extrapolated from timed denoising steps plus a timed decode; the LDM "
                 "makes one single-channel volume, gliomagen four modalities and a mask.")  # fmt: skip
    errors = [r for r in doc["results"] if "error" in r]
    for r in errors:
        lines.append(f"{bullet}error in {r['kind']} {r.get('preset') or ''} {r.get('size') or ''}: {r['error']}")
    return lines


def markdown_section(doc: dict[str, Any], command: str) -> str:
    """The generated part of docs/performance.md."""
    parts = [START, "", f"Generated by `{command}`.", ""]
    parts += table_lines(doc, markdown=True)
    for line in summary_lines(doc, markdown=True):  # paragraphs, except consecutive list items
        parts += [line] if line.startswith("- ") else ["", line]
    parts += ["", END]
    return "\n".join(parts) + "\n"


def write_markdown(doc: dict[str, Any], path: Path, command: str) -> Path:
    """Put the results section into ``path``: between the bench markers when the file has them,
    else as a new file. Atomic (:func:`gliomagen.io.atomic.write_text`)."""
    section = markdown_section(doc, command)
    if path.is_file() and START in (text := path.read_text()) and END in text:
        head, rest = text.split(START, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = "# gliomagen performance\n\n" + section
    return write_text(path, text)
