"""The conditioning judge (gliomagen.evaluation.conditioning) on hand-built samples."""

from __future__ import annotations

import numpy as np

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
