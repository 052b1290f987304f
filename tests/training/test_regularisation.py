"""Regularisation options: dropout in D, weight decay per network, spectral norm, R1 gamma, GP weight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gliomagen.config import preset, resolve_config
from gliomagen.errors import GliomagenError
from gliomagen.models import build_discriminator
from gliomagen.training import train
from gliomagen.training.loop import Trainer
from gliomagen.training.losses import MicroBatch, StyleGANLoss, gradient_penalty, r1_penalty


def _trainer(cfg: Any, store: Any, run: Path, resume: bool = False) -> Trainer:
    return Trainer(cfg, store, run, resume=resume, max_minutes=None, callback=None, progress=False)


def _d_inputs(n: int = 2, size: int = 16) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    img = torch.rand(n, 4, size, size, size, generator=g) * 2 - 1
    mask = torch.softmax(torch.randn(n, 4, size, size, size, generator=g), 1)
    return img, mask, torch.zeros(n, 2, dtype=torch.long), torch.zeros(n, 1)


def test_preset_defaults_and_ranges() -> None:
    o, s, d = preset("origin"), preset("small-data"), preset("demo-cpu")
    # origin: the report's mitigations (dropout and L2 in D/G, validation-based early stopping)
    assert (o.model.d_dropout, o.train.weight_decay_g, o.train.weight_decay_d) == (0.2, 0.01, 0.01)
    assert (o.loss.r1_gamma, o.model.spectral_norm, o.train.val_every) == (0.0, False, 2000)
    # small-data: StyleGAN2-ADA's lazy R1 does the regularising; no dropout or decay
    assert (s.model.d_dropout, s.train.weight_decay_g, s.train.weight_decay_d) == (0.0, 0.0, 0.0)
    assert (s.loss.r1_gamma, s.loss.r1_interval, s.train.val_every) == (1.0, 16, 2000)
    assert (d.model.d_dropout, d.train.weight_decay_d, d.train.val_every, d.loss.r1_gamma) == (
        0.0, 0.0, 0, 0.0,
    )  # fmt: skip
    assert s.loss.gp_weight == 10.0 and s.train.val_metric == "fd" and s.train.val_patience == 10
    for bad, msg in [
        ("model.d_dropout=1.0", "model.d_dropout=1.0: must be in [0, 1)"),
        ("train.weight_decay_g=-0.1", "train.weight_decay_g=-0.1: must be >= 0"),
        ("train.val_samples=1", "train.val_samples=1: must be >= 2"),
        ("train.val_metric=psnr", "train.val_metric='psnr': expected one of 'fd', 'kid'"),
    ]:
        with pytest.raises(GliomagenError) as err:
            resolve_config("demo-cpu", overrides=[bad])
        assert msg in str(err.value)
    with pytest.raises(
        GliomagenError, match="memorisation_threshold=80: must be <= train.val_samples=64"
    ):
        resolve_config("small-data", overrides=["train.memorisation_threshold=80"])


def test_dropout_in_d_is_active_in_train_mode_only(fake_store) -> None:  # noqa: ANN001
    schema = fake_store(n=2).schema
    cfg = preset("demo-cpu")
    cfg.model.d_channels, cfg.model.d_max_channels, cfg.model.d_dropout = 4, 8, 0.5
    D = build_discriminator(cfg, schema, (16, 16, 16)).requires_grad_(False)
    assert [m.p for m in D.modules() if isinstance(m, nn.Dropout)] == [0.5]
    x = _d_inputs()
    D.train()
    a, b = D(*x).score, D(*x).score
    assert float((a - b).abs().max()) > 1e-4  # two dropout masks, two scores
    D.eval()
    c, e = D(*x).score, D(*x).score
    torch.testing.assert_close(c, e, rtol=0, atol=0)
    cfg.model.d_dropout = 0.0
    D0 = build_discriminator(cfg, schema, (16, 16, 16)).train().requires_grad_(False)
    assert not any(isinstance(m, nn.Dropout) for m in D0.modules())
    torch.testing.assert_close(D0(*x).score, D0(*x).score, rtol=0, atol=0)


def test_weight_decay_shrinks_weights_with_zero_gradient(
    tmp_path: Path, fake_store, tiny_cfg
) -> None:  # noqa: ANN001
    """AdamW is decoupled: with a zero gradient Adam's step is 0 and p becomes p * (1 - lr * wd);
    D's lr carries the lazy-R1 factor interval / (interval + 1)."""
    cfg = tiny_cfg(
        train={"lr_g": 0.01, "lr_d": 0.02, "weight_decay_g": 0.5, "weight_decay_d": 0.25},
        loss={"r1_gamma": 1.0, "r1_interval": 4},
    )
    tr = _trainer(cfg, fake_store(n=4), tmp_path / "a")
    for net, opt, factor in (
        (tr.G, tr.opt_G, 1 - 0.01 * 0.5),
        (tr.D, tr.opt_D, 1 - 0.02 * 0.8 * 0.25),
    ):
        before = [p.detach().clone() for p in net.parameters()]
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        for p, p0 in zip(net.parameters(), before, strict=True):
            torch.testing.assert_close(p.detach(), p0 * factor, rtol=1e-6, atol=1e-7)
    # weight decay 0 is plain Adam: a zero gradient leaves the weights alone
    tr0 = _trainer(tiny_cfg(), fake_store(n=4), tmp_path / "b")
    w0 = [p.detach().clone() for p in tr0.G.parameters()]
    for p in tr0.G.parameters():
        p.grad = torch.zeros_like(p)
    tr0.opt_G.step()
    assert all(torch.equal(p, q) for p, q in zip(tr0.G.parameters(), w0, strict=True))


def test_weight_decay_of_a_resumed_run_is_the_configured_one(
    tmp_path: Path, fake_store, tiny_cfg
) -> None:  # noqa: ANN001
    store = fake_store(n=4)
    train(tiny_cfg(train={"steps": 1}), store, tmp_path, progress=False)
    tr = _trainer(
        tiny_cfg(train={"steps": 2, "weight_decay_g": 0.3, "weight_decay_d": 0.1}),
        store,
        tmp_path,
        resume=True,
    )
    assert tr.step == 1
    assert [g["weight_decay"] for g in tr.opt_G.param_groups] == [0.3]
    assert [g["weight_decay"] for g in tr.opt_D.param_groups] == [0.1]


def test_spectral_norm_bounds_the_top_singular_value(fake_store) -> None:  # noqa: ANN001
    schema = fake_store(n=2).schema
    cfg = preset("demo-cpu")
    cfg.model.d_channels, cfg.model.d_max_channels = 4, 8
    sigmas = {}
    for sn in (True, False):
        cfg.model.spectral_norm = sn
        torch.manual_seed(0)
        D = build_discriminator(cfg, schema, (16, 16, 16)).train()
        with torch.no_grad():
            for _ in range(30):  # one power iteration per training-mode forward
                D(*_d_inputs())
        layers = [m for m in D.modules() if hasattr(m, "weight_gain")]
        assert parametrize.is_parametrized(layers[0]) is sn
        sigmas[sn] = [
            float(torch.linalg.matrix_norm(m.weight.detach().flatten(1) * m.weight_gain, ord=2))
            for m in layers
        ]
    assert len(sigmas[True]) >= 8
    assert all(s == pytest.approx(1.0, abs=0.05) for s in sigmas[True])
    assert max(abs(s - 1.0) for s in sigmas[False]) > 0.3  # equalised-lr weights are not bounded


def _loss_setup(cfg: Any, store: Any, run: Path) -> tuple[Trainer, MicroBatch]:
    tr = _trainer(cfg, store, run)
    real = tr.data.collate_real([store[i] for i in range(2)], torch.device("cpu"))
    g = torch.Generator().manual_seed(3)
    mb = MicroBatch(
        real_img=real[0], real_mask=real[1], real_cat=tr.data.cat[:2], real_cont=tr.data.cont[:2],
        z=torch.randn(2, cfg.model.z_dim, generator=g), gen_cat=tr.data.cat[2:4],
        gen_cont=tr.data.cont[2:4], noise_seeds=[5, 6], gp_alpha=torch.tensor([0.25, 0.75]),
    )  # fmt: skip
    return tr, mb


def _d_grads(
    tr: Trainer, cfg: Any, mb: MicroBatch, do_r1: bool
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    loss = StyleGANLoss(tr.G, tr.D, cfg, None, tr.loss.autocast, tr.loss.cat_sizes)
    tr.D.zero_grad(set_to_none=False)
    tr.D.requires_grad_(True)
    stats = loss.accumulate_gradients("D", mb, 1.0, do_r1)
    return [p.grad.clone() for p in tr.D.parameters()], stats


def _penalty_grads(tr: Trainer, term: Any) -> list[torch.Tensor]:
    tr.D.zero_grad(set_to_none=False)
    term.backward()
    return [p.grad.clone() for p in tr.D.parameters()]


def test_r1_adds_gamma_over_2_times_interval_times_the_penalty(
    tmp_path: Path, fake_store, tiny_cfg
) -> None:  # noqa: ANN001
    store = fake_store(n=4)
    cfg = tiny_cfg(loss={"kind": "nonsaturating", "r1_gamma": 2.0, "r1_interval": 4})
    tr, mb = _loss_setup(cfg, store, tmp_path)
    base, _ = _d_grads(tr, cfg, mb, do_r1=False)
    with_r1, stats = _d_grads(tr, cfg, mb, do_r1=True)
    # the penalty by hand: ||grad_x D(x_real)||^2 per sample, over images and mask
    x, m = mb.real_img.clone().requires_grad_(True), mb.real_mask.clone().requires_grad_(True)
    r1 = r1_penalty(tr.D(x, m, mb.real_cat, mb.real_cont).score, [x, m])
    assert float(stats["D/r1"]) == pytest.approx(float(r1.detach().sum()), rel=1e-4)
    assert float(r1.detach().min()) > 0
    expected = _penalty_grads(tr, (r1 * (2.0 / 2) * 4).mean())
    for a, b, e in zip(with_r1, base, expected, strict=True):
        torch.testing.assert_close(a - b, e, rtol=1e-3, atol=1e-5)
    # three times the gamma, three times the penalty's contribution to D's gradient
    cfg.loss.r1_gamma = 6.0
    with_r1_x3, _ = _d_grads(tr, cfg, mb, do_r1=True)
    diff = torch.cat([(a - b).flatten() for a, b in zip(with_r1, base, strict=True)])
    diff3 = torch.cat([(a - b).flatten() for a, b in zip(with_r1_x3, base, strict=True)])
    assert float(diff.norm()) > 1e-4
    torch.testing.assert_close(diff3, 3 * diff, rtol=1e-3, atol=1e-5)


def test_gradient_penalty_is_added_with_its_weight(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = fake_store(n=4)
    cfg = tiny_cfg(loss={"kind": "wgan-gp", "gp_weight": 0.0, "r1_gamma": 0.0})
    tr, mb = _loss_setup(cfg, store, tmp_path)
    base, stats0 = _d_grads(tr, cfg, mb, do_r1=False)
    assert "D/gp" not in stats0
    cfg.loss.gp_weight = 10.0
    with_gp, stats = _d_grads(tr, cfg, mb, do_r1=False)
    # the penalty by hand at x = a real + (1 - a) fake with the micro-batch's alphas
    with torch.no_grad():
        fake_img, fake_mask, _ = tr.loss.run_G(mb)
    a = mb.gp_alpha.reshape(2, 1, 1, 1, 1)  # type: ignore[union-attr]
    xi = (a * mb.real_img + (1 - a) * fake_img).requires_grad_(True)
    xm = (a * mb.real_mask + (1 - a) * fake_mask).requires_grad_(True)
    gp = gradient_penalty(tr.D(xi, xm, mb.real_cat, mb.real_cont).score, [xi, xm])
    assert float(stats["D/gp"]) == pytest.approx(float(gp.detach().sum()), rel=1e-4)
    expected = _penalty_grads(tr, 10.0 * gp.mean())
    for g1, g0, e in zip(with_gp, base, expected, strict=True):
        torch.testing.assert_close(g1 - g0, e, rtol=1e-3, atol=1e-5)
    cfg.loss.gp_weight = 5.0
    half, _ = _d_grads(tr, cfg, mb, do_r1=False)
    for g1, g05, g0 in zip(with_gp, half, base, strict=True):
        torch.testing.assert_close(g05 - g0, (g1 - g0) / 2, rtol=1e-3, atol=1e-6)
