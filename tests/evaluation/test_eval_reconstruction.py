"""Reconstruction audit: projecting a generator's own output into W+ recovers it; clear errors otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.reconstruction import _mean_w, reconstruct
from gliomagen.evaluation.similarity import mse, ssim

config_mod = pytest.importorskip("gliomagen.config")
models = pytest.importorskip("gliomagen.models")
conditions = pytest.importorskip("gliomagen.data.conditions")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    cfg = config_mod.preset("demo-cpu")
    m = cfg.model
    m.z_dim, m.w_dim, m.mapping_layers, m.cond_embed_dim, m.g_channels, m.g_max_channels = (
        8,
        16,
        2,
        4,
        4,
        16,
    )
    schema = conditions.ConditionSchema(
        [conditions.ConditionField("cohort", "categorical", categories=["GLI", "SSA"])]
    )
    torch.manual_seed(0)
    G = models.build_generator(cfg, schema, (16, 16, 16), 4).eval()
    path = tmp_path_factory.mktemp("ckpt") / "step-1.pt"
    torch.save(
        {"format_version": 1, "step": 1, "config": config_mod.to_dict(cfg), "schema": schema.to_dict(),
         "size": [16, 16, 16], "n_modalities": 4, "G": G.state_dict(), "G_ema": G.state_dict(), "store_meta": {}},
        path,
    )  # fmt: skip
    return path, G


def test_projection_recovers_generated_cases(tiny_checkpoint: tuple[Path, torch.nn.Module]) -> None:
    path, G = tiny_checkpoint
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1))
    cat = torch.tensor([[0], [1]])
    with torch.no_grad():
        imgs, logits = G(z, cat, torch.zeros(2, 0), noise_mode="const")
    real = CaseSet.from_arrays(
        imgs.numpy(), logits.argmax(1).numpy().astype(np.uint8), case_ids=["A", "B"],
        labels=[{"cohort": "GLI"}, {"cohort": "SSA"}], name="generated",
    )  # fmt: skip
    out = reconstruct(path, real, n_cases=2, steps=80, lr=0.05, seed=0)
    assert (
        out["n"] == 2
        and out["space"] == "W+"
        and [r["case_id"] for r in out["cases"]] == ["A", "B"]
    )
    for i, row in enumerate(out["cases"]):
        # the starting point: the mean w of the case's condition
        w0 = _mean_w(G, cat[i : i + 1], torch.zeros(1, 0), seed=0)
        with torch.no_grad():
            start, _ = G.synthesis(w0.unsqueeze(1).repeat(1, G.num_ws, 1), noise_mode="const")
        start_mse = float(mse(start, imgs[i : i + 1]))
        assert row["mse"] < 0.5 * start_mse
        assert row["ssim"] > float(ssim(start, imgs[i : i + 1]))
        assert row["psnr"] == pytest.approx(10 * np.log10(4 / row["mse"]), rel=1e-4)
    assert out["mean"]["ssim"] == pytest.approx(np.mean([r["ssim"] for r in out["cases"]]))


def test_reconstruction_errors(
    tiny_checkpoint: tuple[Path, torch.nn.Module], tmp_path: Path
) -> None:
    path, _ = tiny_checkpoint
    wrong = CaseSet.from_arrays(np.zeros((2, 4, 24, 24, 24), np.float32), name="wrong")
    with pytest.raises(GliomagenError, match=r"generator makes 4 x \[16, 16, 16\] volumes"):
        reconstruct(path, wrong)
    with pytest.raises(GliomagenError, match="not found"):
        reconstruct(tmp_path / "missing.pt", wrong)
