"""Helpers of the export tests: tiny cohorts on disk (16^3 NIfTI) in the layouts gliomagen reads."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from gliomagen import MODALITIES

SHAPE = (16, 16, 16)
AFFINE = np.array(
    [[-1.5, 0.0, 0.0, 12.0], [0.0, -1.5, 0.0, 12.0], [0.0, 0.0, 1.5, -12.0], [0.0, 0.0, 0.0, 1.0]]
)
SUFFIXES_2021 = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair"}


def labels(seed: int, et: int = 3) -> np.ndarray:
    """A nested tumour: oedema shell (2), core (1), enhancing rim value ``et`` (3 or 4)."""
    x, y, z = np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij")
    c = 7 + seed % 3
    r = np.sqrt((x - c) ** 2 + (y - 8) ** 2 + (z - 8) ** 2)
    seg = np.zeros(SHAPE, np.uint8)
    seg[r < 6] = 2
    seg[r < 4] = et
    seg[r < 2.5] = 1
    return seg


def image(seed: int, channel: int) -> np.ndarray:
    rng = np.random.default_rng(100 * seed + channel)
    return (rng.random(SHAPE, dtype=np.float32) * 100 + 10 * channel).astype(np.float32)


def save(data: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


def generate_cohort(root: Path, prefix: str, seeds: list[int]) -> Path:
    """A cohort in the layout of ``gliomagen generate`` (cases, clinical.csv, manifest.json)."""
    root.mkdir(parents=True)
    ids = [f"{prefix}-s{seed:06d}" for seed in seeds]
    for cid, seed in zip(ids, seeds, strict=True):
        case = root / cid
        case.mkdir()
        for c, m in enumerate(MODALITIES):
            save(image(seed, c), case / f"{cid}-{m}.nii.gz")
        save(labels(seed), case / f"{cid}-seg.nii.gz")
    rows = "".join(f"{cid},{seed},GLI\n" for cid, seed in zip(ids, seeds, strict=True))
    (root / "clinical.csv").write_text("case_id,seed,cohort\n" + rows)
    (root / "manifest.json").write_text(json.dumps({"case_ids": ids, "seeds": seeds}))
    return root


def brats2021_cohort(root: Path, ids: list[str], *, ext: str = ".nii.gz") -> Path:
    """Real-style BraTS 2021 cases: ``ID/ID_t1|_t1ce|_t2|_flair|_seg``, mask labels {0,1,2,4}."""
    for seed, cid in enumerate(ids):
        case = root / cid
        case.mkdir(parents=True)
        for c, m in enumerate(MODALITIES):
            save(image(seed, c), case / f"{cid}_{SUFFIXES_2021[m]}{ext}")
        save(labels(seed, et=4).astype(np.float64), case / f"{cid}_seg{ext}")
    return root
