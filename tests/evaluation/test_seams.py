"""The seam metric: it finds an artificial tile seam and passes a smooth volume and a tiled
hierarchical rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from gliomagen.evaluation.seams import (
    cohort_seams,
    near_planes,
    plane_steps,
    seam_steps,
    tile_border_planes,
)
from gliomagen.models.hierarchical import HierarchicalSynthesis, tile_corners


def _smooth(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [gaussian_filter(rng.standard_normal((32, 32, 32)), 2.0, mode="wrap") for _ in range(2)]
    )


def test_tile_border_planes() -> None:
    assert tile_border_planes([0, 12, 16], 16, 32) == [12, 16, 28]
    assert tile_border_planes([0], 32, 32) == []


def test_plane_steps_values_and_mask() -> None:
    v = np.zeros((4, 4, 4))
    v[2:] = 3.0
    assert plane_steps(v, 0).tolist() == [0.0, 3.0, 0.0]
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[:, :2] = True
    assert plane_steps(v, 0, mask).tolist() == [0.0, 3.0, 0.0]
    assert np.isnan(plane_steps(v, 1, mask)[2])  # no pair inside across plane 3 of axis 1


def test_an_artificial_seam_is_found_and_a_smooth_volume_passes() -> None:
    vol = _smooth()
    borders = [tile_border_planes(tile_corners(32, 16, 4, 2), 16, 32)] * 3
    smooth = seam_steps(vol, borders)
    assert 0.7 < smooth["ratio"] < 1.3 and smooth["n_border"] == 9 and smooth["n_other"] == 84
    # each tile's content offset by +-0.25 std, alternating across every border (as mismatched
    # tiles would be): a step of 0.5 std at every border plane
    side = np.searchsorted(borders[0], np.arange(32), side="right") % 2 * 2 - 1.0  # [32] +-1
    offset = sum(np.expand_dims(side, [a for a in range(3) if a != ax]) for ax in range(3))
    seamed = vol + 0.25 * vol.std() * offset
    res = seam_steps(seamed, borders)
    assert res["ratio"] > 1.5 and res["border"] > smooth["border"]
    assert res["other"] == pytest.approx(smooth["other"])


def test_the_tiled_hierarchical_rendering_has_no_seams() -> None:
    torch.manual_seed(0)
    net = HierarchicalSynthesis((32, 32, 32), 16, 16, w_dim=8, channels=2, max_channels=8).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("strength"):
                p.fill_(0.5)
        ws = torch.randn(1, net.num_ws, 8)
        tiled, _ = net(ws, "random", [3], tile=16)
        feats = net.low_features(ws, "random", [3])
        whole = torch.tanh(
            net.render_box(ws, feats, (0, 0, 0), 32, net.branch_seeds(1, "random", [3]))[0]
        )
    borders = [tile_border_planes(tile_corners(32, 16, 4, 2), 16, 32)] * 3
    a, b = seam_steps(tiled[0].numpy(), borders), seam_steps(whole[0].numpy(), borders)
    assert a["border"] == pytest.approx(b["border"], abs=1e-5)  # tiles add no step of their own


def test_near_planes() -> None:
    assert near_planes([16], 32, reach=2) == [14, 15, 17, 18]
    assert near_planes([1, 30], 32, reach=2) == [2, 3, 28, 29, 31]  # faces and borders excluded


def test_cohort_seams_means_over_cases_and_finds_a_seam() -> None:
    borders = [[16], [16], [16]]
    smooth = [(_smooth(s), None) for s in range(3)]
    res = cohort_seams(iter(smooth), borders)
    singles = [seam_steps(v, borders) for v, _ in smooth]
    assert res["n"] == 3 and res["passes"] in (True, False)
    assert res["border"] == pytest.approx(np.mean([s["border"] for s in singles]))
    assert res["other"] == pytest.approx(np.mean([s["other"] for s in singles]))
    assert 0.7 < res["ratio"] < 1.3 and 0.7 < res["ratio_near"] < 1.3
    step = np.zeros((2, 32, 32, 32))
    step[:, 16:] = 1.0  # a seam at plane 16 of axis 0 only
    seamed = cohort_seams([(v + step, None) for v, _ in smooth], borders)
    assert seamed["ratio"] > 1.5 and seamed["ratio_near"] > 1.5 and not seamed["passes"]
    assert seamed["fraction_border_le_other"] == 0.0
    region = np.zeros((32, 32, 32), dtype=bool)
    region[:, :, :8] = True  # the region changes which voxel pairs count, not the verdict
    assert cohort_seams([(v + step, region) for v, _ in smooth], borders)["ratio"] > 1.5
    with pytest.raises(ValueError, match="no case"):
        cohort_seams(iter([]), borders)
