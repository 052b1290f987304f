"""Layers: equalised lr, modulated conv (vs explicit per-sample conv), AdaIN, noise, resampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gliomagen.models.layers import (
    AdaIN,
    EqualConv,
    EqualLinear,
    ModulatedConv,
    downsample,
    modulated_conv,
    upsample,
)
from gliomagen.models.noise import NoiseInjection


def _conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (F.conv3d if w.ndim == 5 else F.conv2d)(x, w, padding=w.shape[-1] // 2)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_equals_explicit_per_sample_conv(
    spatial_dims: int, fused: bool, demodulate: bool
) -> None:
    torch.manual_seed(0)
    n, i, o, s = 3, 5, 4, 6
    x = torch.randn(n, i, *(s,) * spatial_dims, dtype=torch.float64)
    weight = torch.randn(o, i, *(3,) * spatial_dims, dtype=torch.float64)
    styles = torch.rand(n, i, dtype=torch.float64) + 0.5
    got = modulated_conv(x, weight, styles, demodulate=demodulate, fused=fused)
    for k in range(n):  # StyleGAN2 eq. 1-3, one sample at a time
        wk = weight * styles[k].reshape(1, i, *(1,) * spatial_dims)
        if demodulate:
            wk = wk / (wk.square().sum(dim=tuple(range(1, wk.ndim)), keepdim=True) + 1e-8).sqrt()
        ref = _conv(x[k : k + 1], wk)
        torch.testing.assert_close(got[k : k + 1], ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_modulated_conv_module_fused_and_unfused_agree(spatial_dims: int) -> None:
    torch.manual_seed(1)
    sd = spatial_dims
    a = ModulatedConv(4, 6, 3, w_dim=8, spatial_dims=sd, fused=True)
    b = ModulatedConv(4, 6, 3, w_dim=8, spatial_dims=sd, fused=False)
    b.load_state_dict(a.state_dict())
    x, w = torch.randn(2, 4, *(5,) * sd), torch.randn(2, 8)
    torch.testing.assert_close(a(x, w), b(x, w), rtol=1e-5, atol=1e-5)
    # demodulated output has unit-variance filters: for unit-variance white input, output var ~ 1
    x = torch.randn(8, 4, *(12 if sd == 3 else 40,) * sd)
    with torch.no_grad():
        y = a(x, torch.randn(8, 8)) - a.bias.reshape(1, -1, *(1,) * sd)
    inner = y[(slice(None), slice(None), *(slice(1, -1),) * sd)]
    assert 0.8 < float(inner.var()) < 1.2


def test_equal_linear_and_conv_use_runtime_gain() -> None:
    torch.manual_seed(0)
    lin = EqualLinear(16, 3, bias_init=0.5, lr_mul=0.1)
    x = torch.randn(4, 16)
    expected = x @ (lin.weight * 0.1 / 4.0).t() + lin.bias * 0.1
    torch.testing.assert_close(lin(x), expected)
    torch.testing.assert_close(lin.bias * lin.bias_gain, torch.full((3,), 0.5))
    for sd in (2, 3):
        conv = EqualConv(2, 3, 3, spatial_dims=sd)
        x2 = torch.randn(1, 2, *(5,) * sd)
        torch.testing.assert_close(  # fan-in 2 x 3^sd
            conv(x2), _conv(x2, conv.weight / math.sqrt(2 * 3**sd)) + conv.bias.reshape(1, -1, *(1,) * sd)
        )
        with pytest.raises(ValueError, match="EqualConv expects"):
            conv(torch.randn(1, 3, *(5,) * sd))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_adain_sets_channel_statistics_from_style(spatial_dims: int) -> None:
    torch.manual_seed(0)
    layer = AdaIN(3, w_dim=4, spatial_dims=spatial_dims)
    x = torch.randn(2, 3, *(8,) * spatial_dims) * 5 + 2
    w = torch.randn(2, 4)
    y = layer(x, w)
    scale, shift = layer.affine(w).chunk(2, dim=1)
    dims = tuple(range(2, y.ndim))
    torch.testing.assert_close(y.mean(dim=dims), shift, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        y.std(dim=dims, unbiased=False), (1 + scale).abs(), atol=1e-3, rtol=1e-3
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_noise_injection_modes(spatial_dims: int) -> None:
    layer = NoiseInjection(2, (4,) * spatial_dims, seed=3)
    x = torch.zeros(3, 2, *(4,) * spatial_dims)
    assert torch.equal(layer(x, "random"), x)  # strength starts at 0
    with torch.no_grad():
        layer.strength.copy_(torch.tensor([1.0, 2.0]))
    assert torch.equal(layer(x, "none"), x)
    c1, c2 = layer(x, "const"), layer(x, "const")
    assert torch.equal(c1, c2) and torch.equal(c1[0], c1[2])
    torch.testing.assert_close(c1[:, 1], 2 * c1[:, 0])
    # per-sample generators: a sample's noise does not depend on its batch
    g = [torch.Generator().manual_seed(s) for s in (10, 11, 12)]
    full = layer(x, "random", g)
    alone = layer(x[1:2], "random", [torch.Generator().manual_seed(11)])
    torch.testing.assert_close(full[1:2], alone)
    assert not torch.allclose(full[0], full[1])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_resampling_values(spatial_dims: int) -> None:
    x = torch.arange(2.0**spatial_dims).reshape(1, 1, *(2,) * spatial_dims)
    assert downsample(x).item() == pytest.approx(x.mean().item())
    const = torch.full((1, 2, *(3,) * spatial_dims), 0.7)
    up = upsample(const)
    assert up.shape[2:] == (6,) * spatial_dims
    torch.testing.assert_close(up, torch.full_like(up, 0.7))
