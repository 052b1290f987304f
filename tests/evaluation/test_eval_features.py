"""Feature extractors: the probe trains, caches and reloads; MedicalNet and TorchScript weights load or fail clearly."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from monai.networks.nets import resnet10, resnet18

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.cache import probe_key
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.features import build_extractor, extract_features
from gliomagen.evaluation.probe import ProbeOptions, to_probe_input

TINY = ProbeOptions(size=16, width=4, steps=6, batch_size=4)


@pytest.fixture(scope="module")
def small(volumes: ModuleType) -> CaseSet:
    imgs, masks, ids, labels = volumes.make_cohort(8, size=16, seed=5)
    return CaseSet.from_arrays(imgs, masks, case_ids=ids, labels=labels, name="small")


def test_probe_trains_caches_and_reloads(small: CaseSet, tmp_path: Path) -> None:
    first = build_extractor("probe", train=small, probe_options=TINY, cache_dir=tmp_path)
    info = first.info()
    assert info["cached"] is False and info["labels"] == ["cohort", "grade"]
    assert info["dim"] == 30 * TINY.width
    files = list((tmp_path / "probe").iterdir())
    assert [f.name for f in files] == [f"{info['key']}.pt"]  # no temporary file left behind
    second = build_extractor("probe", train=small, probe_options=TINY, cache_dir=tmp_path)
    assert second.info()["cached"] is True
    f1, f2 = extract_features(first, small), extract_features(second, small)
    np.testing.assert_array_equal(f1, f2)
    # features are standardised on the training cases
    np.testing.assert_allclose(f1.mean(0), 0.0, atol=2e-3)  # fitted on the float16 probe inputs
    sd = f1.std(0, ddof=1)
    assert (
        np.all((np.abs(sd - 1) < 0.05) | (sd < 1e-3)) and (sd > 0.95).mean() > 0.5
    )  # constant features stay 0
    # a damaged cache entry is retrained and replaced
    files[0].write_bytes(b"not a checkpoint")
    third = build_extractor("probe", train=small, probe_options=TINY, cache_dir=tmp_path)
    assert third.info()["cached"] is False
    np.testing.assert_allclose(extract_features(third, small), f1, atol=1e-5)


def test_probe_key_depends_on_data_labels_and_options(small: CaseSet) -> None:
    imgs, _ = small.load(range(len(small)))
    x = to_probe_input(imgs, 16)
    labels = {"grade": torch.tensor([0, 1] * 4)}
    key = probe_key(x, labels, TINY)
    assert key == probe_key(x.clone(), {"grade": labels["grade"].clone()}, TINY)
    assert key != probe_key(x + 0.01, labels, TINY)
    assert key != probe_key(x, {"grade": labels["grade"].flip(0)}, TINY)
    assert key != probe_key(x, labels, ProbeOptions(size=16, width=4, steps=7, batch_size=4))


def _save_medicalnet(net: torch.nn.Module, path: Path, wrap: bool) -> Path:
    state = {f"module.{k}": v for k, v in net.state_dict().items()} if wrap else net.state_dict()
    state = {
        **state,
        **({"module.conv_seg.0.weight": torch.zeros(2)} if wrap else {}),
    }  # MedicalNet's head
    torch.save({"state_dict": state} if wrap else state, path)
    return path


@pytest.mark.parametrize("wrap", [True, False])
def test_medicalnet_loads_medicalnet_layouts(small: CaseSet, tmp_path: Path, wrap: bool) -> None:
    torch.manual_seed(0)
    net10 = resnet10(
        spatial_dims=3,
        n_input_channels=1,
        conv1_t_stride=2,
        shortcut_type="B",
        bias_downsample=False,
        feed_forward=False,
    )
    ex = build_extractor("medicalnet", weights=_save_medicalnet(net10, tmp_path / "r10.pth", wrap))
    assert ex.info()["layers"] == [1, 1, 1, 1] and ex.dim == 4 * 512
    feats = extract_features(ex, small)
    assert feats.shape == (8, 2048) and np.isfinite(feats).all() and feats.std(0).max() > 0
    # the features are the network's pooled outputs per modality, in modality order
    imgs, _ = small.load([0])
    x = imgs[:, 2:3]
    brain = (imgs.amax(1, keepdim=True) > -0.98).float()
    z = (
        (x - (x * brain).sum() / brain.sum())
        / (((x - (x * brain).sum() / brain.sum()) ** 2 * brain).sum() / brain.sum()).sqrt()
        * brain
    )
    with torch.no_grad():
        expected = net10.eval()(z)[0].numpy()
    np.testing.assert_allclose(feats[0, 2 * 512 : 3 * 512], expected, rtol=1e-4, atol=1e-5)


def test_medicalnet_resnet18_shortcut_a(tmp_path: Path) -> None:
    net = resnet18(
        spatial_dims=3,
        n_input_channels=1,
        shortcut_type="A",
        bias_downsample=True,
        feed_forward=False,
    )
    ex = build_extractor("medicalnet", weights=_save_medicalnet(net, tmp_path / "r18.pth", True))
    assert ex.info()["layers"] == [2, 2, 2, 2]
    assert ex(torch.rand(2, 4, 16, 16, 16) * 2 - 1).shape == (2, 2048)


def test_medicalnet_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(GliomagenError, match="needs --weights"):
        build_extractor("medicalnet")
    with pytest.raises(GliomagenError, match="file not found"):
        build_extractor("medicalnet", weights=tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(GliomagenError, match="weights_only=True"):
        build_extractor("medicalnet", weights=junk)
    net = resnet10(
        spatial_dims=3,
        n_input_channels=1,
        shortcut_type="B",
        bias_downsample=False,
        feed_forward=False,
    )
    state = net.state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3)  # wrong shape
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(GliomagenError, match="bad.pth"):
        build_extractor("medicalnet", weights=tmp_path / "bad.pth")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(GliomagenError, match="not a MedicalNet 3D ResNet"):
        build_extractor("medicalnet", weights=tmp_path / "other.pth")


class _Tiny2D(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))  # [n, 6, h, w]: not flat, the extractor averages it


@pytest.mark.filterwarnings("ignore:`torch.jit.(script|save)` is deprecated:DeprecationWarning")
def test_slices_extractor_averages_planes(small: CaseSet, tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _Tiny2D()
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(module), str(path))
    ex = build_extractor("slices", weights=path)
    feats = extract_features(ex, small)
    assert feats.shape == (8, 4 * 6) and ex.info()["dim"] == 24
    # recompute modality t2w of case 0 by hand: 8 slices in each plane, features averaged
    imgs, _ = small.load([0])
    vol = imgs[0, 2]
    per_plane = []
    for axis in range(3):
        idx = np.unique(np.linspace(0.2 * 15, 0.8 * 15, 8).round().astype(int))
        sl = vol.index_select(axis, torch.as_tensor(idx)).movedim(axis, 0).unsqueeze(1)
        with torch.no_grad():
            per_plane.append(module(((sl + 1) / 2).expand(-1, 3, -1, -1)).mean((2, 3)).mean(0))
    np.testing.assert_allclose(
        feats[0, 12:18], torch.stack(per_plane).mean(0).numpy(), rtol=1e-5, atol=1e-6
    )


def test_slices_and_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(GliomagenError, match="needs --weights"):
        build_extractor("slices")
    not_script = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(1)}, not_script)
    with pytest.raises(GliomagenError, match="not a TorchScript file"):
        build_extractor("slices", weights=not_script)
    with pytest.raises(GliomagenError, match="unknown; choose one of probe, medicalnet, slices"):
        build_extractor("inception")
    with pytest.raises(GliomagenError, match="needs real training cases"):
        build_extractor("probe")
