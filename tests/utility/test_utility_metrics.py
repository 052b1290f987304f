"""BraTS regions, Dice, HD95 and the paired statistics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gliomagen.evaluation import segmentation as seg


def test_regions_are_the_brats_unions() -> None:
    assert seg.REGIONS == {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    labels = np.array([0, 1, 2, 3], np.uint8).reshape(1, 1, 4)  # [D, H, W]
    m = seg.region_masks(labels)  # [3, 1, 1, 4]
    assert m.shape == (3, 1, 1, 4)
    assert m[0].ravel().tolist() == [False, True, True, True]  # WT
    assert m[1].ravel().tolist() == [False, True, False, True]  # TC
    assert m[2].ravel().tolist() == [False, False, False, True]  # ET


def test_region_masks_batch_and_torch() -> None:
    labels = torch.tensor([[[[3, 2]]], [[[0, 1]]]])  # [2, 1, 1, 2]
    m = seg.region_masks(labels)  # [2, 3, 1, 1, 2]
    assert m.shape == (2, 3, 1, 1, 2)
    assert m[0, :, 0, 0].tolist() == [[True, True], [True, False], [True, False]]
    assert m[1, :, 0, 0].tolist() == [[False, True], [False, True], [False, False]]


def test_dice_hand_computed() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[0, 0, :3] = True  # 3 voxels
    b[0, 0, 1:] = True  # 3 voxels, overlap 2
    assert seg.dice_score(a, b) == pytest.approx(2 * 2 / 6)
    assert seg.dice_score(a, a) == pytest.approx(1.0)
    c = np.zeros_like(a)
    c[3, 3, 3] = True
    assert seg.dice_score(a, c) == 0.0


def test_dice_empty_conventions() -> None:
    e = np.zeros((3, 3, 3), bool)
    x = e.copy()
    x[1, 1, 1] = True
    assert seg.dice_score(e, e) == 1.0  # both empty: perfect
    assert seg.dice_score(x, e) == 0.0  # false positive
    assert seg.dice_score(e, x) == 0.0  # missed


def test_hd95_single_voxels_is_their_distance_in_mm() -> None:
    a = np.zeros((8, 8, 8), bool)
    b = np.zeros((8, 8, 8), bool)
    a[2, 2, 2] = True
    b[2, 2, 6] = True  # 4 voxels apart along W
    assert seg.hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(4.0)
    assert seg.hd95(a, b, (1.0, 1.0, 2.0)) == pytest.approx(8.0)  # spacing-aware
    assert seg.hd95(a, b, (3.0, 3.0, 0.5)) == pytest.approx(2.0)
    c = np.zeros_like(a)
    c[5, 6, 2] = True  # (3, 4, 0) voxels from a
    assert seg.hd95(a, c, (1.0, 1.0, 1.0)) == pytest.approx(5.0)


def test_hd95_percentile_interpolates() -> None:
    # pred = two voxels along W, gt = the first. pred->gt distances {0, 1}: 95th percentile by
    # linear interpolation = 0.95; gt->pred {0}: 0. Symmetric HD95 = max = 0.95.
    gt = np.zeros((5, 5, 5), bool)
    gt[2, 2, 2] = True
    pred = gt.copy()
    pred[2, 2, 3] = True
    assert seg.hd95(pred, gt, (1.0, 1.0, 1.0)) == pytest.approx(0.95)
    assert seg.hd95(gt, pred, (1.0, 1.0, 1.0)) == pytest.approx(0.95)  # symmetric
    assert seg.hd95(pred, gt, (1.0, 1.0, 2.0)) == pytest.approx(1.9)
    assert seg.hd95(gt, gt, (1.0, 1.0, 1.0)) == 0.0


def test_hd95_empty_conventions() -> None:
    e = np.zeros((10, 20, 30), bool)
    x = e.copy()
    x[5, 5, 5] = True
    assert seg.hd95(e, e, (1.0, 1.0, 1.0)) == 0.0
    diag = math.sqrt(10**2 + 40**2 + 30**2)  # spacing (1, 2, 1)
    assert seg.volume_diagonal_mm(e.shape, (1.0, 2.0, 1.0)) == pytest.approx(diag)
    assert seg.hd95(x, e, (1.0, 2.0, 1.0)) == pytest.approx(diag)
    assert seg.hd95(e, x, (1.0, 2.0, 1.0)) == pytest.approx(diag)
    # the BraTS figure for an empty set at 240x240x155, 1 mm
    assert seg.volume_diagonal_mm((240, 240, 155), (1, 1, 1)) == pytest.approx(373.13, abs=0.01)


def test_case_metrics_per_region() -> None:
    true = np.zeros((6, 6, 6), np.uint8)
    true[1, 1, 1] = 1  # NCR
    true[1, 1, 2] = 2  # ED
    true[1, 1, 3] = 3  # ET
    pred = np.zeros_like(true)
    pred[1, 1, 1] = 2  # NCR called ED
    pred[1, 1, 3] = 3
    m = seg.case_metrics(pred, true, (1.0, 1.0, 1.0))
    # WT: pred {(1,1,1), (1,1,3)}, gt 3 voxels -> 2*2/5
    assert m["WT"]["dice"] == pytest.approx(0.8)
    # TC: pred {(1,1,3)}, gt {(1,1,1), (1,1,3)} -> 2*1/3; gt->pred distances {2, 0}: p95 = 1.9
    assert m["TC"]["dice"] == pytest.approx(2 / 3)
    assert m["TC"]["hd95"] == pytest.approx(1.9)
    assert m["ET"] == {"dice": pytest.approx(1.0), "hd95": 0.0}
    # a case without enhancement: ET empty in both -> Dice 1, HD95 0
    m2 = seg.case_metrics(
        np.where(pred == 3, 0, pred), np.where(true == 3, 0, true), (1.0, 1.0, 1.0)
    )
    assert m2["ET"] == {"dice": 1.0, "hd95": 0.0}


def test_mean_std_and_summaries() -> None:
    assert seg.mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}
    assert seg.mean_std([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}
    table = {
        "a": {r: {"dice": 1.0, "hd95": 2.0} for r in seg.REGIONS},
        "b": {r: {"dice": 0.5, "hd95": 4.0} for r in seg.REGIONS},
    }
    assert seg.table_mean(table)["TC"] == {"dice": 0.75, "hd95": 3.0}
    s = seg.summarise_seeds(
        [
            {
                "WT": {"dice": 0.6, "hd95": 1.0},
                "TC": {"dice": 0.2, "hd95": 3.0},
                "ET": {"dice": 0.0, "hd95": 5.0},
            },
            {
                "WT": {"dice": 0.8, "hd95": 3.0},
                "TC": {"dice": 0.2, "hd95": 3.0},
                "ET": {"dice": 0.0, "hd95": 5.0},
            },
        ]
    )
    assert s["WT"]["dice_mean"] == pytest.approx(0.7)
    assert s["WT"]["dice_std"] == pytest.approx(math.sqrt(0.02))  # ddof=1
    assert s["WT"]["hd95_mean"] == pytest.approx(2.0)
    assert s["TC"]["dice_std"] == 0.0
    assert s["ET"]["n_seeds"] == 2


def test_paired_test_hand_computed() -> None:
    # 5 positive differences with distinct ranks: exact two-sided p = 2 / 2^5 = 0.0625
    r = seg.paired_test([0.1, 0.2, 0.3, 0.4, 0.5])
    assert r["p_value"] == pytest.approx(0.0625)
    assert r["mean_diff"] == pytest.approx(0.3)
    assert (r["n_pairs"], r["n_positive"], r["n_negative"]) == (5, 5, 0)
    same = seg.paired_test([0.0, 0.0, 0.0])
    assert same["p_value"] == 1.0 and same["mean_diff"] == 0.0
    assert seg.paired_test([])["p_value"] is None


def test_paired_vs_baseline_pairs_seed_and_case() -> None:
    def table(d: dict[str, float]) -> dict[str, dict[str, dict[str, float]]]:
        return {c: {r: {"dice": v, "hd95": 10 * v} for r in seg.REGIONS} for c, v in d.items()}

    base = {0: table({"x": 0.5, "y": 0.4}), 1: table({"x": 0.6, "y": 0.2})}
    arm = {0: table({"x": 0.7, "y": 0.4}), 1: table({"x": 0.5, "y": 0.5})}
    res = seg.paired_vs_baseline(arm, base)
    d = res["WT"]["dice"]  # diffs 0.2, 0.0, -0.1, 0.3
    assert d["n_pairs"] == 4
    assert d["mean_diff"] == pytest.approx(0.1)
    assert (d["n_positive"], d["n_negative"]) == (2, 1)
    assert res["ET"]["hd95"]["mean_diff"] == pytest.approx(1.0)


@pytest.mark.parametrize("name", seg.NETWORKS)
def test_networks_map_four_modalities_to_four_class_logits(name: str) -> None:
    torch.manual_seed(0)
    net = seg.build_network(name, init_filters=4)
    x = torch.randn(1, 4, 16, 16, 16)  # [N, C, D, H, W]
    assert net(x).shape == (1, 4, 16, 16, 16)
    labels = seg.predict_labels(net, x)
    assert labels.shape == (1, 16, 16, 16) and labels.dtype == np.uint8 and labels.max() <= 3


def test_check_size_rejects_sides_not_multiple_of_8() -> None:
    seg.check_size((16, 32, 24), "store")
    with pytest.raises(Exception, match="multiple of 8"):
        seg.check_size((16, 20, 16), "store")


def test_regions_to_labels_inverts_region_masks() -> None:
    labels = np.array([0, 1, 2, 3, 2, 0], np.uint8).reshape(1, 1, 6)  # [D, H, W]
    assert np.array_equal(seg.regions_to_labels(seg.region_masks(labels)), labels)
    batch = np.stack([labels, labels[..., ::-1]])  # [2, D, H, W]
    assert np.array_equal(seg.regions_to_labels(seg.region_masks(batch)), batch)
    # an ET voxel outside TC/WT is still ET (later regions override), as in BraTS' conversion
    r = np.zeros((3, 1, 1, 2), bool)
    r[2, 0, 0, 0] = True
    r[0, 0, 0, 1] = True
    assert seg.regions_to_labels(r).ravel().tolist() == [3, 2]


class _Fixed(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], *self.logits.shape[1:])


def test_predict_labels_of_a_region_network() -> None:
    logits = torch.full((1, 3, 1, 1, 4), -5.0)  # WT, TC, ET logits at 4 voxels
    logits[0, 0, 0, 0, 1:] = 5.0  # WT at voxels 1..3
    logits[0, 1, 0, 0, 2:] = 5.0  # TC at 2..3
    logits[0, 2, 0, 0, 3] = 5.0  # ET at 3
    pred = seg.predict_labels(_Fixed(logits), torch.zeros(2, 4, 1, 1, 4))
    assert pred.shape == (2, 1, 1, 4) and pred[0].ravel().tolist() == [0, 2, 1, 3]


def test_region_loss_prefers_the_right_regions() -> None:
    y = torch.tensor([0, 1, 2, 3]).reshape(1, 1, 1, 1, 4)  # [B, 1, D, H, W]
    good = torch.from_numpy(np.where(seg.region_masks(y[:, 0].numpy()), 8.0, -8.0)).float()  # [1, 3, ...]
    loss = seg._loss(3)
    assert float(loss(good, y)) < 0.01 < float(loss(-good, y))
    assert float(seg._loss(4)(torch.zeros(1, 4, 1, 1, 4), y)) > 0.5  # 4 outputs: softmax classes
