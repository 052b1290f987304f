"""``model.latent_prior=fitted``: a Gaussian fitted to the encoded training cases, sampled by G_ema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gliomagen.config import resolve_config
from gliomagen.errors import GliomagenError
from gliomagen.models import build_generator
from gliomagen.models.mapping import MappingNetwork
from gliomagen.training import load_checkpoint, load_generator, train
from gliomagen.training.batches import TrainingData
from gliomagen.training.latent_prior import JITTER, encode_cases, gaussian_of_posterior

VAE = {"encoder": True, "latent_prior": "fitted"}
VAE_LOSS = {"recon_weight": 1.0, "recon_img_weight": 1.0, "kl_weight": 0.02}


def test_gaussian_of_posterior_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(7, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 2.0]])
    logvar = rng.normal(-2.0, 0.3, size=(7, 3))
    mean, tril = gaussian_of_posterior(torch.tensor(mu), torch.tensor(logvar))
    want_cov = np.cov(mu.T, bias=True) + np.diag(np.exp(logvar).mean(0)) + JITTER * np.eye(3)
    np.testing.assert_allclose(mean.numpy(), mu.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose((tril @ tril.T).numpy(), want_cov, rtol=1e-4, atol=1e-6)
    assert torch.equal(tril, torch.tril(tril))
    # one case: its own posterior
    m1, t1 = gaussian_of_posterior(torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, np.log(4.0)]]))
    np.testing.assert_allclose(m1.numpy(), [1.0, -2.0])
    np.testing.assert_allclose(t1.diagonal().numpy(), np.sqrt([1.0 + JITTER, 4.0 + JITTER]), rtol=1e-6)
    with pytest.raises(ValueError, match="z_dim"):
        gaussian_of_posterior(torch.zeros(0, 3), torch.zeros(0, 3))


def test_mapping_moves_standard_normal_draws_onto_the_prior() -> None:
    torch.manual_seed(0)
    m = MappingNetwork(4, 8, cat_sizes=[3], n_cont=0, embed_dim=4, num_layers=2)
    z, cat, cont = torch.randn(5, 4), torch.tensor([[0], [1], [2], [0], [1]]), torch.zeros(5, 0)
    assert not m.prior_is_fitted
    assert torch.equal(m(z, cat, cont), m(z, cat, cont, prior=False))  # identity until fitted
    mean = torch.tensor([1.0, -1.0, 0.5, 2.0])
    tril = torch.tensor([[1.0, 0, 0, 0], [0.5, 0.2, 0, 0], [0, 0, 3.0, 0], [0.1, 0.1, 0.1, 0.1]])
    m.set_prior(mean, tril)
    assert m.prior_is_fitted
    torch.testing.assert_close(m(z, cat, cont), m(mean + z @ tril.T, cat, cont, prior=False))
    with pytest.raises(ValueError, match="latent prior must be"):
        m.set_prior(torch.zeros(3), torch.eye(3))
    # a state dict written before the prior existed loads as N(0, I)
    old = {k: v for k, v in m.state_dict().items() if k not in MappingNetwork.PRIOR_BUFFERS}
    m.load_state_dict(old)
    assert not m.prior_is_fitted
    m.set_prior(mean, tril)
    m.reset_prior()
    assert not m.prior_is_fitted


def test_config_needs_the_encoder() -> None:
    with pytest.raises(GliomagenError, match="model.latent_prior"):
        resolve_config("demo-cpu", overrides=["model.latent_prior=fitted"])
    with pytest.raises(GliomagenError, match="model.latent_prior"):
        resolve_config("demo-cpu", overrides=["model.latent_prior=gaussian"])


def test_training_fits_g_ema_and_keeps_g_on_the_standard_normal(
    tmp_path: Path, fake_store, tiny_cfg  # noqa: ANN001
) -> None:
    store = fake_store(n=6)
    cfg = tiny_cfg(model=VAE, loss=VAE_LOSS, train={"steps": 3, "ema_half_life_images": 8.0})
    ckpt_path = train(cfg, store, tmp_path / "run", progress=False)
    ckpt = load_checkpoint(ckpt_path)
    assert torch.equal(ckpt["G"]["mapping.z_mean"], torch.zeros(8))  # G samples N(0, I)
    assert torch.equal(ckpt["G"]["mapping.z_tril"], torch.eye(8))
    G, *_ = load_generator(ckpt_path)
    assert G.mapping.prior_is_fitted
    # the saved prior is the fit of G_ema's own encoder on the training cases
    mu, logvar = encode_cases(G, TrainingData(store, cfg), torch.device("cpu"))
    mean, tril = gaussian_of_posterior(mu, logvar)
    torch.testing.assert_close(ckpt["G_ema"]["mapping.z_mean"], mean)
    torch.testing.assert_close(ckpt["G_ema"]["mapping.z_tril"], tril)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "latent prior fitted to 6 encoded cases" in log


def test_resume_rewrites_config_yaml_and_logs_the_changes(
    tmp_path: Path, fake_store, tiny_cfg  # noqa: ANN001
) -> None:
    store = fake_store(n=4)
    run = tmp_path / "r"
    train(tiny_cfg(model=VAE, loss=VAE_LOSS, train={"steps": 1}), store, run, progress=False)
    changed = tiny_cfg(model=VAE, loss={**VAE_LOSS, "kl_weight": 0.2}, train={"steps": 2})
    train(changed, store, run, resume=True, progress=False)
    assert "kl_weight: 0.2" in (run / "config.yaml").read_text()
    log = (run / "log.txt").read_text()
    assert "configuration changed on resume: loss.kl_weight 0.02 -> 0.2; train.steps 1 -> 2" in log


def test_latent_prior_every_moves_g_fakes_onto_the_fit(
    tmp_path: Path, fake_store, tiny_cfg  # noqa: ANN001
) -> None:
    with pytest.raises(GliomagenError, match="train.latent_prior_every"):
        resolve_config("demo-cpu", overrides=["train.latent_prior_every=10"])
    store = fake_store(n=6)
    cfg = tiny_cfg(model=VAE, loss=VAE_LOSS, train={"steps": 3, "latent_prior_every": 2})
    ckpt = load_checkpoint(train(cfg, store, tmp_path / "run", progress=False))
    # G refitted at step 2 (from its own encoder as it was then): no longer N(0, I)
    assert not torch.equal(ckpt["G"]["mapping.z_tril"], torch.eye(8))
    assert not torch.equal(ckpt["G"]["mapping.z_tril"], ckpt["G_ema"]["mapping.z_tril"])


def test_resume_may_switch_the_latent_prior_on(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = fake_store(n=4)
    run = tmp_path / "r"
    plain = {"encoder": True}
    train(tiny_cfg(model=plain, loss=VAE_LOSS, train={"steps": 1}), store, run, progress=False)
    ckpt = load_checkpoint(
        train(tiny_cfg(model=VAE, loss=VAE_LOSS, train={"steps": 2}), store, run, resume=True, progress=False)
    )
    assert not torch.equal(ckpt["G_ema"]["mapping.z_tril"], torch.eye(8))
    assert "model.latent_prior 'normal' -> 'fitted'" in (run / "log.txt").read_text()


def test_kl_warmup_starts_from_zero(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = fake_store(n=4)

    def g_after_one_step(kl: float, warmup: int, name: str) -> dict[str, torch.Tensor]:
        loss = {**VAE_LOSS, "kl_weight": kl, "kl_warmup_steps": warmup}
        cfg = tiny_cfg(model={"encoder": True}, loss=loss, train={"steps": 1})
        return load_checkpoint(train(cfg, store, tmp_path / name, progress=False))["G"]

    # step 0 of a warm-up: the KL weight is 0 whatever its final value
    a, b = g_after_one_step(0.02, 1000, "a"), g_after_one_step(5.0, 1000, "b")
    c = g_after_one_step(5.0, 0, "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["encoder.mu.weight"], c["encoder.mu.weight"])


def test_a_hierarchical_encoder_reads_the_cases_low_view_built_once(fake_store, tiny_cfg) -> None:  # noqa: ANN001
    """The refits of a hierarchical model's prior encode the cached low-resolution view: the
    posteriors of encoding the full-grid cases, and the store is read once, not per refit."""
    cfg = tiny_cfg(model={**VAE, "hierarchical": True, "low_res": 16, "sub_volume": 16}, loss=VAE_LOSS)
    store = fake_store(n=5, size=(32, 32, 32))
    data = TrainingData(store, cfg)
    torch.manual_seed(0)
    G = build_generator(cfg, data.schema, data.size).eval()
    assert G.encoder is not None and G.encoder.size == (16, 16, 16)
    reads = {"n": 0}
    get = type(store).__getitem__

    def counting(self, i):  # noqa: ANN001, ANN202
        reads["n"] += 1
        return get(self, i)

    type(store).__getitem__ = counting
    try:
        mu, logvar = encode_cases(G, data, torch.device("cpu"), batch=2)
        first = reads["n"]
        mu2, _ = encode_cases(G, data, torch.device("cpu"), batch=3)
    finally:
        type(store).__getitem__ = get
    assert first == 5 and reads["n"] == 5  # built once, then kept
    with torch.no_grad():  # the encoder on the full grid (it block-averages itself)
        img, onehot = data.collate_real([store[int(i)] for i in data.train_index], torch.device("cpu"))
        full_mu, full_logvar = G.encoder(img, onehot)
    torch.testing.assert_close(mu, full_mu)
    torch.testing.assert_close(logvar, full_logvar)
    torch.testing.assert_close(mu2, mu)
