"""``evaluate`` on slices: the same pipeline with 2-D probe, similarity (MONAI, spatial_dims=2) and audits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from slices2d_helpers import SIDE, run_cli

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.features import build_extractor
from gliomagen.evaluation.probe import ProbeNet, ProbeOptions, _blur, to_probe_input, train_probe
from gliomagen.evaluation.similarity import ms_ssim, mse, psnr, ssim


@pytest.mark.slow
def test_evaluate_slices_end_to_end(
    slice_store: Path, cohort2d: Path, run2d: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    code, stdout, err = run_cli(
        "evaluate", "--real", f"{slice_store}:test", "--synthetic", cohort2d, "--out", out, "--quiet",
        "--probe-steps", 5, "--probe-size", 16, "--bootstrap", 5, "--pairs", 5, "--reconstruct", 2,
        "--checkpoint", run2d,
    )  # fmt: skip
    assert code == 0, err
    assert "FD " in stdout and (out / "index.html").is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert m["inputs"]["grid"] == [SIDE, SIDE] and m["inputs"]["synthetic"]["n"] == 6
    assert m["extractor"]["name"] == "probe" and m["extractor"]["dim"] == 30 * 16
    assert "view" in m["inputs"]["conditions"]
    assert {"view=axial", "view=coronal", "view=sagittal"} <= set(m["groups"])
    assert m["groups"]["view=axial"]["n_synthetic"] == 2
    fd = m["distances"]["all"]["synthetic"]["fd"]["value"]
    assert np.isfinite(fd) and fd > 0
    div = m["diversity"]["all"]["synthetic"]["mean"]
    assert 0.0 <= div <= 1.0
    view = m["fidelity"]["view"]
    assert view["kind"] == "categorical" and view["synthetic"]["n"] == 6
    assert 0.0 <= view["heldout"]["accuracy"] <= 1.0
    assert len(m["memorisation"]["cases"]) == 6
    assert m["reconstruction"]["n"] == 2 and np.isfinite(m["reconstruction"]["mean"]["mse"])
    figure = m["montages"]["view=sagittal"]["synthetic"]
    assert (out / figure).is_file()


def test_synthetic_slices_need_2d_real_cases(cohort2d: Path, tmp_path: Path) -> None:
    from gliomagen.evaluation.inputs import resolve

    with pytest.raises(GliomagenError, match="holds 2D slices but the real cases are 3D volumes"):
        resolve(str(cohort2d), "--synthetic", size=(16, 16, 16))
    with pytest.raises(GliomagenError, match="slices are 16x16 but the real slices are 32x32"):
        resolve(str(cohort2d), "--synthetic", size=(32, 32))
    cases = resolve(str(cohort2d), "--synthetic", size=(SIDE, SIDE))
    assert cases.shape == (4, SIDE, SIDE) and len(cases) == 6 and cases.spatial == (SIDE, SIDE)


def test_similarity_in_2d_is_monai_with_spatial_dims_2() -> None:
    from monai.metrics import SSIMMetric
    from monai.metrics.regression import compute_ms_ssim

    torch.manual_seed(0)
    x = torch.rand(3, 4, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    expected = SSIMMetric(spatial_dims=2, data_range=2.0, reduction="none")(x, y).flatten()
    torch.testing.assert_close(ssim(x, y, mask=None), expected)
    w = torch.tensor([0.0448, 0.2856, 0.3001])
    ms = compute_ms_ssim(
        x,
        y,
        spatial_dims=2,
        data_range=2.0,
        kernel_size=7,
        kernel_sigma=1.0,
        weights=(w / w.sum()).tolist(),
    )
    torch.testing.assert_close(ms_ssim(x, y, mask=None), ms.flatten(), atol=1e-5, rtol=1e-5)
    assert float(ssim(x, x).min()) == pytest.approx(1.0) and float(
        ms_ssim(x, x).min()
    ) == pytest.approx(1.0)
    # inside the brain only: a background change outside both brains does not count
    a = torch.full((1, 4, 32, 32), -1.0)
    a[..., 8:24, 8:24] = 0.5
    b = a.clone()
    b[..., :4, :4] = -0.5  # a "brain" speck in the corner of b only
    assert float(mse(a, b, mask=a.amax(1) > -0.98)) == 0.0 and float(mse(a, b)) > 0
    assert float(psnr(a, a + 0.1)) == pytest.approx(10 * np.log10(4 / 0.01), rel=1e-4)


def test_probe_runs_in_2d() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 4, 40, 32) * 2 - 1
    small = to_probe_input(x, 16)
    assert small.shape == (6, 4, 16, 13)
    net, losses = train_probe(small, {}, ProbeOptions(size=16, width=4, steps=3, batch_size=4))
    assert net.spatial_dims == 2 and len(losses) == 3 and all(np.isfinite(losses))
    assert net.features(small).shape == (6, 30 * 4)
    with pytest.raises(ValueError, match=r"ProbeNet expects \[B, C, H, W\]"):
        net.features(torch.zeros(1, 4, 8, 8, 8))
    assert ProbeNet(4, 4, {"flip": 2}, spatial_dims=3).spatial_dims == 3
    blurred = _blur(
        torch.zeros(1, 1, 9, 9).index_put_(
            (torch.tensor([0]), torch.tensor([0]), torch.tensor([4]), torch.tensor([4])),
            torch.tensor(1.0),
        ),
        1.0,
    )
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-5) and blurred[0, 0, 4, 4] < 0.2


class _Tiny2D(torch.nn.Module):
    """A stand-in for a TorchScript InceptionV3: [n, 3, h, w] -> [n, 5] pooled features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


def test_slices_extractor_embeds_each_2d_slice(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(_Tiny2D()), str(path))
    train = CaseSet.from_arrays(np.zeros((2, 4, 16, 16), np.float32))
    ex = build_extractor("slices", train=train, weights=path, slice_size=24)
    x = torch.rand(3, 4, 16, 16) * 2 - 1
    feats = ex(x)
    assert feats.shape == (3, 4 * 5) and ex.info()["dim"] == 20
    # modality c of slice i is embedded on its own: swapping two modalities swaps their features
    swapped = ex(x[:, [1, 0, 2, 3]])
    torch.testing.assert_close(swapped[:, :5], feats[:, 5:10])
    with pytest.raises(GliomagenError, match="--extractor medicalnet: a 3D network"):
        build_extractor("medicalnet", train=train, weights=path)
