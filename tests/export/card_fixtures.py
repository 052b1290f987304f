"""Helpers of the model-card tests: a run folder, its store and its phantom source, on disk.

The checkpoint holds every key a trained one holds (:mod:`gliomagen.io.checkpoint`), with tiny
tensors for the networks; the card reads none of the weights but their count.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import torch

from gliomagen import MODALITIES
from gliomagen.config import preset, to_dict
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.io.checkpoint import FORMAT_VERSION, save_best, save_checkpoint

GEOMETRY = {
    "shape": [40, 44, 30],
    "affine": [[-1.0, 0, 0, 20.0], [0, -1.0, 0, 30.0], [0, 0, 1.0, -10.0], [0, 0, 0, 1]],
    "size": [16, 16, 16],
}
SCHEMA = ConditionSchema(
    [
        ConditionField("cohort", "categorical", categories=["GLI", "SSA"], source="labels-csv"),
        ConditionField("age", "continuous", mean=55.0, std=12.5, source="labels-csv"),
    ]
)
ROWS = [  # case_id, split, has_mask, cohort, age
    ("C0", "train", "1", "GLI", "40"),
    ("C1", "train", "1", "GLI", "71.5"),
    ("C2", "train", "1", "SSA", ""),
    ("C3", "train", "0", "SSA", "30"),  # no mask: training leaves it out
    ("C4", "val", "1", "SSA", "50"),
]
BEST = {"metric": "fd", "value": 1.25, "metrics": {"fd": 1.25, "kid": 0.01, "memorised": 0, "mask_groups": {}}}
RECORDS = [
    {"step": 8, "metric": "fd", "metrics": {"fd": 1.25, "kid": 0.01}, "improved": True, "stop": None},
    {"step": 10, "metric": "fd", "metrics": {"fd": 2.5, "kid": 0.02}, "improved": False,
     "stop": {"reason": "plateau", "detail": "val fd has not improved for 1 evaluations"}},
]  # fmt: skip


def checkpoint_state(step: int) -> dict[str, Any]:
    config = to_dict(preset("demo-cpu"))
    config["train"]["steps"] = 10
    config["train"]["val_every"] = 2
    config["model"]["z_dim"] = 16
    return {
        "format_version": FORMAT_VERSION, "step": step, "images_seen": 4 * step,
        "G": {"w": torch.zeros(2)}, "D": {"w": torch.zeros(2)},
        "G_ema": {"w": torch.zeros(3, 4), "b": torch.zeros(5)},
        "opt_G": {}, "opt_D": {}, "aug_p": 0.0,
        "train_state": {"ada_sign_sum": 0.0, "ada_count": 0, "nan_streak": 0, "elapsed_s": 90.0},
        "rng": {}, "config": config, "schema": SCHEMA.to_dict(),
        "store_meta": {"size": [16, 16, 16], "modalities": list(MODALITIES),
                       "spacing_mm": [2.5, 2.5, 2.5], "template_geometry": GEOMETRY},
        "size": [16, 16, 16], "n_modalities": 4, "w_avg": None,
    }  # fmt: skip


def write_store(folder: Path, sources: Path, labels_csv: Path, size: int = 16) -> Path:
    """A store folder's ``meta.json`` and ``index.csv`` (no arrays: the card reads none)."""
    folder.mkdir(parents=True)
    meta = {
        "format_version": 1, "size": [size] * 3, "modalities": list(MODALITIES),
        "template_geometry": GEOMETRY, "splits": {"train": 4, "val": 1, "test": 0},
        "n_cases": 5, "n_with_mask": 4, "gliomagen_version": "0.1.0",
        "input_fingerprint": "f" * 64, "labels_csv": str(labels_csv),
    }  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    with open(folder / "index.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case_id", "split", "has_mask", "cohort", "age", "t1n_path"])
        for cid, split, mask, cohort, age in ROWS:
            writer.writerow([cid, split, mask, cohort, age, str(sources / cid / f"{cid}-t1n.nii.gz")])
    return folder


def write_run(root: Path, *, phantoms: bool = True) -> tuple[Path, Path]:
    """``(run folder, store)``: checkpoints at steps 8 (best) and 10, log, validation records."""
    sources = root / ("phantoms" if phantoms else "cases")
    sources.mkdir(parents=True)
    (sources / "clinical.csv").write_text("case_id,cohort\n")
    if phantoms:
        (sources / "phantoms.json").write_text(json.dumps({"generator": "gliomagen phantoms"}))
    store = write_store(root / "store", sources, sources / "clinical.csv")
    run = root / "run"
    save_best({**checkpoint_state(8), "validation": BEST}, run)
    save_checkpoint(checkpoint_state(10), run)
    (run / "log.txt").write_text(
        f"2026-01-01 10:00:00 training {store}: 3 cases (1 without mask skipped), grid 16x16x16, "
        "conditions ['cohort', 'age'], preset demo-cpu, 1 worker(s) on cpu, G 0.01M / D 0.01M "
        "parameters\n2026-01-01 10:01:30 finished at step 10\n"
    )
    (run / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return run, store
