"""3D SSIM / MS-SSIM / PSNR / MSE: agreement with MONAI and scikit-image, brain masking, scales."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import SSIMMetric
from monai.metrics.regression import compute_ms_ssim
from skimage.metrics import structural_similarity

from gliomagen.evaluation.similarity import (
    MS_SSIM_WEIGHTS,
    brain_mask,
    ms_ssim,
    ms_ssim_scales,
    mse,
    psnr,
    ssim,
)


def _pair(seed: int, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """A structured fixture: smooth random volumes and a noisier, shifted copy, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool3d(
        torch.rand(2, 4, size, size, size, generator=g) * 2 - 1, 3, 1, 1
    )
    other = (base + 0.15 * torch.randn(base.shape, generator=g)).roll(1, dims=2).clamp(-1, 1)
    return base, other


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_agrees_with_monai_and_skimage(seed: int) -> None:
    x, y = _pair(seed)
    ours = ssim(x, y, mask=None)
    monai = SSIMMetric(spatial_dims=3, data_range=2.0, reduction="none")(x, y).flatten()
    np.testing.assert_allclose(ours.numpy(), monai.numpy(), atol=1e-5)
    for b in range(2):
        sk = np.mean(
            [
                structural_similarity(
                    x[b, c].numpy(),
                    y[b, c].numpy(),
                    data_range=2.0,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                )
                for c in range(4)
            ]
        )
        assert float(ours[b]) == pytest.approx(sk, abs=1e-4)
    assert 0.05 < float(ours.min()) < 0.95  # a non-trivial fixture


def test_ms_ssim_agrees_with_monai() -> None:
    x, y = _pair(2, size=32)
    n = ms_ssim_scales((32, 32, 32))
    weights = tuple(np.array(MS_SSIM_WEIGHTS[:n]) / sum(MS_SSIM_WEIGHTS[:n]))
    ref = compute_ms_ssim(
        x, y, spatial_dims=3, data_range=2.0, kernel_size=7, kernel_sigma=1.0, weights=weights
    ).flatten()
    np.testing.assert_allclose(ms_ssim(x, y, mask=None).numpy(), ref.numpy(), atol=1e-5)


def test_ms_ssim_scales_fit_the_volume() -> None:
    assert [ms_ssim_scales((s,) * 3) for s in (16, 32, 64, 128, 256)] == [2, 3, 4, 5, 5]
    assert ms_ssim_scales((96, 112, 96)) == 4
    with pytest.raises(ValueError, match="smaller than"):
        ms_ssim_scales((6, 32, 32))


def test_identical_volumes_score_perfectly() -> None:
    x, _ = _pair(3)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
    assert torch.allclose(ms_ssim(x, x), torch.ones(2), atol=1e-6)
    assert torch.all(mse(x, x) == 0)
    assert torch.all(psnr(x, x) > 100)


def test_psnr_and_mse_values_inside_the_brain() -> None:
    x = torch.full((1, 4, 16, 16, 16), -1.0)
    x[..., 4:12, 4:12, 4:12] = 0.5
    y = x.clone()
    y[..., 4:12, 4:12, 4:12] += 0.1  # error 0.1 on 512 brain voxels of 4096
    assert float(mse(x, y)) == pytest.approx(0.01, rel=1e-5)
    assert float(mse(x, y, mask=None)) == pytest.approx(0.01 * 512 / 4096, rel=1e-5)
    assert float(psnr(x, y)) == pytest.approx(10 * np.log10(4 / 0.01), rel=1e-5)
    assert int(brain_mask(x).sum()) == 512


def test_masking_ignores_shared_background() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.full((1, 4, 32, 32, 32), -1.0)
    y = x.clone()
    x[..., 8:24, 8:24, 8:24] = torch.rand(1, 4, 16, 16, 16, generator=g)
    y[..., 8:24, 8:24, 8:24] = torch.rand(1, 4, 16, 16, 16, generator=g)
    inside, cube = float(ssim(x, y)), float(ssim(x, y, mask=None))
    assert inside < cube - 0.15  # the cube average is inflated by the identical background
    assert float(ms_ssim(x, y)) < float(ms_ssim(x, y, mask=None))


def test_one_volume_against_many_equals_the_expanded_batch() -> None:
    x, y = _pair(5)
    one = x[:1]
    np.testing.assert_allclose(ssim(one, y).numpy(), ssim(one.expand_as(y), y).numpy(), atol=1e-6)
    np.testing.assert_allclose(
        ms_ssim(one, y).numpy(), ms_ssim(one.expand_as(y), y).numpy(), atol=1e-6
    )
    with pytest.raises(ValueError, match="one shape"):
        ssim(x, y[:, :2])
