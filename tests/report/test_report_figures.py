"""The report's figures: every axes labelled, text large enough to read at 100% zoom."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from report_metrics import metrics

from gliomagen.report import figures

M = metrics()
FIGURES: dict[str, Callable[[], Any]] = {
    "distances": lambda: figures.distances_figure(M["distances"]),
    "diversity": lambda: figures.diversity_figure(M["diversity"]),
    "memorisation": lambda: figures.memorisation_figure(M["memorisation"]),
    "distributions": lambda: figures.distributions_figure(
        {k: v["wt_volume_ml"] for k, v in M["masks"].items()}, "whole-tumour volume (ml)"
    ),
    "histograms": lambda: figures.histograms_figure(M["intensity"]["all"], "all"),
    "curves": lambda: figures.curves_figure(M["curves"]),
}
MIN_EM_PX = 13.0  # em of the smallest text in PNG pixels: digits and capitals ~10 px high


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_axes_is_labelled_and_text_is_readable(name: str, tmp_path: Path) -> None:
    fig = FIGURES[name]()
    axes = [ax for ax in fig.get_axes() if ax.axison]
    assert axes
    for ax in axes:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), (name, ax.get_title())
        texts = [ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]
        for text in texts:
            # points -> pixels at the figure's dpi (the PNG is shown at its own size)
            assert text.get_fontsize() * fig.dpi / 72 >= MIN_EM_PX, (name, text.get_text())
    fig.savefig(tmp_path / f"{name}.png")  # draws: no layout error
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = fig.bbox
    for ax in axes:  # axis labels lie inside the picture (not clipped at its edge)
        for label in (ax.xaxis.label, ax.yaxis.label):
            ext = label.get_window_extent(renderer)
            assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1, (name, label.get_text())
    for ax in axes:  # measured after drawing: tick labels at least ~10 px tall in the PNG
        assert all(
            t.get_window_extent(renderer).height >= 10 for t in ax.get_yticklabels() if t.get_text()
        )
    width_px = fig.get_figwidth() * fig.dpi
    assert width_px <= 1200  # shown at its own size on the page (no shrinking)


def test_png_bytes_of_each_figure() -> None:
    png = figures.distances_png(M["distances"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
