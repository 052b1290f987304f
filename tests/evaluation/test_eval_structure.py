"""Tumour-structure statistics and their per-condition distance (the ``mask`` validation metric)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from gliomagen.evaluation import tissue


def _ball(shape: tuple[int, ...], centre: tuple[int, ...], r: float) -> np.ndarray:
    grid = np.indices(shape)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return d2 <= r * r


def _hgg(size: int = 16, r: float = 4.0) -> np.ndarray:
    """Necrotic core (1) of radius r/2, enhancing rim (3) to r, edema (2) to r+1.5."""
    m = np.zeros((size,) * 3, np.uint8)
    c = (size // 2,) * 3
    m[_ball(m.shape, c, r + 1.5)] = 2
    m[_ball(m.shape, c, r)] = 3
    m[_ball(m.shape, c, r / 2)] = 1
    return m


def _lgg(size: int = 16, r: float = 4.0) -> np.ndarray:
    m = np.zeros((size,) * 3, np.uint8)
    m[_ball(m.shape, (size // 2,) * 3, r)] = 2
    return m


def test_statistics_by_hand() -> None:
    hgg, lgg = _hgg(), _lgg()
    specks = np.zeros((16, 16, 16), np.uint8)
    specks[2, 2, 2] = specks[8, 8, 8] = specks[13, 13, 13] = 2  # three 1-voxel tumours
    specks[8, 8, 9] = 3  # touching the middle one: one component of 2 voxels
    empty = np.zeros((16, 16, 16), np.uint8)
    no_mask = np.full((16, 16, 16), 255, np.uint8)
    s = tissue.structure_statistics(np.stack([hgg, lgg, specks, empty, no_mask]))
    assert set(s) == set(tissue.STRUCTURE_STATS)
    n_hgg = int((hgg > 0).sum())
    assert s["log_tumour_voxels"][0] == pytest.approx(np.log1p(n_hgg))
    assert s["enhancing_share"][0] == pytest.approx((hgg == 3).sum() / n_hgg)
    assert s["necrotic_share"][0] == pytest.approx((hgg == 1).sum() / n_hgg)
    assert s["main_component_share"][0] == 1.0
    assert s["enhancing_share"][1] == 0.0 and s["necrotic_share"][1] == 0.0
    assert s["main_component_share"][2] == pytest.approx(2 / 4)  # largest of 1 + 2 + 1 voxels
    assert s["enhancing_share"][2] == pytest.approx(1 / 4)
    # no tumour: the smallest, least structured tumour (zeros), not a missing value
    assert [s[k][3] for k in tissue.STRUCTURE_STATS] == [0.0, 0.0, 0.0, 0.0]
    assert all(np.isnan(s[k][4]) for k in tissue.STRUCTURE_STATS)  # no mask: unknown
    # tensors and 2-D slices (8-connected) work alike
    two_d = tissue.structure_statistics(torch.from_numpy(np.stack([lgg[8], specks[8]])))
    assert two_d["main_component_share"][0] == 1.0
    assert two_d["main_component_share"][1] == pytest.approx(1.0)  # (8,8) and (8,9) in one slice


def _set(masks: list[np.ndarray]) -> dict[str, np.ndarray]:
    return tissue.structure_statistics(np.stack(masks))


def test_distance_by_hand_and_its_direction() -> None:
    radii = [3.0, 3.5, 4.0, 4.5]
    real_masks = [_hgg(r=r) for r in radii] + [_lgg(r=r) for r in radii]
    real = _set(real_masks)
    groups = {"grade=HGG": np.arange(4), "grade=LGG": np.arange(4, 8)}
    # a faithful synthetic set (the real cases themselves) is at distance 0
    same = tissue.structure_distance(real, groups, real, groups)
    assert same["value"] == pytest.approx(0.0, abs=1e-12)
    assert set(same["groups"]) == {"grade=HGG", "grade=LGG"}
    assert same["groups"]["grade=LGG"]["n_real"] == 4
    # one statistic by hand: LGG tumours that vanished in half the samples
    lost = [_lgg(r=3.0), _lgg(r=4.0), np.zeros((16,) * 3, np.uint8), np.zeros((16,) * 3, np.uint8)]
    syn = _set([_hgg(r=r) for r in radii] + lost)
    d = tissue.structure_distance(real, groups, syn, groups)
    r_lgg, s_lgg = real["log_tumour_voxels"][4:], syn["log_tumour_voxels"][4:]
    spread = real["log_tumour_voxels"].std()
    assert d["groups"]["grade=LGG"]["log_tumour_voxels"] == pytest.approx(
        scipy.stats.wasserstein_distance(r_lgg, s_lgg) / spread
    )
    assert d["groups"]["grade=HGG"]["log_tumour_voxels"] == pytest.approx(0.0, abs=1e-12)
    per_stat = [
        v for g in d["groups"].values() for k, v in g.items() if k in tissue.STRUCTURE_STATS
    ]
    assert d["value"] == pytest.approx(np.mean(per_stat)) and d["value"] > 0.1
    # the wrong inner structure for the condition: HGG-like tumours asked for as LGG
    swapped = _set([_hgg(r=r) for r in radii] * 2)
    d_swap = tissue.structure_distance(real, groups, swapped, groups)
    assert d_swap["groups"]["grade=LGG"]["enhancing_share"] > 1.0
    assert d_swap["value"] > same["value"]
    # specks instead of one tumour raise the connectedness term
    specks = np.zeros((16,) * 3, np.uint8)
    specks[::4, ::4, ::4] = 2
    d_specks = tissue.structure_distance(real, groups, _set(real_masks[:4] + [specks] * 4), groups)
    assert d_specks["groups"]["grade=LGG"]["main_component_share"] > 1.0


def test_distance_skips_what_cannot_be_compared() -> None:
    real = _set([_lgg(r=3.0), _lgg(r=4.0), _hgg()])
    syn = _set([_lgg(r=3.5)])
    d = tissue.structure_distance(
        real,
        {"grade=LGG": np.array([0, 1]), "grade=HGG": np.array([2])},  # 1 real HGG: too few
        syn,
        {"grade=LGG": np.array([0]), "grade=HGG": np.array([], np.int64)},
    )
    assert set(d["groups"]) == {"grade=LGG"} and d["value"] is not None
    nothing = tissue.structure_distance(real, {"grade=LGG": np.array([0, 1])}, syn, {})
    assert nothing == {"value": None, "groups": {}}
    # a statistic constant over the real cases is measured against the spread floor
    lgg_only = _set([_lgg(r=3.0), _lgg(r=4.0)])  # enhancing share 0 in both
    const = tissue.structure_distance(
        lgg_only, {"all": np.array([0, 1])}, _set([_hgg()]), {"all": np.array([0])}
    )
    share = _set([_hgg()])["enhancing_share"][0]
    assert const["groups"]["all"]["enhancing_share"] == pytest.approx(share / tissue.MIN_SPREAD)


def _images(mask: np.ndarray, et_brightness: float = 0.8) -> np.ndarray:
    """Four channels: brain at 0, background -1, tumour tissues at fixed levels; T1Gd (channel 1)
    bright (``et_brightness``) in the enhancing region."""
    img = np.where(_ball(mask.shape, (8, 8, 8), 7.5), 0.0, -1.0)[None].repeat(4, 0)
    img[:, mask == 2] = 0.3  # edema brighter everywhere
    img[:, mask == 1] = -0.4  # necrotic core darker
    img[1][mask == 3] = et_brightness
    return img.astype(np.float32)


def test_tissue_contrast_by_hand() -> None:
    m = _hgg()
    img = _images(m)
    c = tissue.tissue_contrast(img[None], m[None], ["t1n", "t1c", "t2w", "t2f"])
    assert len(c) == 12
    assert c["contrast_t1c_et"][0] == pytest.approx(0.8)  # brain at 0
    assert c["contrast_t1n_et"][0] == pytest.approx(0.0)  # enhancing only on T1Gd
    assert c["contrast_t2f_ed"][0] == pytest.approx(0.3)
    assert c["contrast_t2w_ncr"][0] == pytest.approx(-0.4)
    lgg = _lgg()
    c2 = tissue.tissue_contrast(torch.from_numpy(_images(lgg)[None]), torch.from_numpy(lgg[None]),
                                ["a", "b", "c", "d"])  # fmt: skip
    assert np.isnan(c2["contrast_b_et"][0]) and np.isnan(c2["contrast_a_ncr"][0])  # absent tissues
    assert c2["contrast_a_ed"][0] == pytest.approx(0.3)


def test_contrast_family_weighs_as_much_as_the_mask_family() -> None:
    mods = ["t1n", "t1c", "t2w", "t2f"]
    radii = [3.0, 3.5, 4.0, 4.5]
    masks = np.stack([_hgg(r=r) for r in radii])
    imgs = np.stack([_images(m, 0.7 + 0.05 * i) for i, m in enumerate(masks)])

    def stats(images: np.ndarray) -> dict[str, np.ndarray]:
        return {**tissue.structure_statistics(masks), **tissue.tissue_contrast(images, masks, mods)}

    real, groups = stats(imgs), {"grade=HGG": np.arange(4)}
    assert tissue.structure_distance(real, groups, real, groups)["value"] == pytest.approx(0, abs=1e-12)
    dull = imgs.copy()
    dull[:, 1][masks == 3] = 0.0  # the enhancing region no brighter than the brain on T1Gd
    d = tissue.structure_distance(real, groups, stats(dull), groups)
    g = d["groups"]["grade=HGG"]
    assert g["mask"] == pytest.approx(0.0, abs=1e-12)  # same masks
    contrasts = [v for k, v in g.items() if k.startswith("contrast_")]
    assert len(contrasts) == 12 and g["contrast"] == pytest.approx(np.mean(contrasts))
    assert g["contrast_t1c_et"] > 3.0  # ~0.78 below the real cases, whose spread is ~0.06
    assert d["value"] == pytest.approx((g["mask"] + g["contrast"]) / 2)
