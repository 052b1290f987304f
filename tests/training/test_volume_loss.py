"""Class-volume matching (loss.volume_weight): targets from the store, the loss's value and pull."""

from __future__ import annotations

import math

import pytest
import torch

from gliomagen.config import resolve_config
from gliomagen.errors import GliomagenError
from gliomagen.training.batches import TrainingData
from gliomagen.training.losses import StyleGANLoss


@pytest.fixture
def make_loss(loss_factory):  # noqa: ANN001, ANN201
    """``make_loss(fractions, weight)``: a small StyleGANLoss with this term on."""

    def make(fractions: torch.Tensor | None, weight: float = 1.0) -> StyleGANLoss:
        return loss_factory([f"loss.volume_weight={weight}"], class_fractions=fractions)

    return make


def test_class_fractions_per_code_from_the_store(fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = fake_store(n=6)
    cfg = tiny_cfg()
    data = TrainingData(store, cfg)
    fr = data.class_fractions()
    assert fr.shape[0] == data.cat.shape[1] >= 1 and fr.shape[2] == 4
    # by hand: the first categorical condition's code 0
    j, code = 0, int(data.cat[data.train_index[0], 0])
    rows = [int(i) for i in data.train_index if int(data.cat[i, j]) == code]
    want = torch.stack(
        [torch.bincount(store[i][1].flatten(), minlength=4).double() / store[i][1].numel() for i in rows]
    ).mean(0)
    assert torch.allclose(fr[j, code].double(), want, atol=1e-6)
    assert torch.allclose(fr[j, code].sum(), torch.tensor(1.0), atol=1e-5)


def test_value_matches_a_hand_computation(make_loss) -> None:  # noqa: ANN001
    fractions = torch.tensor([[[0.9, 0.02, 0.06, 0.02], [0.95, 0.04, 0.01, 0.0]]])  # HGG, LGG
    loss = make_loss(fractions)
    mask = torch.zeros(3, 4, 10, 10)
    mask[:, 0] = 1.0
    mask[0, 0, :1, :] = 0.0
    mask[0, 3, :1, :] = 1.0  # sample 0 (HGG): 10% enhancing
    mask[2, 0, :2, :] = 0.0
    mask[2, 1, :2, :] = 1.0  # sample 2 (LGG): 20% core
    cat = torch.tensor([[0], [0], [1]])
    scale = fractions[0, :, 1:].mean(0)  # [0.03, 0.035, 0.01]
    hgg = ((torch.tensor([0.0, 0.0, 0.05]) - fractions[0, 0, 1:]) / scale).pow(2).sum()
    lgg = ((torch.tensor([0.2, 0.0, 0.0]) - fractions[0, 1, 1:]) / scale).pow(2).sum()
    got = loss.volume_loss(mask, cat)
    assert float(got) == pytest.approx(float((hgg + lgg) / 2), rel=1e-5)
    # matching shares give zero
    match = torch.zeros(1, 4, 10, 10)
    match[0, 0] = 0.95
    match[0, 1] = 0.04
    match[0, 2] = 0.01
    assert float(loss.volume_loss(match, torch.tensor([[1]]))) == pytest.approx(0.0, abs=1e-10)


def test_gradient_pulls_the_shares_toward_the_targets(make_loss) -> None:  # noqa: ANN001
    fractions = torch.tensor([[[0.8, 0.05, 0.1, 0.05], [0.9, 0.1, 0.0, 0.0]]])
    loss = make_loss(fractions)
    logits = torch.zeros(4, 4, 8, 8, requires_grad=True)
    cat = torch.tensor([[0], [1], [0], [1]])
    opt = torch.optim.Adam([logits], lr=0.05)
    first = None
    for _ in range(150):
        opt.zero_grad()
        v = loss.volume_loss(logits.softmax(1), cat)
        first = float(v.detach()) if first is None else first
        v.backward()
        opt.step()
    assert float(v.detach()) < 0.01 * first
    share = logits.softmax(1).flatten(2).mean(2).detach()
    hgg, lgg = share[[0, 2]].mean(0), share[[1, 3]].mean(0)  # the loss matches group means
    assert torch.allclose(hgg[1:], fractions[0, 0, 1:], atol=0.02)  # from 0.25 each
    assert torch.allclose(lgg[1:], fractions[0, 1, 1:], atol=0.02) and float(lgg[3]) < 0.02


def test_codes_without_training_cases_are_skipped_and_no_conditions_is_an_error(make_loss) -> None:  # noqa: ANN001
    fractions = torch.tensor([[[0.9, 0.05, 0.03, 0.02], [math.nan] * 4]])
    loss = make_loss(fractions)
    mask = torch.full((2, 4, 4, 4), 0.25)
    only_unknown = loss.volume_loss(mask, torch.tensor([[1], [1]]))
    assert float(only_unknown) == 0.0
    with pytest.raises(GliomagenError, match="loss.volume_weight needs a categorical"):
        make_loss(torch.zeros(0, 0, 4))
    with pytest.raises(GliomagenError, match="loss.volume_weight"):
        resolve_config("demo-cpu", overrides=["loss.volume_weight=-1"])


def test_generator_phase_reports_the_volume_term(fake_store, tiny_cfg, tmp_path) -> None:  # noqa: ANN001
    from gliomagen.training import train

    cfg = tiny_cfg(train={"steps": 2}, loss={"volume_weight": 1.0})
    train(cfg, fake_store(n=4), tmp_path, progress=False)
    assert "G/volume=" in (tmp_path / "log.txt").read_text()
