"""Augmentation: identity at p=0, the same geometry for images and mask, exact shifts, ADA direction."""

from __future__ import annotations

import pytest
import torch

from gliomagen.models.augment import AugmentPipe, ada_adjust


def _inputs(sd: int, n: int = 2, s: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    img = torch.rand(n, 4, *(s,) * sd) * 2 - 1
    lab = torch.randint(0, 4, (n, *(s,) * sd))
    mask = torch.nn.functional.one_hot(lab, 4).movedim(-1, 1).float()
    return img, mask


@pytest.mark.parametrize("sd", [2, 3])
def test_p_zero_is_identity(sd: int) -> None:
    pipe = AugmentPipe(sd)
    img, mask = _inputs(sd)
    params = pipe.sample_params(2, 0.0, img.shape[2:], torch.Generator().manual_seed(0))
    a, b = pipe.apply(img, mask, params)
    assert torch.equal(a, img) and torch.equal(b, mask)


@pytest.mark.parametrize("sd", [2, 3])
def test_geometry_moves_images_and_mask_together(sd: int) -> None:
    pipe = AugmentPipe(sd, brightness=0, contrast=0, cutout=0, rotate_deg=0, scale_std=0)
    img, mask = _inputs(sd)
    img = mask[:, :1].repeat(1, 4, *(1,) * sd) * 2 - 1  # image channel = background indicator
    params = pipe.sample_params(2, 1.0, img.shape[2:], torch.Generator().manual_seed(3))
    a, b = pipe.apply(img, mask, params)
    torch.testing.assert_close((a[:, 0] + 1) / 2, b[:, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("sd", [2, 3])
def test_integer_translation_is_exact(sd: int) -> None:
    pipe = AugmentPipe(sd)
    img, mask = _inputs(sd, n=1, s=10)
    zero = pipe.sample_params(1, 0.0, (10,) * sd, torch.Generator().manual_seed(0))
    params = dict(zero, shift=torch.tensor([[2, -1, 0][:sd]]))
    a, b = pipe.apply(img, mask, params)
    moved = (slice(None), slice(2, None), slice(None, -1))  # +2 along the first axis, -1 along the second
    source = (slice(None), slice(None, -2), slice(1, None))
    torch.testing.assert_close(a[0][moved], img[0][source], atol=1e-5, rtol=0)
    torch.testing.assert_close(b[0][moved], mask[0][source], atol=1e-5, rtol=0)
    flip = dict(zero, flip=torch.tensor([[False] * (sd - 1) + [True]]))
    a, _ = pipe.apply(img, mask, flip)
    assert torch.equal(a, img.flip(1 + sd))


@pytest.mark.parametrize("sd", [2, 3])
def test_intensity_touches_only_images_and_keeps_background(sd: int) -> None:
    pipe = AugmentPipe(sd)
    img, mask = _inputs(sd, n=1)
    zero = pipe.sample_params(1, 0.0, (8,) * sd, torch.Generator().manual_seed(0))
    params = dict(zero, contrast=torch.full((1, 4), 2.0))
    a, b = pipe.apply(torch.full_like(img, -1.0), mask, params)
    assert torch.equal(b, mask) and torch.equal(a, torch.full_like(img, -1.0))
    a, _ = pipe.apply(img, mask, params)
    torch.testing.assert_close(a, (img + 1) * 2 - 1)


@pytest.mark.parametrize("sd", [2, 3])
def test_draw_count_does_not_depend_on_p(sd: int) -> None:
    pipe = AugmentPipe(sd)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    pipe.sample_params(4, 0.1, (8,) * sd, g1)
    pipe.sample_params(4, 0.9, (8,) * sd, g2)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


def test_ada_adjust_direction() -> None:
    # D overconfident on reals (r_t above target) -> more augmentation; below -> less
    assert ada_adjust(0.2, 0.9, 1000, target=0.6, speed_images=10_000) == pytest.approx(0.3)
    assert ada_adjust(0.2, 0.1, 1000, target=0.6, speed_images=10_000) == pytest.approx(0.1)
    assert ada_adjust(0.0, -1.0, 1000, target=0.6, speed_images=10_000) == 0.0
    assert ada_adjust(0.95, 1.0, 1000, target=0.6, speed_images=10_000) == 1.0
