"""Feature extractors for FD, KID and PRDC: ``probe``, ``medicalnet`` and ``slices``.

Every extractor maps images ``[B, 4, D, H, W]`` in [-1, 1] to features ``[B, F]``; nothing is
downloaded. On 2-D slices (a slice store, images ``[B, 4, H, W]``) the probe is a 2-D network
and ``slices`` embeds each slice itself (each modality apart, features concatenated), which is
the usual 2-D FID/KID when ``--weights`` is an InceptionV3 exported to TorchScript (its pooled
2048 features; ``slice_size`` 299 resizes the slices to its input size); ``medicalnet`` is 3D only.

* ``probe`` (default): a small 3D CNN trained on the real training split and cached
  (:mod:`gliomagen.evaluation.probe`). Needs no weights file.
* ``medicalnet``: the 3D ResNet of MedicalNet (Chen et al. 2019, "Med3D"), built with MONAI's
  :class:`monai.networks.nets.ResNet` in MedicalNet's layout (7^3 stride-2 stem, shortcut A for
  ResNet-18/34, B otherwise) from a state_dict the user gives (``--weights``: a MedicalNet
  ``.pth`` with or without its ``{"state_dict": ...}`` wrapper and ``module.`` prefixes; the
  segmentation head ``conv_seg.*`` is ignored). Depth, block type and shortcut are read from the
  keys. MONAI's ResNet strides layers 3 and 4 where MedicalNet's segmentation network dilates
  them; the weights fit unchanged and the pooled features are the usual "MedicalNet FID" ones. A one-channel network sees each modality apart (z-scored inside the brain, as MedicalNet
  was trained) and the four 512/2048-long pooled features are concatenated in modality order, so
  swapped contrasts change the features.
* ``slices`` (2.5D): a TorchScript 2D network the user exported (``--weights``, e.g. an
  InceptionV3 or a RadImageNet ResNet-50) applied to ``n_slices`` evenly spaced axial, coronal and
  sagittal slices of each modality (intensities mapped to [0, 1], replicated to 3 channels,
  optionally resized to ``slice_size``). Its outputs (spatially averaged if not flat) are averaged
  over slices and planes and concatenated over modalities.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.cache import load_or_train_probe
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.probe import ProbeOptions, to_probe_input
from gliomagen.evaluation.similarity import brain_mask

EXTRACTORS: tuple[str, ...] = ("probe", "medicalnet", "slices")


class Extractor:
    """Base class: ``extractor(images [B, C, D, H, W]) -> features [B, F]``."""

    name = "base"
    dim = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What the report records about the extractor."""
        return {"name": self.name, "dim": self.dim}


class ProbeExtractor(Extractor):
    """Features of a probe network trained on ``train`` (see :mod:`gliomagen.evaluation.probe`)."""

    name = "probe"

    def __init__(
        self,
        train: CaseSet,
        options: ProbeOptions | None = None,
        cache_dir: Path | None = None,
        batch_size: int = 8,
        progress: Callable[[int, float], None] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.options = options or ProbeOptions()
        self.device = torch.device(device)
        if len(train) < 2:
            raise GliomagenError(
                f"{train.name}: the probe needs at least 2 training cases, got {len(train)}"
            )
        chunks = [
            to_probe_input(imgs, self.options.size).half()
            for _, imgs, _ in train.batches(batch_size)
        ]
        inputs = torch.cat(chunks)  # [N, C, d, h, w] float16
        labels: dict[str, torch.Tensor] = {}
        for name in train.categorical:
            values = train.label_values(name)
            cats = sorted({str(v) for v in values if v is not None})
            if len(cats) >= 2:
                labels[name] = torch.tensor(
                    [cats.index(str(v)) if v is not None else -1 for v in values]
                )
        self.net, self._info = load_or_train_probe(
            inputs, labels, self.options, cache_dir, progress, self.device
        )
        self.dim = self.net.feature_dim
        self._info["labels"] = sorted(labels)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = to_probe_input(images, self.options.size).to(self.device)
        return self.net.features(x).cpu()

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, **self._info}


def _zscore_in_brain(images: torch.Tensor) -> torch.Tensor:
    """Per case and channel: z-score over brain voxels, 0 outside (MedicalNet's normalisation)."""
    brain = brain_mask(images).unsqueeze(1).expand_as(images).float()  # [B, C, D, H, W]
    count = brain.flatten(2).sum(2).clamp_min(1)[..., None, None, None]
    mean = (images * brain).flatten(2).sum(2)[..., None, None, None] / count
    var = (((images - mean) * brain) ** 2).flatten(2).sum(2)[..., None, None, None] / count
    return (images - mean) / var.sqrt().clamp_min(1e-6) * brain


def _load_state_dict(path: Path, option: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise GliomagenError(f"{option} {path}: file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise GliomagenError(
            f"{option} {path}: not a state_dict readable with torch.load(weights_only=True) ({type(exc).__name__})"
        ) from None
    if isinstance(blob, Mapping) and isinstance(blob.get("state_dict"), Mapping):
        blob = blob["state_dict"]
    if not isinstance(blob, Mapping) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise GliomagenError(f"{option} {path}: expected a state_dict (names -> tensors)")
    return {re.sub(r"^(module\.)+", "", k): v for k, v in blob.items()}


def build_medicalnet(state: Mapping[str, torch.Tensor], source: str = "--weights") -> nn.Module:
    """A MONAI ResNet in MedicalNet layout that fits ``state`` (depth, block, shortcut from its keys)."""
    from monai.networks.nets.resnet import ResNet, get_inplanes  # MONAI: a heavy import (seconds)

    keys = [k for k in state if not k.startswith(("conv_seg.", "fc."))]
    if "conv1.weight" not in state or state["conv1.weight"].ndim != 5:
        raise GliomagenError(
            f"{source}: not a MedicalNet 3D ResNet state_dict (no 5D conv1.weight)"
        )
    layers = []
    for i in range(1, 5):
        blocks = {int(m.group(1)) for k in keys if (m := re.match(rf"layer{i}\.(\d+)\.", k))}
        if not blocks:
            raise GliomagenError(
                f"{source}: not a MedicalNet 3D ResNet state_dict (no layer{i} weights)"
            )
        layers.append(max(blocks) + 1)
    block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
    shortcut = "B" if any(".downsample." in k for k in keys) else "A"
    bias_ds = any(re.search(r"\.downsample\.0\.bias$", k) for k in keys)
    net = ResNet(
        block, layers, get_inplanes(), spatial_dims=3, n_input_channels=int(state["conv1.weight"].shape[1]),
        conv1_t_size=7, conv1_t_stride=2, shortcut_type=shortcut, bias_downsample=bias_ds, feed_forward=False,
    )  # fmt: skip
    try:
        missing, unexpected = net.load_state_dict({k: state[k] for k in keys}, strict=False)
    except RuntimeError as exc:
        first = next(
            (line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc)
        )
        raise GliomagenError(
            f"{source}: does not fit a MedicalNet ResNet (layers {layers}, {block}): {first}"
        ) from None
    if missing or unexpected:
        raise GliomagenError(
            f"{source}: does not fit a MedicalNet ResNet (layers {layers}, {block}); "
            f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
        )
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, net.conv1.in_channels, 16, 16, 16))
    except (RuntimeError, ValueError) as exc:
        raise GliomagenError(
            f"{source}: the network does not run with these weights ({exc})"
        ) from None
    return net


class MedicalNetExtractor(Extractor):
    """Pooled features of a MedicalNet 3D ResNet with user-given weights."""

    name = "medicalnet"

    def __init__(
        self, weights: str | os.PathLike[str] | None, device: torch.device | str = "cpu"
    ) -> None:
        self.device = torch.device(device)
        if weights is None:
            raise GliomagenError(
                "--extractor medicalnet needs --weights PATH (a MedicalNet .pth state_dict); nothing is downloaded"
            )
        self.weights = Path(weights)
        state = _load_state_dict(self.weights, "--weights")
        self.net = build_medicalnet(state, f"--weights {self.weights}").to(self.device)
        self.in_channels = int(state["conv1.weight"].shape[1])
        if self.in_channels not in (1, 4):
            raise GliomagenError(
                f"--weights {self.weights}: network takes {self.in_channels} channels; need 1 or 4"
            )
        width = int(state["layer4.0.conv1.weight"].shape[0]) * (
            4 if "layer4.0.conv3.weight" in state else 1
        )
        self.dim = width * (4 if self.in_channels == 1 else 1)
        self.layers = [len(getattr(self.net, f"layer{i}")) for i in range(1, 5)]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = _zscore_in_brain(images.float()).to(self.device)
        if self.in_channels == 4:
            return self.net(x).cpu()
        b, c = x.shape[:2]
        feats = self.net(x.reshape(b * c, 1, *x.shape[2:]))  # [B*C, W]
        return feats.reshape(b, -1).cpu()  # [B, C*W], modality order kept

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dim": self.dim,
            "weights": str(self.weights),
            "layers": self.layers,
        }


class SlicesExtractor(Extractor):
    """2.5D features: a TorchScript 2D network on axial, coronal and sagittal slices."""

    name = "slices"

    def __init__(
        self,
        weights: str | os.PathLike[str] | None,
        n_slices: int = 8,
        slice_size: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        if weights is None:
            raise GliomagenError(
                "--extractor slices needs --weights PATH (a TorchScript 2D network); nothing is downloaded"
            )
        self.weights = Path(weights)
        if not self.weights.is_file():
            raise GliomagenError(f"--weights {self.weights}: file not found")
        try:
            with warnings.catch_warnings():  # TorchScript is deprecated upstream but still loads
                warnings.simplefilter("ignore", DeprecationWarning)
                self.net = torch.jit.load(str(self.weights), map_location=self.device).eval()
        except Exception as exc:
            raise GliomagenError(
                f"--weights {self.weights}: not a TorchScript file ({type(exc).__name__})"
            ) from None
        self.n_slices, self.slice_size = int(n_slices), slice_size
        if self.n_slices < 1:
            raise GliomagenError(f"slices: n_slices must be >= 1, got {n_slices}")
        try:
            probe = self._embed(torch.zeros(1, 1, 32, 32))
        except Exception as exc:
            raise GliomagenError(
                f"--weights {self.weights}: the network fails on [1, 3, H, W] slices ({exc})"
            ) from None
        self.per_modality = int(probe.shape[1])
        self.dim = 0  # set on first call (depends on the number of modalities)

    def _embed(self, slices: torch.Tensor) -> torch.Tensor:
        """Slices ``[n, 1, h, w]`` in [-1, 1] -> features ``[n, F]``."""
        x = ((slices.to(self.device) + 1) / 2).clamp(0, 1).expand(-1, 3, -1, -1)
        if self.slice_size:
            x = F.interpolate(
                x, size=(self.slice_size, self.slice_size), mode="bilinear", align_corners=False
            )
        out = self.net(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return (out.flatten(2).mean(2) if out.ndim > 2 else out).float().cpu()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        b, c = images.shape[:2]
        if images.ndim == 4:  # 2-D slices [B, C, H, W]: each modality of each slice, embedded once
            feats = self._embed(images.float().reshape(b * c, 1, *images.shape[2:]))  # [B*C, F]
            out2d = feats.reshape(b, -1)  # [B, C*F], modality order kept
            self.dim = out2d.shape[1]
            return out2d
        per_mod = []
        for ch in range(c):
            vol = images[:, ch].float()  # [B, D, H, W]
            planes = []
            for axis in (1, 2, 3):
                length = vol.shape[axis]
                idx = np.unique(
                    np.linspace(0.2 * (length - 1), 0.8 * (length - 1), self.n_slices)
                    .round()
                    .astype(int)
                )
                sl = vol.index_select(axis, torch.as_tensor(idx)).movedim(axis, 1)  # [B, n, h, w]
                feats = self._embed(sl.reshape(-1, 1, *sl.shape[2:]))  # [B*n, F]
                planes.append(feats.reshape(b, len(idx), -1).mean(1))
            per_mod.append(torch.stack(planes).mean(0))  # [B, F]
        out = torch.cat(per_mod, dim=1)  # [B, C*F]
        self.dim = out.shape[1]
        return out

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name, "dim": self.dim or 4 * self.per_modality, "weights": str(self.weights),
            "n_slices": self.n_slices, "slice_size": self.slice_size,
        }  # fmt: skip


def build_extractor(
    name: str,
    *,
    train: CaseSet | None = None,
    weights: str | os.PathLike[str] | None = None,
    probe_options: ProbeOptions | None = None,
    cache_dir: Path | None = None,
    n_slices: int = 8,
    slice_size: int | None = None,
    progress: Callable[[int, float], None] | None = None,
    device: torch.device | str = "cpu",
) -> Extractor:
    """Make the extractor called ``name`` (``probe`` | ``medicalnet`` | ``slices``).

    Args:
        name: extractor name.
        train: real training cases (the probe trains on them).
        weights: weights file of ``medicalnet`` / ``slices``.
        probe_options: options of the probe.
        cache_dir: probe cache folder.
        n_slices: slices per plane of ``slices``.
        slice_size: resize slices to this square size (``slices``).
        progress: probe training progress callback ``(step, loss)``.
        device: where the network runs (inputs and features stay on the CPU).
    """
    if name == "probe":
        if train is None:
            raise GliomagenError(
                "--extractor probe needs real training cases (--train STORE:train)"
            )
        if weights is not None:
            raise GliomagenError(
                "--weights is for --extractor medicalnet or slices; the probe trains its own"
            )
        return ProbeExtractor(train, probe_options, cache_dir, progress=progress, device=device)
    if name == "medicalnet":
        if train is not None and len(train.spatial) == 2:
            raise GliomagenError(
                "--extractor medicalnet: a 3D network; on 2D slices use probe or slices (a TorchScript 2D network)"
            )
        return MedicalNetExtractor(weights, device=device)
    if name == "slices":
        return SlicesExtractor(weights, n_slices=n_slices, slice_size=slice_size, device=device)
    raise GliomagenError(f"--extractor {name!r}: unknown; choose one of {', '.join(EXTRACTORS)}")


def extract_features(extractor: Extractor, cases: CaseSet, batch_size: int = 4) -> np.ndarray:
    """Features of every case of a set: ``[N, F]`` float64."""
    out = [extractor(imgs).double().numpy() for _, imgs, _ in cases.batches(batch_size)]
    feats = np.concatenate(out) if out else np.zeros((0, extractor.dim))
    if not np.isfinite(feats).all():
        raise GliomagenError(f"{cases.name}: the {extractor.name} extractor gave NaN/inf features")
    return feats
