"""The ``probe`` feature network: a small 3D CNN trained on the real training split, cached on disk.

No pretrained 3D network for four-channel glioma MRI is free to bundle, so gliomagen trains its
own feature network on the user's real training cases. Each step transforms a batch at random
and the network names the transforms, so the features describe what a real multi-parametric
volume looks like:

* **modality order** (self-supervised): the four channels are shuffled by one of the 24
  permutations and the network names the modality in each channel slot (four 4-way answers), so
  it must know each contrast (a generator that mixes contrasts up moves away in feature space);
* **orientation** (self-supervised): the volume is flipped along none, one or both of the
  anterior-posterior and inferior-superior axes (not left-right: brains are nearly symmetric) and
  the network names the flip, so it must know the anatomy;
* **acquisition quality** (self-supervised): no change, added Gaussian noise (std 0.03-0.3) or a
  Gaussian blur (sigma 0.6-2 voxels) inside the brain, and the network names which, so grainy or
  over-smooth volumes (common generator failures) move away in feature space;
* **labels** (supervised): every categorical condition with at least two categories among the
  training cases (cohort, grade, ...), unknown values ignored.

On 2-D slices (a slice store) the same probe runs with 2-D convolutions (``spatial_dims`` 2)
and the orientation task flips the slice's second axis or not (the anterior-posterior axis of an
axial slice, the inferior-superior one of coronal and sagittal slices).

The network is four stride-2 stages of two 3x3x3 convolutions with leaky ReLUs (no normalisation
layers: they would remove the intensity levels that tell contrasts apart). Features are the channel
means and standard deviations of every stage (``30 * width`` numbers), z-scored with the training
cases' statistics so that every feature counts alike in FD and KID. Volumes are resized (area
interpolation) so that their longest side is ``options.size`` voxels.

The trained weights are cached on disk (:func:`gliomagen.evaluation.cache.load_or_train_probe`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gliomagen.errors import GliomagenError

PERMUTATIONS: tuple[tuple[int, ...], ...] = tuple(itertools.permutations(range(4)))
# flipped dims of [B, C, D, H, W] in RAS order: none, A-P (H), I-S (W), both
FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (4,), (3, 4))
FLIPS_2D: tuple[tuple[int, ...], ...] = ((), (3,))  # [B, C, a, b]: none, the slice's second axis
CORRUPTIONS: tuple[str, ...] = ("none", "noise", "blur")
BRAIN_THRESHOLD = -0.98


@dataclass(frozen=True)
class ProbeOptions:
    """Options of the probe network and its training (all of them enter the cache key).

    Args:
        size: longest side of the probe input in voxels.
        width: channels of the first stage (doubled at each of the 4 stages).
        steps: optimisation steps.
        batch_size: cases per step.
        lr: Adam learning rate.
        seed: seed of initialisation, batches and augmentations.
    """

    size: int = 32
    width: int = 16
    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 16:
            raise GliomagenError(f"probe size must be at least 16 voxels, got {self.size}")
        if self.width < 1 or self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise GliomagenError(f"probe options must be positive, got {asdict(self)}")


def probe_shape(shape: tuple[int, ...], size: int) -> tuple[int, ...]:
    """Probe input shape of a volume ``(D, H, W)`` (or a slice ``(H, W)``): longest side ``size``, aspect kept."""
    scale = size / max(shape)
    return tuple(max(8, round(s * scale)) for s in shape)


def to_probe_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize images ``[B, C, D, H, W]`` or ``[B, C, H, W]`` to the probe grid (area
    interpolation down, trilinear / bilinear up)."""
    target = probe_shape(tuple(images.shape[2:]), size)
    if tuple(images.shape[2:]) == target:
        return images.float()
    mode = (
        "area"
        if all(t <= s for t, s in zip(target, images.shape[2:], strict=True))
        else ("trilinear" if images.ndim == 5 else "bilinear")
    )
    return F.interpolate(images.float(), size=target, mode=mode)


class _Stage(nn.Sequential):
    def __init__(self, cin: int, cout: int, spatial_dims: int = 3) -> None:
        conv = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        super().__init__(
            conv(cin, cout, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            conv(cout, cout, 3, padding=1),
            nn.LeakyReLU(0.2),
        )
        for m in self:
            if isinstance(m, nn.Conv3d | nn.Conv2d) and m.bias is not None:
                nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)


class ProbeNet(nn.Module):
    """Four stride-2 stages (``width`` .. ``8 * width`` channels) and one linear head per task.

    Args:
        in_channels: number of modalities.
        width: channels of the first stage.
        heads: task name -> number of classes.
        spatial_dims: 3 for volumes, 2 for slices.
    """

    def __init__(
        self, in_channels: int, width: int, heads: Mapping[str, int], spatial_dims: int = 3
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"ProbeNet: spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        chans = [in_channels, width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.ModuleList(
            [_Stage(a, b, spatial_dims) for a, b in itertools.pairwise(chans)]
        )
        self.feature_dim = 2 * sum(chans[1:])
        self.heads = nn.ModuleDict(
            {name: nn.Linear(self.feature_dim, n) for name, n in heads.items()}
        )
        # z-scoring of the features, fitted on the training cases after training (see standardise)
        self.feat_mean: torch.Tensor
        self.feat_std: torch.Tensor
        self.register_buffer("feat_mean", torch.zeros(self.feature_dim))
        self.register_buffer("feat_std", torch.ones(self.feature_dim))

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, d, h, w]`` (2D: ``[B, C, h, w]``) probe input -> ``[B, 30 * width]``: channel
        means and stds of every stage."""
        if x.ndim != 2 + self.spatial_dims:
            grid = "D, H, W" if self.spatial_dims == 3 else "H, W"
            raise ValueError(f"ProbeNet expects [B, C, {grid}], got {tuple(x.shape)}")
        pooled = []
        for stage in self.stages:
            x = stage(x)
            y = x.flatten(2)  # [B, c, n]
            pooled += [y.mean(2), y.std(2, unbiased=False)]
        return torch.cat(pooled, dim=1)

    @torch.no_grad()
    def standardise(self, inputs: torch.Tensor, batch_size: int = 8) -> None:
        """Fit the feature z-scoring on probe inputs ``[N, C, d, h, w]`` (the training cases)."""
        dev = self.feat_mean.device
        feats = torch.cat(
            [
                self.raw_features(inputs[i : i + batch_size].float().to(dev))
                for i in range(0, len(inputs), batch_size)
            ]
        )
        self.feat_mean.copy_(feats.mean(0))
        self.feat_std.copy_(feats.std(0).clamp_min(1e-6))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised features ``[B, 30 * width]`` (z-scores with respect to the training cases)."""
        return (self.raw_features(x) - self.feat_mean) / self.feat_std

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.raw_features(x)
        return {name: head(f) for name, head in self.heads.items()}


def _blur(v: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``[1, C, d, h, w]`` or ``[1, C, h, w]`` (replicate padding), one 1D pass per axis."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(v.dtype)
    c, sd = v.shape[1], v.ndim - 2
    conv = F.conv3d if sd == 3 else F.conv2d
    for dim in range(sd):
        shape = [1] * sd
        shape[dim] = k.numel()
        pad = [0] * (2 * sd)
        pad[2 * (sd - 1 - dim)] = pad[2 * (sd - 1 - dim) + 1] = radius
        v = conv(
            F.pad(v, pad, mode="replicate"), k.view(1, 1, *shape).expand(c, 1, *shape), groups=c
        )
    return v


def _augment(
    x: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Apply random self-supervised transforms to ``x [B, C, d, h, w]`` (or ``[B, C, h, w]``);
    return them as targets."""
    b = x.shape[0]
    flips = FLIPS if x.ndim == 5 else FLIPS_2D
    perm = rng.integers(0, len(PERMUTATIONS), b)
    flip = rng.integers(0, len(flips), b)
    corrupt = rng.integers(0, len(CORRUPTIONS), b)
    out = []
    for i in range(b):
        v = x[i : i + 1, list(PERMUTATIONS[perm[i]])]
        if flips[flip[i]]:
            v = torch.flip(v, flips[flip[i]])
        brain = (v > BRAIN_THRESHOLD).any(dim=1, keepdim=True)
        if CORRUPTIONS[corrupt[i]] == "noise":
            noisy = v + float(rng.uniform(0.03, 0.3)) * torch.from_numpy(
                rng.standard_normal(v.shape).astype(np.float32)
            )
            v = torch.where(brain, noisy.clamp(-1, 1), v)
        elif CORRUPTIONS[corrupt[i]] == "blur":
            v = torch.where(brain, _blur(v, float(rng.uniform(0.6, 2.0))), v)
        out.append(v)
    slots = torch.tensor([PERMUTATIONS[p] for p in perm.tolist()])  # [B, 4]: modality in each slot
    targets = {
        "modality": slots,
        "flip": torch.from_numpy(flip),
        "corruption": torch.from_numpy(corrupt),
    }
    return torch.cat(out), targets


def probe_heads(labels: Mapping[str, torch.Tensor], spatial_dims: int = 3) -> dict[str, int]:
    """Classes of every head: the three self-supervised tasks and one per label."""
    n_flips = len(FLIPS if spatial_dims == 3 else FLIPS_2D)
    heads = {"modality": 4 * 4, "flip": n_flips, "corruption": len(CORRUPTIONS)}
    heads.update({f"label_{k}": int(v.max()) + 1 for k, v in labels.items()})
    return heads


def _loss(
    out: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    loss = F.cross_entropy(out["modality"].view(-1, 4, 4).transpose(1, 2), targets["modality"])
    loss = loss + F.cross_entropy(out["flip"], targets["flip"])
    loss = loss + F.cross_entropy(out["corruption"], targets["corruption"])
    for name, y in labels.items():
        if (y >= 0).any():
            loss = loss + F.cross_entropy(out[f"label_{name}"], y, ignore_index=-1)
    return loss


def train_probe(
    inputs: torch.Tensor,
    labels: Mapping[str, torch.Tensor],
    options: ProbeOptions,
    progress: Callable[[int, float], None] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[ProbeNet, list[float]]:
    """Train a probe on its inputs.

    Args:
        inputs: probe inputs ``[N, 4, d, h, w]`` (slices: ``[N, 4, h, w]``) on the CPU (see
            :func:`to_probe_input`).
        labels: label name -> class index per case ``[N]`` (``-1`` = unknown, ignored).
        options: network and training options.
        progress: called with ``(step, loss)`` after every step.
        device: where the network trains (batches are drawn and transformed on the CPU).

    Returns:
        ``(net in eval mode on device, loss per step)``.
    """
    if inputs.ndim not in (4, 5) or inputs.shape[1] != 4:
        raise GliomagenError(
            f"probe: expected training inputs [N, 4, D, H, W] or [N, 4, H, W], got {tuple(inputs.shape)}"
        )
    if inputs.shape[0] < 2:
        raise GliomagenError(f"probe: needs at least 2 training cases, got {inputs.shape[0]}")
    spatial_dims = inputs.ndim - 2
    heads = probe_heads(labels, spatial_dims)
    rng = np.random.default_rng(options.seed)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.seed)
        net = ProbeNet(inputs.shape[1], options.width, heads, spatial_dims).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=options.lr)
        net.train()
        for step in range(options.steps):
            idx = rng.choice(
                inputs.shape[0], min(options.batch_size, inputs.shape[0]), replace=False
            )
            x, targets = _augment(inputs[idx].float(), rng)
            loss = _loss(
                net(x.to(device)),
                {k: v.to(device) for k, v in targets.items()},
                {k: v[idx].to(device) for k, v in labels.items()},
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(step, losses[-1])
    net.eval()
    net.standardise(inputs)
    return net, losses
