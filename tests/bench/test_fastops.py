"""The fast paths compute what the plain formulas compute (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gliomagen.models.fastops import (
    _InstanceNormAffine,
    avg_pool2,
    can_write,
    fast_layout,
    instance_norm_affine,
    is_channels_last,
    pointwise,
    upsample2_linear,
)
from gliomagen.models.layers import AdaIN, EqualConv, ModulatedConv

CL = torch.channels_last_3d


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=CL)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_pointwise_equals_conv_of_concatenation(layout: str, per_sample: bool) -> None:
    torch.manual_seed(0)
    a, b = torch.randn(2, 5, 3, 4, 6, dtype=torch.float64), torch.randn(2, 3, 3, 4, 6, dtype=torch.float64)
    if layout == "channels_last":
        a = _cl(a)
    w = torch.randn(2 if per_sample else 1, 4, 8, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    ws = [w[..., :5], w[..., 5:]] if per_sample else [w[0, :, :5], w[0, :, 5:]]
    got = pointwise([a, b], ws, bias)
    cat = torch.cat([a, b], dim=1)
    ref = torch.stack([F.conv3d(cat[i : i + 1], w[i if per_sample else 0][..., None, None, None], bias)[0]
                       for i in range(2)])  # fmt: skip
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert got.is_contiguous()
    assert is_channels_last(pointwise([a], [ws[0]], channels_last_out=True))


def test_pointwise_keeps_channels_last_gradient_and_checks_shapes() -> None:
    x = _cl(torch.randn(2, 6, 4, 4, 4)).requires_grad_()
    (g,) = torch.autograd.grad(pointwise([x], [torch.randn(3, 6)]).sum(), x)
    assert is_channels_last(g)
    with pytest.raises(ValueError, match="does not fit"):
        pointwise([x], [torch.randn(3, 5)])


def test_avg_pool2_channels_last_values_and_gradients() -> None:
    x = _cl(torch.randn(2, 3, 4, 6, 8, dtype=torch.float64)).requires_grad_()
    y = avg_pool2(x)
    assert is_channels_last(y)
    torch.testing.assert_close(y, F.avg_pool3d(x, 2), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(avg_pool2, (x,))
    assert torch.autograd.gradgradcheck(avg_pool2, (x,))  # R1 differentiates through D twice
    (g,) = torch.autograd.grad(y.sum(), x)
    assert is_channels_last(g)


def test_upsample2_linear_equals_trilinear_interpolation() -> None:
    for shape in [(1, 4, 5, 6, 7), (2, 3, 1, 4, 2), (1, 2, 8, 8, 8)]:
        x = torch.randn(*shape, dtype=torch.float64)
        ref = F.interpolate(x, scale_factor=2.0, mode="trilinear", align_corners=False)
        torch.testing.assert_close(upsample2_linear(x), ref, rtol=1e-12, atol=1e-12)


def test_instance_norm_affine_matches_the_formula_with_gradients() -> None:
    torch.manual_seed(1)
    x = _cl(torch.randn(2, 3, 5, 5, 5, dtype=torch.float64) * 3 + 1).requires_grad_()
    s = (torch.rand(2, 3, 1, 1, 1, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(2, 3, 1, 1, 1, dtype=torch.float64).requires_grad_()

    def ref(x: torch.Tensor, s: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        m = x.mean((2, 3, 4), keepdim=True)
        v = x.var((2, 3, 4), keepdim=True, unbiased=False)
        return (x - m) / torch.sqrt(v + 1e-5) * s + b

    def exact(x: torch.Tensor, s: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _InstanceNormAffine.apply(x, s, b, 1e-5)  # the custom backward, in float64

    assert torch.autograd.gradcheck(exact, (x, s, b))
    g = torch.randn(2, 3, 5, 5, 5, dtype=torch.float64)
    for got, want in zip(torch.autograd.grad(exact(x, s, b), (x, s, b), g),
                         torch.autograd.grad(ref(x, s, b), (x, s, b), g), strict=True):  # fmt: skip
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the public function computes in float32, with and without autograd
    want32 = ref(x, s, b).float()
    torch.testing.assert_close(instance_norm_affine(x.float(), s.float(), b.float()), want32)
    with torch.no_grad():
        torch.testing.assert_close(instance_norm_affine(x.float(), s.float(), b.float()), want32)


def test_layers_agree_across_layouts_and_autograd_modes() -> None:
    """EqualConv (3x3 and 1x1, with lrelu), the modulated heads and AdaIN give the same values on
    contiguous and channels-last inputs, with and without autograd."""
    torch.manual_seed(2)
    x = torch.randn(2, 4, 6, 6, 6)
    w = torch.randn(2, 8)
    layers = [
        lambda t: EqualConv(4, 5, 3, activation="lrelu")(t),
        lambda t: EqualConv(4, 5, 1, activation="lrelu")(t),
        lambda t: ModulatedConv(4, 3, 1, 8, demodulate=False).forward_parts([t[:, :2], t[:, 2:]], w),
        lambda t: AdaIN(4, 8)(t, w),
    ]
    for make in layers:
        torch.manual_seed(3)
        ref = make(x)
        for inp in (_cl(x), x.clone().requires_grad_(), _cl(x).requires_grad_()):
            torch.manual_seed(3)
            torch.testing.assert_close(make(inp), ref, rtol=1e-5, atol=1e-5)
            with torch.no_grad():
                torch.manual_seed(3)
                torch.testing.assert_close(make(inp), ref, rtol=1e-5, atol=1e-5)


def test_fast_layout_and_can_write() -> None:
    x = torch.randn(1, 3, 4, 4, 4)
    assert is_channels_last(fast_layout(x)) and torch.equal(fast_layout(x), x)
    assert fast_layout(torch.randn(1, 3, 4, 4)).is_contiguous()  # 2D unchanged
    base = torch.randn(4, 4, requires_grad=True) * 1.0
    assert can_write(base) and not can_write(base[1:])
    with torch.no_grad():
        assert can_write(base[1:])
