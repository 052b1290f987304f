"""Figures of the evaluation report, drawn with matplotlib's object API and returned as PNG bytes.

Every function draws from the JSON-ready data in ``metrics.json``, so ``gliomagen report`` can
redraw a report without the volumes. The montages need the volumes: the evaluation draws them
(:func:`gliomagen.evaluation.montages.montage_png`, importable from here too).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gliomagen.evaluation.montages import montage_png as montage_png  # re-exported

REAL_COLOUR, SYN_COLOUR, FLOOR_COLOUR = "#1f77b4", "#d62728", "#7f7f7f"
DPI = 80


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # heavy: imported with the first figure drawn

    return Figure(figsize=(width, height), dpi=DPI)


def _bins(values: np.ndarray, n: int) -> np.ndarray | int:
    """``n`` equal histogram bins over the values' range (widened when every value is the same)."""
    if not len(values):
        return n
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * max(abs(lo), abs(hi), 1.0) if hi - lo < 1e-9 else 0.0
    return np.linspace(lo - pad, hi + pad, n)


def png_bytes(fig: Any) -> bytes:
    """Render a matplotlib figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor=fig.get_facecolor())
    return buf.getvalue()


def histograms_png(hist: Mapping[str, Any], title: str = "") -> bytes:
    """Intensity densities, one panel per modality: a colour per tissue label, real solid, synthetic dashed."""
    from matplotlib import colormaps  # heavy: see _figure

    mods, tissues = list(hist["real"]), list(hist["tissues"])
    x = np.asarray(hist["bin_centres"])
    colours = [colormaps["tab10"](i) for i in range(10)]
    fig = _figure(2.6 * len(mods), 2.4)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.16, top=0.8, wspace=0.25)
    if title:
        fig.suptitle(f"{title} (solid: real, dashed: synthetic)", fontsize=9)
    axes = fig.subplots(1, len(mods), squeeze=False)[0]
    for ax, mod in zip(axes, mods, strict=True):
        for t, tissue in enumerate(tissues):
            for role, style in (("real", "-"), ("synthetic", "--")):
                y = hist[role][mod][tissue]
                if y is not None:
                    ax.plot(
                        x,
                        y,
                        style,
                        color=colours[t % len(colours)],
                        lw=1.1,
                        label=tissue if role == "real" else None,
                    )
        ax.set_title(mod, fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0].legend(fontsize=6)
    return png_bytes(fig)


def distributions_png(
    by_group: Mapping[str, Mapping[str, Any]], xlabel: str, title: str = ""
) -> bytes:
    """Per condition (panels): histograms of one per-case quantity, real against synthetic."""
    keys = list(by_group)
    cols = min(4, len(keys)) or 1
    rows = math.ceil(len(keys) / cols) or 1
    fig = _figure(2.6 * cols, 2.0 * rows + 0.3)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.9, hspace=0.6, wspace=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, key in enumerate(keys):
        ax = axes[k // cols][k % cols]
        entry = by_group[key]
        values = [np.asarray(entry[role]["values"], dtype=float) for role in ("real", "synthetic")]
        both = np.concatenate(values) if any(len(v) for v in values) else np.zeros(0)
        if len(both):
            bins = _bins(both, 16)
            for v, role, colour in zip(
                values, ("real", "synthetic"), (REAL_COLOUR, SYN_COLOUR), strict=True
            ):
                if len(v):
                    ax.hist(
                        v,
                        bins=bins,
                        density=True,
                        alpha=0.45,
                        color=colour,
                        label=f"{role} (n={len(v)})",
                    )
            ax.legend(fontsize=6)
        ks = entry.get("ks")
        ax.set_title(key + (f"  KS={ks:.2f}" if ks is not None else ""), fontsize=8)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.tick_params(labelsize=6)
    for k in range(len(keys), rows * cols):
        axes[k // cols][k % cols].set_axis_off()
    return png_bytes(fig)


def _interval_bars(
    ax: Any, labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[Any]]], ylabel: str
) -> None:
    """Grouped bars with interval whiskers; each series is ``(name, colour, [{"value", "ci"} | None])``."""
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    for s, (name, colour, entries) in enumerate(series):
        vals = np.array(
            [e["value"] if e and e.get("value") is not None else np.nan for e in entries],
            dtype=float,
        )
        lo = np.array(
            [e["ci"][0] if e and e.get("ci") else v for e, v in zip(entries, vals, strict=True)],
            dtype=float,
        )
        hi = np.array(
            [e["ci"][1] if e and e.get("ci") else v for e, v in zip(entries, vals, strict=True)],
            dtype=float,
        )
        err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        ax.bar(
            x + (s - (len(series) - 1) / 2) * width,
            vals,
            width,
            yerr=err,
            color=colour,
            label=name,
            capsize=2,
        )
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)


def distances_png(distances: Mapping[str, Any]) -> bytes:
    """FD and KID per condition: synthetic against held-out, and the real-vs-real floor, with intervals."""
    keys = list(distances)
    fig = _figure(max(6.0, 1.1 * len(keys) + 2), 3.4)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.3, top=0.95, wspace=0.3)
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("fd", "kid"), strict=True):
        series = [
            (
                "synthetic vs held-out",
                SYN_COLOUR,
                [distances[k].get("synthetic", {}).get(metric) for k in keys],
            ),
            (
                "floor: train vs held-out",
                FLOOR_COLOUR,
                [distances[k].get("floor", {}).get(metric) for k in keys],
            ),
        ]
        _interval_bars(ax, keys, series, metric.upper())
    return png_bytes(fig)


def diversity_png(diversity: Mapping[str, Any]) -> bytes:
    """Mean pairwise MS-SSIM per condition, synthetic against real (higher = less diverse)."""
    keys = list(diversity)
    fig = _figure(max(4.0, 0.9 * len(keys) + 2), 3.2)
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.3, top=0.95)
    ax = fig.subplots()

    def entry(e: Mapping[str, Any]) -> dict[str, Any] | None:
        return None if e.get("mean") is None else {"value": e["mean"], "ci": e.get("ci")}

    series = [
        ("synthetic", SYN_COLOUR, [entry(diversity[k]["synthetic"]) for k in keys]),
        ("real held-out", REAL_COLOUR, [entry(diversity[k]["real"]) for k in keys]),
    ]
    _interval_bars(ax, keys, series, "mean pairwise MS-SSIM")
    return png_bytes(fig)


def memorisation_png(memo: Mapping[str, Any]) -> bytes:
    """Nearest-training-case SSIM and feature distance: held-out real against synthetic, thresholds marked."""
    fig = _figure(8.0, 3.0)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.95, wspace=0.2)
    axes = fig.subplots(1, 2)
    for ax, key, thr_key, label in (
        (axes[0], "ssim", "ssim", "SSIM to nearest training case"),
        (
            axes[1],
            "feature_distance",
            "feature_distance",
            "feature distance to nearest training case",
        ),
    ):
        real = np.asarray(memo["heldout"][key], dtype=float)
        syn = np.asarray(memo["synthetic"][key], dtype=float)
        both = np.concatenate([real, syn])
        bins = _bins(both, 20)
        ax.hist(
            real,
            bins=bins,
            alpha=0.5,
            color=REAL_COLOUR,
            label=f"held-out real (n={len(real)})",
            density=True,
        )
        ax.hist(
            syn,
            bins=bins,
            alpha=0.5,
            color=SYN_COLOUR,
            label=f"synthetic (n={len(syn)})",
            density=True,
        )
        ax.axvline(memo["threshold"][thr_key], color="black", ls="--", lw=1, label="flag threshold")
        ax.set_xlabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    return png_bytes(fig)


def curves_png(curves: Mapping[str, Any], max_panels: int = 16) -> bytes:
    """Training curves: one panel per scalar series (at most ``max_panels``)."""
    tags = list(curves.get("series", {}))[:max_panels]
    cols = min(4, len(tags)) or 1
    rows = math.ceil(len(tags) / cols) or 1
    fig = _figure(2.8 * cols, 2.0 * rows)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.1, top=0.9, hspace=0.6, wspace=0.3)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, tag in enumerate(tags):
        ax = axes[k // cols][k % cols]
        s = curves["series"][tag]
        ax.plot(s["step"], s["value"], lw=1)
        ax.set_title(tag, fontsize=8)
        ax.tick_params(labelsize=6)
    for k in range(len(tags), rows * cols):
        axes[k // cols][k % cols].set_axis_off()
    return png_bytes(fig)
