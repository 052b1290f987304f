"""Fixtures of the utility benchmark tests: tiny stores written to the store contract.

A case is a 16^3 (or given size) brain ellipsoid with one spherical tumour: edema shell (2),
enhancing rim (3), necrotic core (1); each modality is bright in its own compartment plus noise,
so a small segmenter learns it in a few dozen steps.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gliomagen import MODALITIES


def tiny_case(seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``(image float16 [4, s, s, s] in [-1, 1], mask uint8 [s, s, s])`` of one phantom-like case."""
    rng = np.random.default_rng(seed)
    g = np.indices((size,) * 3).astype(np.float32) - (size - 1) / 2  # [3, s, s, s]
    brain = ((g / (0.45 * size)) ** 2).sum(0) <= 1.0
    c = rng.uniform(-0.15, 0.15, 3) * size
    r = np.sqrt(((g - c[:, None, None, None]) ** 2).sum(0)) / size
    r0 = rng.uniform(0.24, 0.3)
    mask = np.zeros((size,) * 3, np.uint8)
    mask[(r < r0) & brain] = 2
    mask[(r < 0.7 * r0) & brain] = 3
    mask[(r < 0.4 * r0) & brain] = 1
    bright = {"t1n": {1: -0.4}, "t1c": {3: 0.9}, "t2w": {1: 0.8, 2: 0.6}, "t2f": {2: 0.9, 3: 0.3}}
    img = np.full((4, *mask.shape), -1.0, np.float32)
    for k, mod in enumerate(MODALITIES):
        v = np.where(brain, 0.0, -1.0).astype(np.float32)
        for lab, val in bright[mod].items():
            v[mask == lab] = val
        v[brain] += rng.normal(0, 0.08, int(brain.sum())).astype(np.float32)
        img[k] = np.clip(v, -1, 1)
        img[k][~brain] = -1.0
    return img.astype(np.float16), mask


def write_store(path: Path, cases: Sequence[dict], size: int = 16, spacing: float = 2.0) -> Path:
    """Write a store (meta.json, images.npy, masks.npy, index.csv) of the given cases.

    Each case dict has ``case_id``, ``split``, ``cohort``, ``grade`` and optionally ``seed`` and
    ``has_mask`` (False writes a 255 mask).
    """
    path.mkdir(parents=True, exist_ok=True)
    imgs, masks = [], []
    for i, c in enumerate(cases):
        im, m = tiny_case(int(c.get("seed", i)), size)
        if not c.get("has_mask", True):
            m = np.full_like(m, 255)
        imgs.append(im)
        masks.append(m)
    np.save(path / "images.npy", np.stack(imgs))  # [N, 4, s, s, s] float16
    np.save(path / "masks.npy", np.stack(masks))  # [N, s, s, s] uint8
    cohorts = sorted({c["cohort"] for c in cases})
    grades = sorted({c["grade"] for c in cases})
    schema = {
        "fields": [
            {
                "name": "cohort",
                "kind": "categorical",
                "categories": cohorts,
                "mean": 0.0,
                "std": 1.0,
                "source": "id",
            },
            {
                "name": "grade",
                "kind": "categorical",
                "categories": grades,
                "mean": 0.0,
                "std": 1.0,
                "source": "folder",
            },
            {
                "name": "wt_volume_ml",
                "kind": "continuous",
                "categories": [],
                "mean": 20.0,
                "std": 5.0,
                "source": "mask",
            },
        ]
    }
    splits = {s: sum(c["split"] == s for c in cases) for s in ("train", "val", "test")}
    meta = {
        "format_version": 1,
        "size": [size] * 3,
        "modalities": list(MODALITIES),
        "schema": schema,
        "spacing_mm": [spacing] * 3,
        "canonical_orientation": "RAS",
        "template_geometry": {
            "reference_shape": [240, 240, 155],
            "reference_affine": np.eye(4).tolist(),
        },
        "preprocessing": {},
        "sources": {c["case_id"]: {} for c in cases},
        "splits": splits,
        "n_cases": len(cases),
        "gliomagen_version": "test",
    }
    (path / "meta.json").write_text(json.dumps(meta))
    with open(path / "index.csv", "w", newline="") as fh:
        w = csv.DictWriter(
            fh, ["case_id", "split", "has_mask", "cohort", "grade", "wt_volume_ml", "geometry"]
        )
        w.writeheader()
        for c, m in zip(cases, masks, strict=True):
            w.writerow(
                {
                    "case_id": c["case_id"],
                    "split": c["split"],
                    "has_mask": int(c.get("has_mask", True)),
                    "cohort": c["cohort"],
                    "grade": c["grade"],
                    "geometry": "{}",
                    "wt_volume_ml": float(((m > 0) & (m < 255)).sum()) * spacing**3 / 1000,
                }
            )
    return path


def cohort_cases(
    prefix: str, cohort: str, n: dict[str, int], seed0: int, grade: str = "HGG"
) -> list[dict]:
    """``n = {"train": 3, "val": 1, "test": 1}`` cases of a cohort with ids ``PREFIX-000..``."""
    out, k = [], 0
    for split, m in n.items():
        for _ in range(m):
            out.append(
                {
                    "case_id": f"{prefix}-{k:03d}",
                    "split": split,
                    "cohort": cohort,
                    "grade": grade,
                    "seed": seed0 + k,
                }
            )
            k += 1
    return out


@pytest.fixture
def tiny_real(tmp_path: Path) -> Path:
    """A store: SSA 4 train / 1 val / 1 test (+1 train case without a mask), GLI 6 train / 1 val."""
    cases = cohort_cases("SSA", "SSA", {"train": 4, "val": 1, "test": 1}, 100)
    cases.append(
        {
            "case_id": "SSA-nomask",
            "split": "train",
            "cohort": "SSA",
            "grade": "HGG",
            "seed": 1,
            "has_mask": False,
        }
    )
    cases += cohort_cases("GLI", "GLI", {"train": 6, "val": 1}, 200, grade="LGG")
    return write_store(tmp_path / "real", cases)


@pytest.fixture
def tiny_synthetic(tmp_path: Path) -> Path:
    """A synthetic cohort as a store: 8 cases, grades HGG/LGG alternating."""
    cases = [
        {
            "case_id": f"SYN-{k:05d}",
            "split": "train",
            "cohort": "SSA",
            "grade": "HGG" if k % 2 == 0 else "LGG",
            "seed": 300 + k,
        }
        for k in range(8)
    ]
    return write_store(tmp_path / "syn", cases)


@pytest.fixture
def stores() -> SimpleNamespace:
    """The store writers for a test's own stores: ``stores.write(path, cases)``, ``stores.cases(...)``."""
    return SimpleNamespace(write=write_store, cases=cohort_cases)
