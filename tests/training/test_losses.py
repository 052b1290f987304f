"""Each loss on hand-computed cases; R1 and the gradient penalty on a linear D; the AC-GAN term."""

from __future__ import annotations

import math

import pytest
import torch

from gliomagen.models.discriminator import DOutput
from gliomagen.training.losses import (
    REAL_SIGN_OFFSET,
    aux_loss,
    d_adv_loss,
    g_adv_loss,
    gradient_penalty,
    r1_penalty,
)

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


@pytest.mark.parametrize(
    ("kind", "d_real", "d_fake", "g"),
    [
        ("lsgan", [0.5 * 1.0, 0.5 * 4.0], [0.5 * 0.25, 0.5 * 9.0], [0.5 * 0.25, 0.5 * 16.0]),
        ("nonsaturating", [sp(-2.0), sp(1.0)], [sp(0.5), sp(-3.0)], [sp(-0.5), sp(3.0)]),
        ("hinge", [0.0, 2.0], [1.5, 0.0], [-0.5, 3.0]),
        ("wgan-gp", [-2.0 + 1e-3 * 4, 1.0 + 1e-3], [0.5, -3.0], [-0.5, 3.0]),
    ],
)
def test_adversarial_terms(
    kind: str, d_real: list[float], d_fake: list[float], g: list[float]
) -> None:
    r, f = d_adv_loss(kind, REAL, FAKE, wgan_drift=1e-3)
    torch.testing.assert_close(r, torch.tensor(d_real))
    torch.testing.assert_close(f, torch.tensor(d_fake))
    torch.testing.assert_close(g_adv_loss(kind, FAKE), torch.tensor(g))


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown loss kind"):
        g_adv_loss("wgan", FAKE)


def test_r1_and_gradient_penalty_of_a_linear_critic() -> None:
    a = torch.tensor([3.0, 4.0])  # D(x) = a . x  ->  grad = a, |grad|^2 = 25
    x = torch.randn(5, 2, requires_grad=True)
    m = torch.randn(5, 1, requires_grad=True)  # a second input D ignores
    score = x @ a + 0 * m.sum(1)
    torch.testing.assert_close(r1_penalty(score, [x, m]), torch.full((5,), 25.0))
    score = x @ a + 0 * m.sum(1)
    torch.testing.assert_close(gradient_penalty(score, [x, m]), torch.full((5,), 16.0))  # (5 - 1)^2
    # the penalty is differentiable (double backward) in the critic's weights
    w = a.clone().requires_grad_(True)
    r1_penalty(x @ w, [x]).sum().backward()
    torch.testing.assert_close(w.grad, 2 * 5 * a)


def test_aux_loss_ignores_unknown_and_adds_mse() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    out = DOutput(torch.zeros(3), (logits,), torch.tensor([[1.0], [0.0], [2.0]]))
    cat = torch.tensor([[0], [1], [2]])  # 2 = 'unknown' for a 2-category field
    cont = torch.tensor([[0.0], [0.0], [0.0]])
    ce = (-torch.log_softmax(logits[0], 0)[0] - torch.log_softmax(logits[1], 0)[1]) / 2
    expected = ce + (1.0 + 0.0 + 4.0) / 3
    torch.testing.assert_close(aux_loss(out, cat, cont, [3]), expected)
    no_head = DOutput(torch.zeros(3), (), None)
    assert float(aux_loss(no_head, cat, cont, [3])) == 0.0


def test_real_sign_offsets_sit_between_targets() -> None:
    assert REAL_SIGN_OFFSET["lsgan"] == 0.5  # targets 0 (fake) and 1 (real)
    assert all(REAL_SIGN_OFFSET[k] == 0.0 for k in ("nonsaturating", "hinge", "wgan-gp"))
