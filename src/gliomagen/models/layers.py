"""Building blocks of the StyleGAN networks, for 2D and 3D alike.

Every layer takes ``spatial_dims`` (2 or 3) so the same code serves volumes and slices. Weights use
the *equalised learning rate* of Karras et al. (2018): parameters are stored at unit variance and
scaled by ``1/sqrt(fan_in)`` at run time, which keeps Adam's effective step equal across layers.

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
    """Double every spatial side with (bi/tri)linear interpolation. ``[N, C, *S] -> [N, C, *2S]``."""
    mode = "trilinear" if x.ndim == 5 else "bilinear"
    return F.interpolate(x, scale_factor=2.0, mode=mode, align_corners=False)


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve every spatial side by 2x average pooling. ``[N, C, *S] -> [N, C, *S/2]``."""
    return F.avg_pool3d(x, 2) if x.ndim == 5 else F.avg_pool2d(x, 2)


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, in, *S] -> [N, out, *S]``."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"EqualConv expects [N, {self.in_channels}, {self.spatial_dims} spatial dims], got {list(x.shape)}"
            )
        w = self.weight * self.weight_gain
        y = conv_nd(
            x,
            w.to(x.dtype),
            None if self.bias is None else self.bias.to(x.dtype),
            padding=self.padding,
        )
        return lrelu(y) if self.activation == "lrelu" else y


def modulated_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    fused: bool = True,
    eps: float = 1e-8,
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
            before and after one shared convolution (same result, often faster on CPU).
        eps: numerical floor of the demodulation.

    Returns:
        ``[N, O, *S]``.
    """
    n, in_ch = x.shape[:2]
    out_ch = weight.shape[0]
    spatial = weight.ndim - 2
    if styles.shape != (n, in_ch):
        raise ValueError(f"styles must be [{n}, {in_ch}], got {list(styles.shape)}")
    pad = weight.shape[-1] // 2
    view = (1,) * spatial
    if not fused:
        y = x * styles.reshape(n, in_ch, *view).to(x.dtype)
        y = conv_nd(y, weight.to(x.dtype), padding=pad)
        if demodulate:
            wsq = weight.square().sum(dim=tuple(range(2, weight.ndim)))  # [O, I]
            dcoef = (styles.square() @ wsq.t() + eps).rsqrt()  # [N, O]
            y = y * dcoef.reshape(n, out_ch, *view).to(y.dtype)
        return y
    w = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, *view)  # [N, O, I, *K]
    if demodulate:
        dcoef = (w.square().sum(dim=tuple(range(2, w.ndim))) + eps).rsqrt()  # [N, O]
        w = w * dcoef.reshape(n, out_ch, 1, *view)
    w = w.reshape(n * out_ch, in_ch, *weight.shape[2:])  # [N*O, I, *K]
    y = conv_nd(x.reshape(1, n * in_ch, *x.shape[2:]), w.to(x.dtype), padding=pad, groups=n)
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

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x [N, in, *S]``, ``w [N, w_dim]`` -> ``[N, out, *S]`` (bias added, no activation)."""
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
        y = modulated_conv(x, weight, styles, demodulate=self.demodulate, fused=self.fused)
        return y + self.bias.to(y.dtype).reshape(1, -1, *(1,) * self.spatial_dims)


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
        dims = tuple(range(2, x.ndim))
        xf = x.float()
        mean = xf.mean(dim=dims, keepdim=True)
        var = xf.var(dim=dims, keepdim=True, unbiased=False)
        normed = (xf - mean) * (var + 1e-5).rsqrt()
        scale, shift = self.affine(w).chunk(2, dim=1)  # [N, C] each
        view = (x.shape[0], self.channels) + (1,) * self.spatial_dims
        return (normed * (1.0 + scale.reshape(view)) + shift.reshape(view)).to(x.dtype)


@torch.compiler.disable
def _per_sample_randn(
    shape: tuple[int, ...], generators: Sequence[torch.Generator], device: torch.device
) -> torch.Tensor:
    """``randn(shape)`` with row ``i`` drawn from ``generators[i]`` (kept out of compiled graphs)."""
    return torch.cat([torch.randn((1, *shape[1:]), generator=g, device=device) for g in generators])


class NoiseInjection(nn.Module):
    """Add per-voxel Gaussian noise with a learned per-channel strength (initialised to 0).

    ``noise_mode``: ``"random"`` draws fresh noise (from one generator per sample when ``generators``
    are given, so a sample's noise does not depend on the batch it sits in), ``"const"`` uses a fixed
    buffer drawn at construction, ``"none"`` adds nothing.

    Args:
        channels: feature channels.
        shape: spatial shape of the features this layer sees (for the constant noise).
        seed: seed of the constant noise buffer.
    """

    noise_const: torch.Tensor

    def __init__(self, channels: int, shape: Sequence[int], seed: int = 0) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels))
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("noise_const", torch.randn((1, 1, *shape), generator=gen))

    def forward(
        self,
        x: torch.Tensor,
        noise_mode: str = "random",
        generators: Sequence[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """``[N, C, *S] -> [N, C, *S]``."""
        if noise_mode == "none":
            return x
        shape = (x.shape[0], 1, *x.shape[2:])
        if noise_mode == "const":
            noise = self.noise_const.to(x.dtype).expand(shape)
        elif noise_mode == "random":
            if generators is None:
                noise = torch.randn(shape, device=x.device, dtype=x.dtype)
            else:
                if len(generators) != x.shape[0]:
                    raise ValueError(
                        f"need one noise generator per sample ({x.shape[0]}), got {len(generators)}"
                    )
                noise = _per_sample_randn(shape, generators, x.device).to(x.dtype)
        else:
            raise ValueError(f"noise_mode must be random, const or none, got {noise_mode!r}")
        view = (1, -1) + (1,) * (x.ndim - 2)
        return x + noise * self.strength.to(x.dtype).reshape(view)
