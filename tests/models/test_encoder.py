"""The VAE-GAN option: latent encoder, KL, reconstruction terms, config checks."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from gliomagen.config import resolve_config
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.errors import GliomagenError
from gliomagen.models import build_discriminator, build_generator
from gliomagen.models.encoder import LatentEncoder, kl_standard_normal
from gliomagen.training.losses import MicroBatch, StyleGANLoss

SMALL = [
    "model.g_channels=4",
    "model.d_channels=4",
    "model.g_max_channels=8",
    "model.d_max_channels=8",
]
VAE = [
    "model.encoder=true",
    "loss.recon_weight=10",
    "loss.recon_img_weight=10",
    "loss.kl_weight=0.05",
]


def test_kl_matches_torch_distributions() -> None:
    mu, logvar = torch.randn(3, 5), torch.randn(3, 5)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(kl_standard_normal(mu, logvar), ref, atol=1e-5)
    assert torch.allclose(kl_standard_normal(torch.zeros(2, 4), torch.zeros(2, 4)), torch.zeros(2))


@pytest.mark.parametrize("size", [(16, 16), (16, 16, 16)])
def test_encoder_shapes(size: tuple[int, ...]) -> None:
    enc = LatentEncoder(size, z_dim=6, channels=4, max_channels=8)
    mu, logvar = enc(torch.randn(2, 4, *size), torch.rand(2, 4, *size))
    assert mu.shape == logvar.shape == (2, 6)
    assert float(logvar.min()) >= -10.0 and float(logvar.max()) <= 4.0


def test_config_needs_the_pieces_together() -> None:
    with pytest.raises(GliomagenError, match="loss.recon_weight"):
        resolve_config("demo-cpu", overrides=["loss.recon_weight=1"])
    with pytest.raises(GliomagenError, match="model.encoder"):
        resolve_config("demo-cpu", overrides=["model.encoder=true"])
    assert resolve_config("demo-cpu", overrides=VAE).model.encoder


def _setup() -> tuple[StyleGANLoss, MicroBatch, torch.nn.Module]:
    cfg = resolve_config("demo-cpu", overrides=[*SMALL, *VAE, "data.size=[16,16,16]"])
    schema = ConditionSchema([ConditionField("grade", "categorical", categories=["HGG", "LGG"])])
    torch.manual_seed(0)
    G = build_generator(cfg, schema, (16, 16, 16))
    D = build_discriminator(cfg, schema, (16, 16, 16))
    assert G.encoder is not None
    assert any(k.startswith("encoder.") for k in G.state_dict())
    loss = StyleGANLoss(G, D, cfg, None, contextlib.nullcontext, [3])
    labels = torch.zeros(2, 16, 16, 16, dtype=torch.long)
    labels[:, 5:11, 5:11, 5:11] = 2
    labels[:, 7:9, 7:9, 7:9] = 1
    mb = MicroBatch(
        real_img=torch.rand(2, 4, 16, 16, 16) * 2 - 1,
        real_mask=torch.nn.functional.one_hot(labels, 4).movedim(-1, 1).float(),
        real_cat=torch.tensor([[0], [1]]),
        real_cont=torch.zeros(2, 0),
        z=torch.randn(2, G.z_dim),
        gen_cat=torch.tensor([[0], [1]]),
        gen_cont=torch.zeros(2, 0),
        noise_seeds=[1, 2],
    )
    return loss, mb, G


def test_reconstruction_terms_train_the_encoder_and_decrease() -> None:
    loss, mb, G = _setup()
    G.requires_grad_(True)
    opt = torch.optim.Adam(G.parameters(), lr=5e-3)
    first = None
    for _ in range(25):
        opt.zero_grad()
        rec, stats = loss.terms[0].reconstruct(mb, loss)
        rec.backward()
        if first is None:
            first = float(stats["G/recon_ce"])
            assert G.encoder is not None
            assert all(p.grad is not None for p in G.encoder.parameters())
        opt.step()
    assert set(stats) == {"G/recon_ce", "G/recon_dice", "G/recon_l1", "G/kl"}
    assert first is not None and float(stats["G/recon_ce"]) < 0.5 * first


def test_generator_phase_adds_the_reconstruction_stats() -> None:
    loss, mb, G = _setup()
    stats = loss.accumulate_gradients("G", mb, 1.0)
    assert {"G/recon_ce", "G/recon_l1", "G/kl", "G/adv"} <= set(stats)
    assert float(stats["G/kl"]) >= 0.0


@pytest.mark.parametrize("size", [(16, 16), (16, 16, 16)])
def test_latent_start_makes_the_start_grid_depend_on_w(size: tuple[int, ...]) -> None:
    schema = ConditionSchema([ConditionField("grade", "categorical", categories=["HGG", "LGG"])])
    cfg = resolve_config("demo-cpu", overrides=[*SMALL, "model.start=latent"])
    torch.manual_seed(0)
    G = build_generator(cfg, schema, size)
    syn = G.synthesis
    assert syn.start_fc is not None and "synthesis.start_fc.weight" in G.state_dict()
    seen: list[torch.Tensor] = []
    hook = syn.layers[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    ws = torch.randn(2, syn.num_ws, syn.w_dim)
    img, logits = syn(ws, noise_mode="const")
    hook.remove()
    assert img.shape == (2, 4, *size) and logits.shape == (2, 4, *size)
    start = seen[0]  # const + dense(w): differs between the two samples
    assert float((start[0] - start[1]).abs().max()) > 1e-3
    plain = build_generator(resolve_config("demo-cpu", overrides=SMALL), schema, size)
    assert plain.synthesis.start_fc is None


def test_class_balanced_image_l1_weighs_each_class_equally() -> None:
    loss, mb, _ = _setup()
    img = mb.real_img.clone()
    core = mb.real_mask[:, 1] > 0  # 8 voxels per case
    img[:, :, core[0]] += 1.0  # an error of 1 in the core only, every modality
    term = loss.terms[0]
    plain = term.image_l1(img, mb.real_img, mb.real_mask)
    assert torch.allclose(plain, torch.full((2,), 8 / 16**3), atol=1e-6)
    term.balanced = True
    balanced = term.image_l1(img, mb.real_img, mb.real_mask)
    # three classes present (background, core, edema): the core's mean error 1 counts a third
    assert torch.allclose(balanced, torch.full((2,), 1 / 3), atol=1e-6)
    assert float(term.image_l1(mb.real_img, mb.real_img, mb.real_mask).abs().max()) == 0.0
