"""The conditioning judge (gliomagen.evaluation.conditioning) on hand-built samples."""

from __future__ import annotations

import numpy as np
import pytest

from gliomagen.evaluation import conditioning as cond


def _sample(rim: bool, core_t1c: float = -0.5) -> tuple[np.ndarray, np.ndarray]:
    ax = np.arange(32) - 16
    r = np.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
    mask = np.zeros((32, 32, 32), np.int64)
    mask[r < 6] = 2  # edema
    if rim:
        mask[r < 4] = 3  # enhancing rim
        mask[r < 2] = 1  # necrotic core
    else:
        mask[r < 3] = 1  # non-enhancing core
    img = np.full((4, 32, 32, 32), -1.0, np.float32)
    img[:, r < 14] = 0.0  # brain
    img[1][mask == 3] = 0.6  # bright on T1Gd
    img[1][mask == 1] = core_t1c
    return img, mask


def test_the_judge_on_textbook_samples() -> None:
    img, mask = _sample(rim=True)
    r = cond.judge(img, mask)
    assert r["hgg"] and not r["lgg"] and r["rim"] == 1.0
    assert r["ok_et"] and r["ok_ncr"] and r["ok_rim"] and r["bright"]
    img, mask = _sample(rim=False)
    r = cond.judge(img, mask)
    assert r["lgg"] and not r["hgg"] and not r["any_et_region"]


def test_the_judge_names_what_fails() -> None:
    img, mask = _sample(rim=True, core_t1c=0.9)  # core brighter than the rim on T1Gd
    r = cond.judge(img, mask)
    assert not r["hgg"] and not r["bright"] and r["ok_rim"]
    img, mask = _sample(rim=True)
    mask[mask == 3] = 2  # no rim: the core sits in edema
    r = cond.judge(img, mask)
    assert not r["hgg"] and not r["ok_rim"] and not r["ok_et"]
    specks = np.zeros_like(mask)
    specks[::8, ::8, ::8] = 3  # scattered specks are no tumour
    assert not cond.judge(img, specks)["tumour"]
    rates = cond.rates({"HGG": [cond.judge(*_sample(True))], "LGG": [cond.judge(*_sample(False))]})
    assert rates["faithful_HGG"] == 1.0 and rates["faithful_LGG"] == 1.0
    assert rates["HGG_bright"] == 1.0 and rates["LGG_any_et_region"] == 0.0


def test_the_thresholds_scale_with_the_grid() -> None:
    base = cond.JudgeThresholds()
    assert cond.JudgeThresholds.for_grid(32) == base  # the defaults are for 32^3
    assert cond.JudgeThresholds.for_grid((32, 32, 32)) == base
    big = cond.JudgeThresholds.for_grid(64)  # 8x the voxels
    assert (big.min_et, big.min_ncr) == (8 * base.min_et, 8 * base.min_ncr)
    assert big.min_tumour_frac == base.min_tumour_frac and big.min_rim == base.min_rim
    assert cond.JudgeThresholds.for_grid((64, 32, 32)).min_et == 2 * base.min_et
    small = cond.JudgeThresholds.for_grid(8)  # 1/64 of the voxels: never below one voxel
    assert (small.min_et, small.min_ncr) == (1, 1)
    with pytest.raises(ValueError, match="grid size"):
        cond.JudgeThresholds.for_grid((32, 32))
    # the same textbook HGG at 64^3 passes the scaled thresholds; a 4-voxel rim would not
    img, mask = (_upsample(x) for x in _sample(rim=True))
    r = cond.judge(img, mask, big)
    assert r["hgg"] and r["n_et"] >= big.min_et
    tiny = np.zeros((64, 64, 64), np.int64)
    tiny[30:34, 30:34, 30:34] = 2
    tiny[31:33, 31:33, 31] = 3  # 4 enhancing voxels: an enhancing region at 32^3, a speck at 64^3
    assert cond.judge(img, tiny)["any_et_region"]
    assert not cond.judge(img, tiny, big)["any_et_region"]


def _upsample(x: np.ndarray) -> np.ndarray:
    """Each voxel of the last three axes as a 2x2x2 block (a 32^3 sample on a 64^3 grid)."""
    return x.repeat(2, -1).repeat(2, -2).repeat(2, -3)
