"""Sensitivity on phantoms: FD and KID grow as held-out cases are degraded more, above the real floor.

For every extractor that works offline (the probe; MedicalNet and a 2D TorchScript network with
random weights, which exercises their loading paths), held-out phantom cases are degraded by noise,
blur and swapped modalities at three increasing levels and compared with the training cases. The
real-versus-real floor (training vs the undegraded held-out cases) must lie below every degraded
set and each degradation must raise FD and KID monotonically.

Levels start beyond the cohort's own variation: SSA phantoms are scanned at SNR 7-11, i.e. with
noise of std ~0.1 on the [-1, 1] scale and thick slices, so milder noise or blur makes a case look
like another real SSA case rather than a degraded one.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from monai.networks.nets import resnet10

from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.distances import frechet_distance, kernel_inception_distance
from gliomagen.evaluation.features import build_extractor, extract_features
from gliomagen.evaluation.probe import ProbeOptions

LEVELS = {"noise": (0.2, 0.3, 0.5), "blur": (1.0, 1.5, 2.5), "swap": (0.25, 0.5, 1.0)}


class _Tiny2D(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.c2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.c2(torch.relu(self.c1(x)))).mean((2, 3))


def _weights(name: str, folder: Path) -> Path | None:
    torch.manual_seed(0)
    if name == "medicalnet":
        net = resnet10(
            spatial_dims=3,
            n_input_channels=1,
            conv1_t_stride=2,
            shortcut_type="B",
            bias_downsample=False,
            feed_forward=False,
        )
        path = folder / "resnet_10.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
        return path
    if name == "slices":
        path = folder / "tiny2d.pt"
        torch.jit.save(torch.jit.script(_Tiny2D()), str(path))
        return path
    return None


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("extractor", ["probe", "medicalnet", "slices"])
def test_fd_and_kid_grow_with_degradation(
    extractor: str, phantom_splits: tuple[Any, Any], volumes: ModuleType, tmp_path: Path
) -> None:
    train, held = phantom_splits
    ex = build_extractor(
        extractor, train=train, weights=_weights(extractor, tmp_path),
        probe_options=ProbeOptions(size=24, width=8, steps=300),
    )  # fmt: skip
    f_train = extract_features(ex, train)
    images = held.load(np.arange(len(held)))[0].numpy()

    def distances(imgs: np.ndarray) -> tuple[float, float]:
        f = extract_features(ex, CaseSet.from_arrays(imgs, name="degraded"))
        return frechet_distance(f_train, f), kernel_inception_distance(f_train, f)[0]

    floor_fd, floor_kid = distances(images)
    report = {"floor": (floor_fd, floor_kid)}
    for kind, levels in LEVELS.items():
        values = [distances(volumes.degrade(images, kind, level, seed=1)) for level in levels]
        report[kind] = values
        fds, kids = [v[0] for v in values], [v[1] for v in values]
        assert all(a < b for a, b in zip(fds, fds[1:], strict=False)), (kind, report)
        assert all(a < b for a, b in zip(kids, kids[1:], strict=False)), (kind, report)
        assert floor_fd < fds[0] and floor_kid < kids[0], (kind, report)
