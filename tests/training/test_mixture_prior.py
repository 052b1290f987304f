"""``model.latent_prior_components``: a mixture of Gaussians with a shared covariance as the prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gliomagen.config import resolve_config
from gliomagen.errors import GliomagenError
from gliomagen.models.mapping import MappingNetwork
from gliomagen.training import load_checkpoint, load_generator, train
from gliomagen.training.latent_prior import JITTER, gaussian_of_posterior, mixture_of_posterior

VAE = {"encoder": True, "latent_prior": "fitted"}
VAE_LOSS = {"recon_weight": 1.0, "recon_img_weight": 1.0, "kl_weight": 0.02}


def _two_clusters(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` posterior means in two tight clusters at x = -3 (a quarter) and x = +3, in 3-D."""
    rng = np.random.default_rng(seed)
    centre = np.where(np.arange(n)[:, None] < n // 4, [-3.0, 0.0, 0.0], [3.0, 0.0, 0.0])
    mu = centre + rng.normal(0.0, 0.2, size=(n, 3))
    return torch.tensor(mu), torch.full((n, 3), float(np.log(0.01)))


def test_mixture_finds_the_clusters_and_its_weights() -> None:
    mu, logvar = _two_clusters()
    mean, tril, offsets, weights = mixture_of_posterior(mu, logvar, 2)
    order = offsets[:, 0].argsort()
    means = (mean + offsets)[order]
    np.testing.assert_allclose(means[:, 0].numpy(), [-3.0, 3.0], atol=0.15)
    np.testing.assert_allclose(weights[order].numpy(), [0.25, 0.75], atol=1e-6)
    torch.testing.assert_close(mean, (weights[:, None] * (mean + offsets)).sum(0))
    # the shared covariance is the within-cluster spread (0.2^2) plus the posterior variance
    cov = tril.double() @ tril.double().T
    np.testing.assert_allclose(cov.diagonal().numpy(), 0.04 + 0.01 + JITTER, rtol=0.35)
    assert float(cov.diagonal().max()) < 0.1  # not the 9+ of one Gaussian over both clusters
    # one component is the single Gaussian; more components than distinct cases are capped
    m1, t1, o1, w1 = mixture_of_posterior(mu, logvar, 1)
    g_mean, g_tril = gaussian_of_posterior(mu, logvar)
    assert torch.equal(m1, g_mean) and torch.equal(t1, g_tril)
    assert torch.equal(o1, torch.zeros(1, 3)) and torch.equal(w1, torch.ones(1))
    assert len(mixture_of_posterior(mu[:3], logvar[:3], 16)[3]) == 3


def test_mapping_draws_follow_the_mixture() -> None:
    torch.manual_seed(0)
    m = MappingNetwork(3, 8, cat_sizes=[2], n_cont=0, embed_dim=4, num_layers=2)
    mu, logvar = _two_clusters()
    m.set_prior(*mixture_of_posterior(mu, logvar, 2))
    assert m.prior_is_fitted and m.prior_components == 2
    z = m.apply_prior(torch.randn(20000, 3, generator=torch.Generator().manual_seed(1)))
    left = z[:, 0] < 0
    assert float(left.float().mean()) == pytest.approx(0.25, abs=0.01)  # the weights
    assert float(z[:, 0].abs().min()) > 1.5  # nothing in between the clusters
    # within a component the draw is Gaussian with the shared covariance (the first coordinate
    # too, though it also chose the component)
    for side in (left, ~left):
        zs = z[side] - z[side].mean(0)
        np.testing.assert_allclose(zs.std(0).numpy(), [0.22] * 3, rtol=0.2)
    # a seed gives one sample: deterministic, and w follows the prior's draw
    zz = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    cat, cont = torch.zeros(4, 1, dtype=torch.long), torch.zeros(4, 0)
    torch.testing.assert_close(m(zz, cat, cont), m(m.apply_prior(zz), cat, cont, prior=False))
    m.reset_prior()
    assert not m.prior_is_fitted and m.prior_components == 1
    with pytest.raises(ValueError, match="weights must be positive and sum to 1"):
        m.set_prior(torch.zeros(3), torch.eye(3), torch.zeros(2, 3), torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match=r"offsets must be \[K, 3\]"):
        m.set_prior(torch.zeros(3), torch.eye(3), torch.zeros(2, 4), torch.tensor([0.5, 0.5]))


def test_state_dicts_carry_the_number_of_components() -> None:
    a = MappingNetwork(3, 8, cat_sizes=[2], n_cont=0, embed_dim=4, num_layers=2)
    a.set_prior(*mixture_of_posterior(*_two_clusters(), 2))
    b = MappingNetwork(3, 8, cat_sizes=[2], n_cont=0, embed_dim=4, num_layers=2)
    b.load_state_dict(a.state_dict())  # b was built with one component
    assert b.prior_components == 2
    z = torch.randn(6, 3)
    torch.testing.assert_close(a.apply_prior(z), b.apply_prior(z))
    # a state dict from before mixtures: one component, the single Gaussian
    old = {k: v for k, v in a.state_dict().items() if k not in ("z_offsets", "z_weights")}
    b.load_state_dict(old)
    assert b.prior_components == 1
    torch.testing.assert_close(b.apply_prior(z), a.z_mean + z @ a.z_tril.T)


def test_config_errors() -> None:
    with pytest.raises(GliomagenError, match="model.latent_prior_components=0: must be >= 1"):
        resolve_config("demo-cpu", overrides=["model.latent_prior_components=0"])
    with pytest.raises(GliomagenError, match="model.latent_prior_components=4: a mixture is a fitted"):
        resolve_config("demo-cpu", overrides=["model.latent_prior_components=4"])


def test_training_saves_a_mixture_and_generation_uses_it(
    tmp_path: Path, fake_store, tiny_cfg  # noqa: ANN001
) -> None:
    store = fake_store(n=6)
    model = {**VAE, "latent_prior_components": 3}
    cfg = tiny_cfg(model=model, loss=VAE_LOSS, train={"steps": 2, "latent_prior_every": 1})
    ckpt_path = train(cfg, store, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(ckpt_path)
    for net in ("G", "G_ema"):  # G's adversarial draws came from its own mixture too
        assert ckpt[net]["mapping.z_offsets"].shape == (3, 8)
        assert float(ckpt[net]["mapping.z_weights"].sum()) == pytest.approx(1.0)
    G, *_ = load_generator(ckpt_path)
    assert G.mapping.prior_components == 3
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "3 components (smallest weight" in log
