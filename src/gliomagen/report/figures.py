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
DPI = 100
# Font sizes (points). At DPI 100 a 10 pt tick label is ~14 px per em (~10 px capital height) in
# the PNG, which the page shows at its own size (figures are at most ~1200 px wide).
TICK_PT, LABEL_PT, TITLE_PT, LEGEND_PT = 10, 11, 12, 9
DENSITY = "probability density"
KID_SCALE = 1000.0  # KID is shown times 1000 (figure and table)


def _figure(width: float, height: float) -> Any:
    """A figure of ``width`` x ``height`` inches whose labels are laid out to fit (constrained layout)."""
    # heavy: matplotlib is imported with the first figure drawn
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    layout = ConstrainedLayoutEngine(w_pad=0.06, h_pad=0.06, wspace=0.04, hspace=0.06)
    return Figure(figsize=(width, height), dpi=DPI, layout=layout)


def _style(ax: Any, xlabel: str, ylabel: str, title: str | None = None) -> None:
    """Label both axes of ``ax`` (name and unit) and set the report's font sizes."""
    ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax.set_ylabel(ylabel, fontsize=LABEL_PT)
    ax.tick_params(labelsize=TICK_PT)
    if title is not None:
        ax.set_title(title, fontsize=TITLE_PT)


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


def histograms_figure(hist: Mapping[str, Any], title: str = "") -> Any:
    """Intensity densities, one panel per modality: a colour per tissue label, real solid, synthetic dashed."""
    from matplotlib import colormaps  # heavy: see _figure

    mods, tissues = list(hist["real"]), list(hist["tissues"])
    x = np.asarray(hist["bin_centres"])
    colours = [colormaps["tab10"](i) for i in range(10)]
    fig = _figure(min(12.0, 3.2 * len(mods)), 3.2)
    if title:
        fig.suptitle(f"{title} (solid: real, dashed: synthetic)", fontsize=TITLE_PT)
    axes = fig.subplots(1, len(mods), squeeze=False)[0]
    for ax, mod in zip(axes, mods, strict=True):
        for t, tissue in enumerate(tissues):
            for role, style in (("real", "-"), ("synthetic", "--")):
                y = hist[role][mod][tissue]
                if y is not None:
                    colour = colours[t % len(colours)]
                    label = tissue if role == "real" else None
                    ax.plot(x, y, style, color=colour, lw=1.2, label=label)
        _style(ax, "intensity (scaled to [-1, 1])", "fraction of voxels per bin", mod)
    axes[0].legend(fontsize=LEGEND_PT)
    return fig


def histograms_png(hist: Mapping[str, Any], title: str = "") -> bytes:
    """PNG of :func:`histograms_figure`."""
    return png_bytes(histograms_figure(hist, title))


def distributions_figure(
    by_group: Mapping[str, Mapping[str, Any]], xlabel: str, title: str = "", ylabel: str = DENSITY
) -> Any:
    """Per condition (panels): histograms of one per-case quantity, real against synthetic."""
    keys = list(by_group)
    cols = min(4, len(keys)) or 1
    rows = math.ceil(len(keys) / cols) or 1
    fig = _figure(3.0 * cols, 2.7 * rows + 0.3)
    if title:
        fig.suptitle(title, fontsize=TITLE_PT)
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
                        v, bins=bins, density=True, alpha=0.45, color=colour,
                        label=f"{role} (n={len(v)})",
                    )  # fmt: skip
            ax.legend(fontsize=LEGEND_PT)
        ks = entry.get("ks")
        _style(ax, xlabel, ylabel, key + (f"  KS={ks:.2f}" if ks is not None else ""))
    for k in range(len(keys), rows * cols):
        axes[k // cols][k % cols].set_axis_off()
    return fig


def distributions_png(
    by_group: Mapping[str, Mapping[str, Any]], xlabel: str, title: str = "", ylabel: str = DENSITY
) -> bytes:
    """PNG of :func:`distributions_figure`."""
    return png_bytes(distributions_figure(by_group, xlabel, title, ylabel))


def _bounds(entries: Sequence[Any], scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values and interval bounds of ``[{"value", "ci"} | None]`` times ``scale`` (NaN when absent)."""
    vals = np.array(
        [e["value"] if e and e.get("value") is not None else np.nan for e in entries], dtype=float
    )
    lo = np.array(
        [e["ci"][0] if e and e.get("ci") else v for e, v in zip(entries, vals, strict=True)],
        dtype=float,
    )
    hi = np.array(
        [e["ci"][1] if e and e.get("ci") else v for e, v in zip(entries, vals, strict=True)],
        dtype=float,
    )
    return vals * scale, lo * scale, hi * scale


def _interval_bars(
    ax: Any,
    labels: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[Any]]],
    ylabel: str,
    scale: float = 1.0,
) -> None:
    """Grouped bars with interval whiskers; each series is ``(name, colour, [{"value", "ci"} | None])``."""
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(series))
    for s, (name, colour, entries) in enumerate(series):
        vals, lo, hi = _bounds(entries, scale)
        err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        offset = (s - (len(series) - 1) / 2) * width
        ax.bar(x + offset, vals, width, yerr=err, color=colour, label=name, capsize=2)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    _style(ax, "condition", ylabel)
    ax.legend(fontsize=LEGEND_PT)


def distances_figure(distances: Mapping[str, Any]) -> Any:
    """FD and KID (times 1000) per condition: synthetic against held-out, and the floor, with intervals."""
    keys = list(distances)
    fig = _figure(min(12.0, max(8.0, 1.2 * len(keys) + 3)), 4.2)
    axes = fig.subplots(1, 2)
    for ax, metric, scale, ylabel in (
        (axes[0], "fd", 1.0, "FD (squared feature distance)"),
        (axes[1], "kid", KID_SCALE, "KID x 1000 (squared feature distance)"),
    ):
        series = [
            ("synthetic vs held-out", SYN_COLOUR,
             [distances[k].get("synthetic", {}).get(metric) for k in keys]),
            ("floor: train vs held-out", FLOOR_COLOUR,
             [distances[k].get("floor", {}).get(metric) for k in keys]),
        ]  # fmt: skip
        _interval_bars(ax, keys, series, ylabel, scale)
    return fig


def distances_png(distances: Mapping[str, Any]) -> bytes:
    """PNG of :func:`distances_figure`."""
    return png_bytes(distances_figure(distances))


def diversity_figure(diversity: Mapping[str, Any]) -> Any:
    """Mean pairwise MS-SSIM per condition, synthetic against real (higher = less diverse)."""
    keys = list(diversity)
    fig = _figure(min(12.0, max(5.0, 1.0 * len(keys) + 3)), 4.0)
    ax = fig.subplots()

    def entry(e: Mapping[str, Any]) -> dict[str, Any] | None:
        return None if e.get("mean") is None else {"value": e["mean"], "ci": e.get("ci")}

    series = [
        ("synthetic", SYN_COLOUR, [entry(diversity[k]["synthetic"]) for k in keys]),
        ("real held-out", REAL_COLOUR, [entry(diversity[k]["real"]) for k in keys]),
    ]
    _interval_bars(ax, keys, series, "mean pairwise MS-SSIM (unitless)")
    return fig


def diversity_png(diversity: Mapping[str, Any]) -> bytes:
    """PNG of :func:`diversity_figure`."""
    return png_bytes(diversity_figure(diversity))


def memorisation_figure(memo: Mapping[str, Any]) -> Any:
    """Nearest-training-case SSIM and feature distance: held-out real against synthetic, thresholds marked."""
    fig = _figure(11.0, 3.8)
    axes = fig.subplots(1, 2)
    for ax, key, label in (
        (axes[0], "ssim", "SSIM to nearest training case (unitless)"),
        (axes[1], "feature_distance", "feature distance to nearest training case (SD units)"),
    ):
        real = np.asarray(memo["heldout"][key], dtype=float)
        syn = np.asarray(memo["synthetic"][key], dtype=float)
        bins = _bins(np.concatenate([real, syn]), 20)
        for v, name, colour in (
            (real, "held-out real", REAL_COLOUR),
            (syn, "synthetic", SYN_COLOUR),
        ):
            ax.hist(
                v, bins=bins, alpha=0.5, color=colour, label=f"{name} (n={len(v)})", density=True
            )
        ax.axvline(memo["threshold"][key], color="black", ls="--", lw=1, label="flag threshold")
        _style(ax, label, DENSITY)
        ax.legend(fontsize=LEGEND_PT)
    return fig


def memorisation_png(memo: Mapping[str, Any]) -> bytes:
    """PNG of :func:`memorisation_figure`."""
    return png_bytes(memorisation_figure(memo))


def curves_figure(curves: Mapping[str, Any], max_panels: int = 16) -> Any:
    """Training curves: one panel per scalar series (at most ``max_panels``)."""
    tags = list(curves.get("series", {}))[:max_panels]
    cols = min(4, len(tags)) or 1
    rows = math.ceil(len(tags) / cols) or 1
    fig = _figure(3.0 * cols, 2.7 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for k, tag in enumerate(tags):
        ax = axes[k // cols][k % cols]
        s = curves["series"][tag]
        ax.plot(s["step"], s["value"], lw=1.2)
        _style(ax, "training step", "value (as logged)", tag)
    for k in range(len(tags), rows * cols):
        axes[k // cols][k % cols].set_axis_off()
    return fig


def curves_png(curves: Mapping[str, Any], max_panels: int = 16) -> bytes:
    """PNG of :func:`curves_figure`."""
    return png_bytes(curves_figure(curves, max_panels))
