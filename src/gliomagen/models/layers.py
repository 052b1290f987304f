"""Building blocks of the StyleGAN networks, for 2D and 3D alike.

Every layer takes ``spatial_dims`` (2 or 3) so the same code serves volumes and slices. Weights use
the *equalised learning rate* of Karras et al. (2018): parameters are stored at unit variance and
scaled by ``1/sqrt(fan_in)`` at run time, which keeps Adam's effective step equal across layers.

Speed (measured on a 2-core CPU, see docs/performance.md): 3D tensors run channels-last on the CPU
(:func:`fast_layout`; oneDNN's 3D convolutions and trilinear upsampling are 1.5-3x faster so); the
sqrt(2) gain of the leaky ReLU is folded into the preceding convolution's weights (``gain``); noise,
activation and the heads' upsampled sums are applied in place on freshly made tensors (a new 128^3
tensor costs more in page faults than the arithmetic on it); 1x1 heads are batched matrix products
that read channel groups without concatenating them (:func:`pointwise`); AdaIN is one affine pass.
All of it computes the same function as the plain formulas (up to float rounding).

References:
    Karras et al., "A Style-Based Generator Architecture for GANs" (StyleGAN, AdaIN), CVPR 2019.
    Karras et al., "Analyzing and Improving the Image Quality of StyleGAN" (StyleGAN2, modulated
    convolution with weight demodulation), CVPR 2020.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gliomagen.models.fastops import (
    avg_pool2,
    can_write,
    instance_norm_affine,
    is_channels_last,
    pointwise,
    upsample2_linear,
)

LRELU_GAIN = math.sqrt(2.0)


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` after checking that it is 2 or 3."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    return spatial_dims


def conv_nd(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d`` or ``F.conv3d``, chosen from the weight's rank."""
    fn = F.conv3d if weight.ndim == 5 else F.conv2d
    return fn(x, weight, bias, padding=padding, groups=groups)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) scaled by sqrt(2) to keep unit variance."""
    return F.leaky_relu(x, 0.2) * LRELU_GAIN


def upsample(x: torch.Tensor) -> torch.Tensor:
    """Double every spatial side with (bi/tri)linear interpolation. ``[N, C, *S] -> [N, C, *2S]``.

    Without autograd, contiguous CPU volumes take the per-axis form of the same interpolation
    (:func:`gliomagen.models.fastops.upsample2_linear`, faster there).
    """
    if (
        x.ndim == 5
        and x.device.type == "cpu"
        and x.is_contiguous()
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
    ):
        return upsample2_linear(x)
    mode = "trilinear" if x.ndim == 5 else "bilinear"
    return F.interpolate(x, scale_factor=2.0, mode=mode, align_corners=False)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve every spatial side by 2x average pooling. ``[N, C, *S] -> [N, C, *S/2]``
    (channels-last in, channels-last out: :func:`gliomagen.models.fastops.avg_pool2`)."""
    return avg_pool2(x)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit mean square along ``dim`` (pixel norm)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate.

    Args:
        in_features: input width.
        out_features: output width.
        bias_init: initial bias value.
        lr_mul: learning-rate multiplier (StyleGAN's mapping network uses 0.01).
        activation: ``"lrelu"`` or ``None``.
        equalized: scale the weight by ``1/sqrt(fan_in)`` at run time (turn off under spectral norm).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
        equalized: bool = True,
    ) -> None:
        super().__init__()
        init_std = (1.0 / lr_mul) if equalized else 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * init_std)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features) if equalized else 1.0
        self.bias_gain = lr_mul
        self.activation = activation
        self.in_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in] -> [N, out]``."""
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"EqualLinear expects [N, {self.in_features}], got {list(x.shape)}")
        y = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(y) if self.activation == "lrelu" else y


class EqualConv(nn.Module):
    """Convolution (2D or 3D, stride 1, 'same' padding) with equalised learning rate.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel side.
        spatial_dims: 2 or 3.
        bias: learn a bias.
        activation: ``"lrelu"`` or ``None``.
        equalized: scale the weight by ``1/sqrt(fan_in)`` at run time (turn off under spectral norm).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        spatial_dims: int = 3,
        bias: bool = True,
        activation: str | None = None,
        equalized: bool = True,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        shape = (out_channels, in_channels) + (kernel_size,) * spatial_dims
        fan_in = in_channels * kernel_size**spatial_dims
        init_std = 1.0 if equalized else 1.0 / math.sqrt(fan_in)
        self.weight = nn.Parameter(torch.randn(shape) * init_std)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(fan_in) if equalized else 1.0
        self.padding = kernel_size // 2
        self.activation = activation
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels

    def _scaled(self, gain: float) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """Weight and bias with the output gain folded in (lrelu's sqrt(2) included)."""
        g = gain * (LRELU_GAIN if self.activation == "lrelu" else 1.0)
        w = self.weight * (self.weight_gain * g)
        b = None if self.bias is None else (self.bias * g if g != 1.0 else self.bias)
        return w, b, g

    def _activate(self, y: torch.Tensor) -> torch.Tensor:
        # lrelu(g z) = g lrelu(z) for g > 0: the gain is already in the weights; the conv output
        # is a fresh tensor no backward needs, so the activation runs in place
        if self.activation != "lrelu":
            return y
        return F.leaky_relu_(y, 0.2) if can_write(y) else F.leaky_relu(y, 0.2)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``[N, in, *S] -> [N, out, *S]``; ``gain`` (> 0) scales the output, folded into the weights."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"EqualConv expects [N, {self.in_channels}, {self.spatial_dims} spatial dims], got {list(x.shape)}"
            )
        w, b, _ = self._scaled(gain)
        if self.padding == 0 and is_channels_last(x):
            # 1x1 on the CPU layout: a batched product (oneDNN is skipped for single-threaded
            # 1x1 convs, and the fallback returns contiguous tensors), channels-last out
            y = pointwise([x], [w.reshape(w.shape[0], -1)], b, channels_last_out=True)
        else:
            y = conv_nd(x, w.to(x.dtype), None if b is None else b.to(x.dtype), padding=self.padding)
        return self._activate(y)

    def forward_parts(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """This conv applied to ``torch.cat(parts, 1)``; a 1x1 conv never builds the concatenation
        and returns a contiguous tensor (the heads' few channels)."""
        if sum(p.shape[1] for p in parts) != self.in_channels:
            raise ValueError(
                f"EqualConv expects {self.in_channels} channels in all, got {[list(p.shape) for p in parts]}"
            )
        if self.padding != 0:
            return self.forward(parts[0] if len(parts) == 1 else torch.cat(list(parts), dim=1))
        w, b, _ = self._scaled(1.0)
        w2 = w.reshape(w.shape[0], self.in_channels)
        y = pointwise(parts, list(w2.split([p.shape[1] for p in parts], dim=1)), b)
        return self._activate(y)


def _modulate_activations(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool,
    eps: float,
    b: torch.Tensor | None,
    gain: float,
) -> torch.Tensor:
    """:func:`modulated_conv` as scaled activations around one shared convolution (the unfused
    form): ``x * styles``, the convolution, then the demodulation and ``gain`` per output channel,
    plus the (already gain-scaled) bias ``b``."""
    n, in_ch = x.shape[:2]
    out_ch = weight.shape[0]
    view = (1,) * (weight.ndim - 2)
    y = x * styles.reshape(n, in_ch, *view).to(x.dtype)
    y = conv_nd(y, weight.to(x.dtype), padding=weight.shape[-1] // 2)
    if demodulate:
        wsq = weight.square().sum(dim=tuple(range(2, weight.ndim)))  # [O, I]
        dcoef = (styles.square() @ wsq.t() + eps).rsqrt()  # [N, O]
        scale = dcoef * gain if gain != 1.0 else dcoef
        scale = scale.reshape(n, out_ch, *view).to(y.dtype)
        if b is None:
            return y * scale
        return torch.addcmul(b.to(y.dtype).reshape(1, out_ch, *view), y, scale)
    if gain != 1.0:
        y = y * gain
    return y if b is None else y + b.to(y.dtype).reshape(1, out_ch, *view)


def modulated_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    fused: bool = True,
    eps: float = 1e-8,
    bias: torch.Tensor | None = None,
    gain: float = 1.0,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution (stride 1, 'same' padding).

    Each sample ``n`` is convolved with ``weight * styles[n]`` (scaled per input channel) and, with
    ``demodulate``, each output filter is rescaled to unit L2 norm.

    Args:
        x: ``[N, I, *S]`` input.
        weight: ``[O, I, *K]`` shared weight (already gain-scaled).
        styles: ``[N, I]`` per-sample input-channel scales.
        demodulate: apply weight demodulation.
        fused: compute with one grouped convolution (``groups=N``); otherwise scale activations
            before and after one shared convolution (same result, often faster on CPU). A
            channels-last batch (the CPU layout, :func:`fast_layout`) always takes the second
            form: a grouped convolution would need a copy of it. 1x1 kernels without
            demodulation are batched matrix products (:func:`pointwise`) either way.
        eps: numerical floor of the demodulation.
        bias: ``[O]`` added to the output (inside the convolution where it can be).
        gain: scales the output, bias included (folded into the weights; e.g. lrelu's sqrt(2)).

    Returns:
        ``[N, O, *S]``: ``gain * (conv + bias)``.
    """
    n, in_ch = x.shape[:2]
    out_ch = weight.shape[0]
    spatial = weight.ndim - 2
    if styles.shape != (n, in_ch):
        raise ValueError(f"styles must be [{n}, {in_ch}], got {list(styles.shape)}")
    pad = weight.shape[-1] // 2
    view = (1,) * spatial
    b = None if bias is None else (bias * gain if gain != 1.0 else bias)
    if pad == 0 and not demodulate:
        w = weight.reshape(1, out_ch, in_ch) * styles.reshape(n, 1, in_ch)  # [N, O, I]
        return pointwise([x], [w * gain if gain != 1.0 else w], b)
    if not fused or (n > 1 and is_channels_last(x)):
        return _modulate_activations(x, weight, styles, demodulate, eps, b, gain)
    w = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, *view)  # [N, O, I, *K]
    if demodulate:
        dcoef = (w.square().sum(dim=tuple(range(2, w.ndim))) + eps).rsqrt()  # [N, O]
        w = w * (dcoef * gain if gain != 1.0 else dcoef).reshape(n, out_ch, 1, *view)
    elif gain != 1.0:
        w = w * gain
    w = w.reshape(n * out_ch, in_ch, *weight.shape[2:])  # [N*O, I, *K]
    bb = None if b is None else b.to(x.dtype).repeat(n)
    if n == 1:  # a plain conv; no reshape (it would lose a channels-last layout's strides)
        return conv_nd(x, w.to(x.dtype), bb, padding=pad)
    y = conv_nd(x.reshape(1, n * in_ch, *x.shape[2:]), w.to(x.dtype), bb, padding=pad, groups=n)
    return y.reshape(n, out_ch, *x.shape[2:])


class ModulatedConv(nn.Module):
    """A convolution whose weights are modulated by a style vector computed from ``w``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel side.
        w_dim: width of the intermediate latent ``w``.
        spatial_dims: 2 or 3.
        demodulate: weight demodulation (False for the output heads, as StyleGAN2's ToRGB).
        fused: grouped-convolution implementation (see :func:`modulated_conv`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        spatial_dims: int = 3,
        demodulate: bool = True,
        fused: bool = True,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(
            torch.randn((out_channels, in_channels) + (kernel_size,) * spatial_dims)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size**spatial_dims)
        self.demodulate = demodulate
        self.fused = fused
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor, w: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``x [N, in, *S]``, ``w [N, w_dim]`` -> ``gain * (conv + bias)`` ``[N, out, *S]`` (no activation)."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"ModulatedConv expects {self.spatial_dims + 2}-D input, got {list(x.shape)}"
            )
        styles = self.affine(w)  # [N, in]
        if not self.demodulate:  # ToRGB-style heads: fold the gain into the styles
            styles = styles * self.weight_gain
            weight: torch.Tensor = self.weight
        else:
            weight = self.weight * self.weight_gain
        return modulated_conv(
            x,
            weight,
            styles,
            demodulate=self.demodulate,
            fused=self.fused,
            bias=self.bias,
            gain=gain,
        )

    def forward_parts(self, parts: Sequence[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
        """This layer applied to ``torch.cat(parts, 1)``; 1x1 heads never build the concatenation."""
        in_ch = self.weight.shape[1]
        if sum(p.shape[1] for p in parts) != in_ch:
            raise ValueError(
                f"ModulatedConv expects {in_ch} channels in all, got {[list(p.shape) for p in parts]}"
            )
        if self.demodulate or self.weight.shape[-1] != 1 or len(parts) == 1:
            return self.forward(parts[0] if len(parts) == 1 else torch.cat(list(parts), dim=1), w)
        styles = self.affine(w) * self.weight_gain  # [N, in]
        wmod = self.weight.reshape(1, -1, in_ch) * styles.unsqueeze(1)  # [N, O, in]
        return pointwise(parts, list(wmod.split([p.shape[1] for p in parts], dim=2)), self.bias)


class AdaIN(nn.Module):
    """Adaptive instance normalisation: ``(x - mean) / std * (1 + scale(w)) + shift(w)``.

    Args:
        channels: feature channels.
        w_dim: width of ``w``.
        spatial_dims: 2 or 3.
    """

    def __init__(self, channels: int, w_dim: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.affine = EqualLinear(w_dim, 2 * channels)
        self.channels = channels

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x [N, C, *S]``, ``w [N, w_dim]`` -> ``[N, C, *S]``."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.channels:
            raise ValueError(f"AdaIN expects [N, {self.channels}, ...], got {list(x.shape)}")
        scale, shift = self.affine(w).chunk(2, dim=1)  # [N, C] each
        view = (x.shape[0], self.channels) + (1,) * self.spatial_dims
        # two-pass statistics (plain sums vectorise; torch.var_mean's Welford ran 3x slower) and
        # one affine pass, with a layout-keeping backward (gliomagen.models.fastops)
        out = instance_norm_affine(x, 1.0 + scale.reshape(view), shift.reshape(view), 1e-5)
        return out.to(x.dtype)
