"""The self-contained HTML report (``REPORT/index.html``), rendered with jinja2 from ``metrics.json``.

Every image is embedded as a ``data:image/png;base64`` URI and the page has no external links,
scripts or styles, so the file can be mailed or archived alone. Figures are redrawn from the
metrics (:mod:`gliomagen.report.figures`); montages are read from ``REPORT/figures/``.
:func:`evaluate_report` is what ``gliomagen evaluate`` runs, :func:`rebuild` what ``gliomagen
report`` runs.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.curves import read_curves
from gliomagen.evaluation.pipeline import evaluate
from gliomagen.evaluation.report_folder import staged_report, write_files
from gliomagen.io.atomic import write_json, write_text
from gliomagen.report import figures
from gliomagen.report.template import TEMPLATE

MAX_MEMO_ROWS = 40
MIN_CASES = 10  # fewer real or synthetic cases than this: FD/KID intervals carry no information


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    v = float(v)
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 10 ** (-digits)):
        return f"{v:.{max(1, digits - 1)}e}"
    return f"{v:.{digits}f}"


def _scaled(v: Any, scale: float) -> Any:
    return None if v is None else float(v) * scale


def _ci(entry: Mapping[str, Any] | None, metric: str, digits: int = 3, scale: float = 1.0) -> str:
    """``value [lo, hi]`` of ``entry[metric]``, every number times ``scale``."""
    if not entry or metric not in entry:
        return "n/a"
    e = entry[metric]
    text = _num(_scaled(e.get("value"), scale), digits)
    if e.get("ci"):
        lo, hi = (_num(_scaled(b, scale), digits) for b in e["ci"])
        text += f" [{lo}, {hi}]"
    return text


def few_cases(distances: Mapping[str, Any] | None) -> list[str]:
    """The conditions whose FD/KID rest on fewer than :data:`MIN_CASES` cases in a set, with counts."""
    few = []
    for key, d in (distances or {}).items():
        n_real, n_syn = d.get("n_real"), d.get("n_synthetic")
        if any(n is not None and n < MIN_CASES for n in (n_real, n_syn)):
            few.append(f"{key} ({n_real} held-out real and {n_syn} synthetic cases)")
    return few


def _mean_ci(e: Mapping[str, Any]) -> str:
    text = _num(e.get("mean"), 4)
    if e.get("ci"):
        text += f" [{_num(e['ci'][0], 4)}, {_num(e['ci'][1], 4)}]"
    return text


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.1f}%"


def _rate_ci(e: Mapping[str, Any] | None) -> str:
    """``80.0% [62.1, 91.3] (16 of 20)`` of a judge rate ``{"n", "faithful", "rate", "ci"}``."""
    if not e or e.get("rate") is None:
        return "n/a (no cases)"
    text = _pct(e["rate"])
    if e.get("ci"):
        text += f" [{100 * e['ci'][0]:.1f}, {100 * e['ci'][1]:.1f}]"
    return f"{text} ({e['faithful']} of {e['n']})"


def _iqr(e: Mapping[str, Any]) -> str:
    if not e or e.get("median") is None:
        return "n/a"
    return f"{_num(e['median'])} [{_num(e['q25'])}, {_num(e['q75'])}] (n={e['n']})"


def _labels(d: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (d or {}).items() if v is not None)


def _read_montage(folder: Path, rel: str) -> str | None:
    path = folder / rel
    return data_uri(path.read_bytes()) if path.is_file() else None


def render(metrics: Mapping[str, Any], folder: Path) -> str:
    """The report HTML for a metrics dict; montages are read relative to ``folder``."""
    images: dict[str, Any] = {"histograms": {}}
    if metrics.get("distances"):
        images["distances"] = data_uri(figures.distances_png(metrics["distances"]))
    if metrics.get("diversity"):
        images["diversity"] = data_uri(figures.diversity_png(metrics["diversity"]))
    memo = metrics.get("memorisation")
    if memo:
        images["memorisation"] = data_uri(figures.memorisation_png(memo))
    masks = metrics.get("masks")
    if masks:
        images["wt_volume"] = data_uri(
            figures.distributions_png(
                {k: v["wt_volume_ml"] for k, v in masks.items()},
                "whole-tumour volume (ml)",
                ylabel=f"{figures.DENSITY} (1/ml)",
            )
        )
        images["enhancing"] = data_uri(
            figures.distributions_png(
                {k: v["enhancing_fraction"] for k, v in masks.items()},
                "enhancing fraction (ET / WT volume, unitless)",
            )
        )
    w1_columns, w1_rows = [], {}
    for key, hist in (metrics.get("intensity") or {}).items():
        images["histograms"][key] = data_uri(figures.histograms_png(hist, key))
        w1_columns = [f"{m}/{t}" for m in hist["w1"] for t in hist["tissues"]]
        w1_rows[key] = [hist["w1"][m][t] for m in hist["w1"] for t in hist["tissues"]]
    curves = metrics.get("curves")
    if curves and curves.get("series"):
        images["curves"] = data_uri(figures.curves_png(curves))
    montages = {
        key: {role: _read_montage(folder, rel) for role, rel in entry.items()}
        for key, entry in (metrics.get("montages") or {}).items()
    }
    montages = {key: m for key, m in montages.items() if any(m.values())}  # no empty headings
    memo_rows, hidden = [], 0
    if memo:
        rows = memo["cases"]
        memo_rows = [r for i, r in enumerate(rows) if r["flagged"] or i < MAX_MEMO_ROWS]
        hidden = len(rows) - len(memo_rows)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.ChainableUndefined)
    template = env.from_string(TEMPLATE)
    return template.render(
        inputs=metrics.get("inputs"), extractor=metrics.get("extractor", {}), settings=metrics.get("settings", {}),
        created=metrics.get("created"), version=metrics.get("gliomagen_version"), distances=metrics.get("distances"),
        diversity=metrics.get("diversity"), memo=memo, memo_rows=memo_rows, memo_hidden=hidden,
        fidelity=metrics.get("fidelity"), judge=metrics.get("conditioning_judge"), masks=masks,
        intensity=metrics.get("intensity"), w1_columns=w1_columns, w1_rows=w1_rows, montages=montages, reconstruction=metrics.get("reconstruction"), curves=curves, images=images,
        few_cases=few_cases(metrics.get("distances")), min_cases=MIN_CASES, kid_scale=figures.KID_SCALE,
        num=_num, ci=_ci, mean_ci=_mean_ci, pct=_pct, rate_ci=_rate_ci, iqr=_iqr, labels=_labels,
    )  # fmt: skip


def write_report(folder: Path | str, metrics: Mapping[str, Any]) -> Path:
    """Render ``folder/index.html`` (atomically) and return its path.

    Raises:
        GliomagenError: the page cannot be written (one line; the old page is left as it was).
    """
    folder = Path(folder)
    page = render(metrics, folder)
    return write_files(folder, {"index.html": lambda tmp: write_text(tmp, page)})[0]


def evaluate_report(
    real: Any, synthetic: Any, out: str | os.PathLike[str], **options: Any
) -> dict[str, Any]:
    """Evaluate a synthetic cohort and render its report: what ``gliomagen evaluate`` runs.

    :func:`gliomagen.evaluation.pipeline.evaluate` (same arguments) writes ``out/metrics.json``
    and the montages into a temporary folder; this adds ``index.html`` there before the folder
    takes ``out``'s place, so ``out`` holds a whole report or is left as it was.

    Returns:
        The metrics dict.
    """

    def page(folder: Path, metrics: dict[str, Any]) -> None:
        if options.get("log") is not None:
            options["log"]("writing index.html")
        elif options.get("progress"):
            print("writing index.html", file=sys.stderr, flush=True)
        write_text(folder / "index.html", render(metrics, folder))

    return evaluate(real, synthetic, out, finish=page, **options)


def _load_metrics(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise GliomagenError(f"{path}: cannot read metrics ({exc})") from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise GliomagenError(f"{path}: not a gliomagen metrics.json (no format_version)")
    return data


def rebuild(path: Path | str, run: Path | str | None = None) -> list[Path]:
    """Rebuild report(s) from ``metrics.json``; what ``gliomagen report PATH`` does.

    Args:
        path: a report folder (has ``metrics.json``) or a run folder. For a run folder, every
            report inside it (``RUN/*/metrics.json``) is rebuilt with the run's current curves;
            without one, a curves-only report is written to ``RUN/report``.
        run: run folder whose curves replace those in the metrics.

    Returns:
        The ``index.html`` paths written.
    """
    path = Path(path)
    if not path.is_dir():
        raise GliomagenError(f"{path}: not a report or run folder")
    run_dir: Path | None = Path(run) if run else None
    if (path / "metrics.json").is_file():
        reports = [path]
    else:
        reports = sorted(p.parent for p in path.glob("*/metrics.json"))
        run_dir = run_dir or path
    if not reports:
        assert run_dir is not None
        return [_curves_report(path, run_dir)]
    written = []
    for folder in reports:
        metrics = _load_metrics(folder / "metrics.json")
        source = run_dir or (
            Path(metrics["inputs"]["run"]) if (metrics.get("inputs") or {}).get("run") else None
        )
        if source is None or not source.is_dir():
            written.append(write_report(folder, metrics))
            continue
        metrics["curves"] = read_curves(source)
        written.append(_write_both(folder, metrics))
    return written


def _write_both(folder: Path, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics.json`` and ``index.html`` of ``folder`` together: both or neither change."""
    page = render(metrics, folder)
    write_files(
        folder,
        {"metrics.json": lambda tmp: write_json(tmp, metrics), "index.html": lambda tmp: write_text(tmp, page)},
    )  # fmt: skip
    return folder / "index.html"


def _curves_report(run: Path, run_dir: Path) -> Path:
    """A report of a run's training curves alone, written whole as ``run/report``.

    Raises:
        GliomagenError: no curves in ``run_dir``, a ``run/report`` that is not a report, or a
            failed write.
    """
    if not any(run_dir.rglob("events.out.tfevents.*")) and not any(run_dir.glob("*.jsonl")):
        raise GliomagenError(
            f"{run}: no metrics.json, reports, TensorBoard events or .jsonl metrics found"
        )
    metrics: dict[str, Any] = {"format_version": 1, "curves": read_curves(run_dir)}
    with staged_report(run / "report") as folder:
        write_json(folder / "metrics.json", metrics)
        write_text(folder / "index.html", render(metrics, folder))
    return run / "report" / "index.html"
