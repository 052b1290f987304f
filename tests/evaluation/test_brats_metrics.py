"""The official BraTS lesion-wise metrics (the optional ``brats-evaluation`` package)."""

from __future__ import annotations

import importlib.metadata
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gliomagen.errors import GliomagenError
from gliomagen.evaluation import brats_metrics
from gliomagen.evaluation.brats_metrics import FIELDS, REGIONS, available, lesion_wise

HAVE = available()[0]
needs_package = pytest.mark.skipif(not HAVE, reason=available()[1])


def _case() -> np.ndarray:
    """A 24^3 case: one edema cube around an enhancing core."""
    gt = np.zeros((24, 24, 24), np.uint8)
    gt[4:12, 4:12, 4:12] = 2
    gt[6:10, 6:10, 6:10] = 3
    return gt


def test_absent_package_gives_none_and_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(brats_metrics.importlib.metadata, "version", missing)
    ok, why = available()
    assert not ok and "brats-evaluation is not installed" in why
    assert lesion_wise(_case(), _case(), (1.0, 1.0, 1.0)) is None


def test_bad_input_is_refused_with_or_without_the_package() -> None:
    with pytest.raises(GliomagenError, match="differ in shape"):
        lesion_wise(_case(), _case()[:-1], (1.0, 1.0, 1.0))
    with pytest.raises(GliomagenError, match="spacing"):
        lesion_wise(_case(), _case(), (1.0, 1.0))
    bad = _case()
    bad[0, 0, 0] = 7
    with pytest.raises(GliomagenError, match="labels"):
        lesion_wise(bad, _case(), (1.0, 1.0, 1.0))


@needs_package
def test_perfect_prediction() -> None:
    out = lesion_wise(_case(), _case(), (1.0, 1.0, 1.0))
    assert out is not None and set(out) == set(REGIONS)
    for region in REGIONS:
        assert set(out[region]) == set(FIELDS)
        assert out[region]["lesion_dice"] == pytest.approx(1.0)
        assert out[region]["lesion_hd95"] == pytest.approx(0.0)
        assert out[region]["f1"] == pytest.approx(1.0)
        assert (out[region]["tp"], out[region]["fp"], out[region]["fn"]) == (1.0, 0.0, 0.0)


@needs_package
def test_shift_along_a_coarse_axis_is_measured_in_its_units() -> None:
    gt = np.zeros((24, 24, 24), np.uint8)
    gt[4:10, 4:10, 4:10] = 2
    pred = np.zeros_like(gt)
    pred[5:11, 4:10, 4:10] = 2  # one voxel along axis 0, which is 2 mm thick
    out = lesion_wise(pred, gt, (2.0, 1.0, 1.0))
    assert out is not None
    assert out["WT"]["lesion_dice"] == pytest.approx(5 / 6)
    assert out["WT"]["lesion_hd95"] == pytest.approx(2.0)
    assert out["WT"]["global_dice"] == pytest.approx(5 / 6)
    assert out["WT"]["global_hd95_vox"] == pytest.approx(1.0)  # panoptica: global in voxels
    assert math.isnan(out["ET"]["lesion_dice"])  # no ET in either mask


@needs_package
def test_false_positive_lesion_counts_in_detection_not_in_lesion_dice() -> None:
    gt = _case()
    pred = gt.copy()
    pred[16:19, 16:19, 16:19] = 3
    out = lesion_wise(pred, gt, (1.0, 1.0, 1.0))
    assert out is not None
    assert out["ET"]["fp"] == 1.0 and out["ET"]["f1"] == pytest.approx(2 / 3)
    assert out["ET"]["lesion_dice"] == pytest.approx(1.0)
    assert out["ET"]["global_dice"] == pytest.approx(2 * 64 / (64 + 64 + 27))


@needs_package
def test_figures_match_the_package_parser(tmp_path: Path) -> None:
    import pandas as pd
    from brats_evaluation import evaluate_single_exam, parse_seg_results

    gt = _case()
    pred = np.roll(gt, 1, axis=1)
    pred[18:21, 2:5, 18:21] = 3
    ours = lesion_wise(pred, gt, (1.0, 1.0, 1.0))
    assert ours is not None
    with brats_metrics._quiet():
        row = evaluate_single_exam(pred, gt, "case-00001", brats_metrics._evaluator())
        summary = {"metrics": [row], "missings": []}
        (tmp_path / "m.json").write_text(json.dumps(summary, default=float))
        parse_seg_results(str(tmp_path / "m.json"), str(tmp_path / "m.csv"))
    parsed = pd.read_csv(tmp_path / "m.csv").iloc[0]
    columns = {
        "lesion_dice": "lesionwise_dsc_mean", "lesion_hd95": "lesionwise_hd95_mean",
        "f1": "all_instance_f1", "tp": "all_instance_tp", "fp": "all_instance_fp",
        "fn": "all_instance_fn", "global_dice": "global_dsc", "global_hd95_vox": "global_hd95",
    }  # fmt: skip
    assert set(columns) == set(FIELDS)
    for region, group in REGIONS.items():
        for name, column in columns.items():
            expected = float(parsed[f"{column}_{group}"])
            assert ours[region][name] == pytest.approx(expected), (region, name)
