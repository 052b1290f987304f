"""The tumour-crop discriminator and the straight-through mask seen by D."""

from __future__ import annotations

import contextlib

import pytest
import torch

from gliomagen.config import resolve_config
from gliomagen.errors import GliomagenError
from gliomagen.models import build_discriminator, build_generator
from gliomagen.models.discriminator import Discriminator, tumour_centred_crop
from gliomagen.training.losses import MicroBatch, StyleGANLoss, total_score


def _blob(n: int, centre: tuple[int, int, int], r: int = 2, side: int = 32) -> torch.Tensor:
    t = torch.zeros(n, side, side, side)
    z, y, x = centre
    t[:, z - r : z + r, y - r : y + r, x - r : x + r] = 1.0
    return t


def test_crop_is_centred_on_the_tumour_and_clamped() -> None:
    vol = torch.arange(32**3, dtype=torch.float32).reshape(1, 1, 32, 32, 32)
    crop = tumour_centred_crop(vol, _blob(1, (16, 10, 20)), 16)
    assert crop.shape == (1, 1, 16, 16, 16)
    # centroid (15.5, 9.5, 19.5) -> start round(c - 7.5) = (8, 2, 12)
    assert crop[0, 0, 0, 0, 0].item() == vol[0, 0, 8, 2, 12].item()
    # a tumour at the corner: the crop is clamped inside the grid
    corner = tumour_centred_crop(vol, _blob(1, (3, 3, 29)), 16)
    assert corner[0, 0, 0, 0, 0].item() == vol[0, 0, 0, 0, 16].item()


def test_crop_without_tumour_takes_the_grid_centre() -> None:
    vol = torch.randn(2, 3, 32, 32, 32)
    tumour = torch.zeros(2, 32, 32, 32)
    tumour[1, 0, 0, 0] = 0.5  # half a voxel of tumour is no tumour
    crop = tumour_centred_crop(vol, tumour, 16)
    assert torch.equal(crop, vol[:, :, 8:24, 8:24, 8:24])


def test_crop_rejects_a_side_larger_than_the_grid() -> None:
    with pytest.raises(ValueError, match="exceeds the grid"):
        tumour_centred_crop(torch.zeros(1, 1, 16, 16, 16), torch.zeros(1, 16, 16, 16), 32)


def _d(crop: int) -> Discriminator:
    return Discriminator(
        size=(32, 32, 32),
        cat_sizes=[3],
        n_cont=0,
        channels=4,
        max_channels=8,
        aux_classifier=True,
        tumour_crop=crop,
    )


def test_local_discriminator_judges_the_crop() -> None:
    torch.manual_seed(0)
    D = _d(16)
    img = torch.randn(2, 4, 32, 32, 32)
    mask = torch.zeros(2, 4, 32, 32, 32)
    mask[:, 0] = 1.0
    mask[:, 0, 4:8, 4:8, 4:8], mask[:, 3, 4:8, 4:8, 4:8] = 0.0, 1.0
    out = D(img, mask, torch.tensor([[0], [1]]), torch.zeros(2, 0))
    assert out.local is not None
    assert out.local.score.shape == (2,) and out.local.cat_logits[0].shape == (2, 2)
    # the local score depends only on the crop: changing a voxel far from the tumour leaves it
    img2 = img.clone()
    img2[:, :, 30, 30, 30] += 5.0
    out2 = D(img2, mask, torch.tensor([[0], [1]]), torch.zeros(2, 0))
    assert torch.allclose(out.local.score, out2.local.score)
    assert not torch.allclose(out.score, out2.score)
    # ...and changing a voxel inside the crop changes it
    img3 = img.clone()
    img3[:, :, 5, 5, 5] += 5.0
    out3 = D(img3, mask, torch.tensor([[0], [1]]), torch.zeros(2, 0))
    assert not torch.allclose(out.local.score, out3.local.score)
    assert torch.allclose(total_score(out), out.score + out.local.score)


def test_tumour_crop_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="tumour_crop"):
        _d(8)
    with pytest.raises(GliomagenError, match="model.tumour_crop"):
        resolve_config("demo-cpu", overrides=["model.tumour_crop=8"])
    with pytest.raises(GliomagenError, match="model.tumour_crop"):
        resolve_config("demo-cpu", overrides=["model.tumour_crop=64"])  # grid is 32^3


def _schema():  # type: ignore[no-untyped-def]
    from gliomagen.data.conditions import ConditionField, ConditionSchema

    return ConditionSchema([ConditionField("grade", "categorical", categories=["HGG", "LGG"])])


def _loss(overrides: list[str]) -> tuple[StyleGANLoss, MicroBatch]:
    cfg = resolve_config(
        "demo-cpu",
        overrides=[
            "model.g_channels=4",
            "model.d_channels=4",
            "model.g_max_channels=8",
            "model.d_max_channels=8",
            *overrides,
        ],
    )
    schema = _schema()
    torch.manual_seed(0)
    G = build_generator(cfg, schema, (32, 32, 32))
    D = build_discriminator(cfg, schema, (32, 32, 32))
    loss = StyleGANLoss(G, D, cfg, None, contextlib.nullcontext, [3])
    real_mask = torch.zeros(2, 4, 32, 32, 32)
    real_mask[:, 0] = 1.0
    mb = MicroBatch(
        real_img=torch.rand(2, 4, 32, 32, 32) * 2 - 1,
        real_mask=real_mask,
        real_cat=torch.tensor([[0], [1]]),
        real_cont=torch.zeros(2, 0),
        z=torch.randn(2, G.z_dim),
        gen_cat=torch.tensor([[0], [1]]),
        gen_cont=torch.zeros(2, 0),
        noise_seeds=[1, 2],
    )
    return loss, mb


def test_losses_add_the_tumour_terms() -> None:
    loss, mb = _loss(["model.tumour_crop=16"])
    stats_d = loss.accumulate_gradients("D", mb, 1.0)
    assert {"D/real_tumour", "D/fake_tumour"} <= set(stats_d)
    # the D loss terms are sums of the whole-volume and the crop terms (lsgan: 1/2 (s-1)^2, 1/2 s^2)
    assert stats_d["D/real"].item() >= stats_d["D/real_tumour"].item() - 1e-6
    assert all(p.grad is not None for p in loss.D_reg.local.parameters() if p.requires_grad)
    stats_g = loss.accumulate_gradients("G", mb, 1.0)
    assert "G/adv_tumour" in stats_g and stats_g["G/adv"].item() > stats_g["G/adv_tumour"].item()


def test_straight_through_mask_is_one_hot_with_softmax_gradient() -> None:
    loss, mb = _loss(["model.d_mask=straight_through"])
    _, probs, _ = loss.run_G(mb)
    assert torch.allclose(probs.sum(1), torch.ones_like(probs[:, 0]), atol=1e-6)
    assert float((probs - probs.round()).abs().max()) < 1e-6  # one-hot up to rounding
    probs[:, 1].sum().backward()
    grads = [p.grad for p in loss.synthesis.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    soft, _ = _loss([])
    _, p_soft, _ = soft.run_G(mb)
    assert float((p_soft - p_soft.round()).abs().max()) > 0.1
