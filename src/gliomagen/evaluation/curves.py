"""Training curves of a run folder: TensorBoard event files and JSON-lines metrics.

``RUN/**/events.out.tfevents.*`` are read with TensorBoard's ``EventAccumulator`` (every scalar
tag); ``RUN/*.jsonl`` files are read as one JSON object per line, with a ``step`` (or ``kimg`` /
``images_seen``) key and numeric values. Each series is thinned to at most 500 points (evenly
spaced, the last point kept) so ``metrics.json`` stays small.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.errors import GliomagenError

MAX_POINTS = 500
STEP_KEYS = ("step", "kimg", "images_seen", "iteration")


def _thin(steps: list[float], values: list[float]) -> dict[str, list[float]]:
    order = np.argsort(np.asarray(steps, dtype=np.float64), kind="stable")
    s = np.asarray(steps, dtype=np.float64)[order]
    v = np.asarray(values, dtype=np.float64)[order]
    keep = np.isfinite(v)
    s, v = s[keep], v[keep]
    if len(s) > MAX_POINTS:
        idx = np.unique(np.linspace(0, len(s) - 1, MAX_POINTS).round().astype(int))
        s, v = s[idx], v[idx]
    return {"step": [float(x) for x in s], "value": [float(x) for x in v]}


def _tensorboard(run: Path) -> dict[str, tuple[list[float], list[float]]]:
    # TensorBoard: a heavy import, only when a run has event files to read
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, tuple[list[float], list[float]]] = {}
    for folder in sorted({p.parent for p in run.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        try:
            acc.Reload()
        except Exception:  # a damaged or foreign events file: skip it
            continue
        for tag in acc.Tags().get("scalars", []):
            steps, values = series.setdefault(tag, ([], []))
            for ev in acc.Scalars(tag):
                steps.append(float(ev.step))
                values.append(float(ev.value))
    return series


def _jsonl(run: Path) -> dict[str, tuple[list[float], list[float]]]:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for path in sorted(run.glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict):
                    continue
                key = next((k for k in STEP_KEYS if isinstance(rec.get(k), (int, float))), None)
                if key is None:
                    continue
                for name, value in rec.items():
                    if (
                        name == key
                        or isinstance(value, bool)
                        or not isinstance(value, (int, float))
                    ):
                        continue
                    if not math.isfinite(value):
                        continue
                    steps, values = series.setdefault(f"{path.stem}/{name}", ([], []))
                    steps.append(float(rec[key]))
                    values.append(float(value))
    return series


def read_curves(run: Path) -> dict[str, Any]:
    """Scalar series of a run folder.

    Returns:
        ``{"run": path, "series": {tag: {"step": [...], "value": [...]}}}``.

    Raises:
        GliomagenError: ``run`` is not a folder.
    """
    run = Path(run)
    if not run.is_dir():
        raise GliomagenError(f"--run {run}: not a folder")
    raw = _tensorboard(run)
    raw.update(_jsonl(run))
    return {
        "run": str(run.resolve()),
        "series": {tag: _thin(*sv) for tag, sv in sorted(raw.items()) if sv[0]},
    }
