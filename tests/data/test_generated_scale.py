"""prepare puts a case that `gliomagen generate` wrote back on the generator's own scale.

The writer maps the generator's [-1, 1] linearly onto the manifest's ``intensity_ranges``; prepare
inverts that map instead of re-measuring the case's 0.5 / 99.5 percentiles (which, for a smooth
synthetic image, sit elsewhere than for a noisy scan and would shift every intensity)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from synth_brats import SHAPE, ras_affine

from gliomagen.data.build import build_store
from gliomagen.data.layouts import find_cases
from gliomagen.data.store import open_store
from gliomagen.errors import GliomagenError

RANGES = {"t1n": [100.0, 1500.0], "t1c": [100.0, 3000.0], "t2w": [50.0, 2500.0], "t2f": [50.0, 2000.0]}


def _unit_volume(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth generator-scale volume in [-0.8, 0.2] inside an ellipsoid brain, and the brain."""
    x, y, z = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in SHAPE], indexing="ij")
    brain = ((x - 12) / 8.5) ** 2 + ((y - 14) / 10.5) ** 2 + ((z - 10) / 7.5) ** 2 <= 1.0
    u = -0.8 + 1.0 * (x - x[brain].min()) / np.ptp(x[brain]) + 0.01 * seed
    return np.clip(u, -0.8, 0.2), brain


def _generated_cohort(root: Path, ids: list[str], manifest: bool = True) -> Path:
    """Cases as `gliomagen generate` writes them (float32, 0 outside the brain), and its manifest."""
    for k, cid in enumerate(ids):
        u, brain = _unit_volume(k)
        seg = np.zeros(SHAPE, np.uint8)
        seg[10:14, 12:16, 8:12] = 2
        for m, (lo, hi) in RANGES.items():
            raw = np.where(brain, lo + (u + 1) / 2 * (hi - lo), 0).astype(np.float32)
            (root / cid).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(raw, ras_affine()), str(root / cid / f"{cid}-{m}.nii.gz"))
        nib.save(nib.Nifti1Image(seg, ras_affine()), str(root / cid / f"{cid}-seg.nii.gz"))
    if manifest:
        record = {"gliomagen_version": "0.1.0", "intensity_ranges": RANGES, "case_ids": ids}
        (root / "manifest.json").write_text(json.dumps(record))
    return root


def _brain_median(store: Path) -> list[float]:
    images = np.asarray(np.load(store / "images.npy"), np.float32)
    return [float(np.median(images[:, c][images[:, c] > -0.999])) for c in range(4)]


def test_generated_cases_carry_the_writer_map(tmp_path: Path) -> None:
    root = _generated_cohort(tmp_path / "syn", ["SYN-a-s000000", "SYN-a-s000001"])
    cases = find_cases([root])
    assert [c.scale for c in cases] == [RANGES, RANGES]
    # one case folder given on its own: the manifest one level up still counts
    assert find_cases([root / "SYN-a-s000001"])[0].scale == RANGES


@pytest.mark.parametrize(
    "manifest_text",
    [
        "{not json",
        json.dumps({"intensity_ranges": RANGES, "case_ids": ["SYN-a-s000000"]}),  # not gliomagen's
        json.dumps({"gliomagen_version": "0.1.0", "intensity_ranges": RANGES, "case_ids": ["other"]}),
        json.dumps({"gliomagen_version": "0.1.0", "intensity_ranges": {"t1n": [5, 1]}, "case_ids": ["SYN-a-s000000"]}),
    ],
)
def test_other_manifests_leave_a_case_a_scan(tmp_path: Path, manifest_text: str) -> None:
    root = _generated_cohort(tmp_path / "syn", ["SYN-a-s000000"], manifest=False)
    (root / "manifest.json").write_text(manifest_text)
    assert find_cases([root])[0].scale is None


def test_round_trip_restores_the_generator_scale(tmp_path: Path) -> None:
    ids = ["SYN-a-s000000", "SYN-a-s000001", "SYN-a-s000002"]
    with_map = _generated_cohort(tmp_path / "syn", ids)
    without = _generated_cohort(tmp_path / "plain", ids, manifest=False)
    s1 = build_store([with_map], tmp_path / "s1", size=16, progress=False, qc_cases=0)
    s2 = build_store([without], tmp_path / "s2", size=16, progress=False, qc_cases=0)
    u, brain = _unit_volume(0)
    truth = float(np.median(u[brain]))  # -0.3 up to the brain's shape
    # the recorded map gives back the generator's values; percentiles stretch them to [-1, 1]
    assert all(abs(m - truth) < 0.05 for m in _brain_median(Path(s1))), _brain_median(Path(s1))
    assert all(abs(m - truth) > 0.2 for m in _brain_median(Path(s2))), _brain_median(Path(s2))
    ds = open_store(s1)
    rec = json.loads(ds.index_rows[0]["intensity"])
    assert rec["t1c"]["scale"] == "recorded" and rec["t1c"]["p_lo"] == 100.0 and rec["t1c"]["p_hi"] == 3000.0


def test_nyul_needs_a_scan_to_learn_from(tmp_path: Path) -> None:
    root = _generated_cohort(tmp_path / "syn", ["SYN-a-s000000", "SYN-a-s000001"])
    with pytest.raises(GliomagenError, match="only generated cases"):
        build_store([root], tmp_path / "s", size=16, progress=False, qc_cases=0, normalize="nyul")
    assert not (tmp_path / "s").exists()
