"""Discriminator: minibatch std, projection conditioning, auxiliary head, spectral norm, 2D/3D."""

from __future__ import annotations

import pytest
import torch

from gliomagen.config import preset
from gliomagen.models import build_discriminator
from gliomagen.models.discriminator import Discriminator, minibatch_std


def tiny(schema, size=(16, 16, 16), **kw) -> Discriminator:  # noqa: ANN001
    cfg = preset("demo-cpu")
    cfg.model.d_channels, cfg.model.d_max_channels = 4, 8
    for k, v in kw.items():
        setattr(cfg.model, k, v)
    torch.manual_seed(0)
    return build_discriminator(cfg, schema, size)


def test_minibatch_std_groups_are_contiguous() -> None:
    x = torch.tensor([0.0, 2.0, 10.0, 10.0]).reshape(4, 1, 1, 1)
    y = minibatch_std(x, group_size=2)
    assert y.shape == (4, 2, 1, 1)
    # groups {0, 1} (std 1) and {2, 3} (std 0)
    torch.testing.assert_close(
        y[:, 1].flatten(), torch.tensor([1.0, 1.0, 0.0, 0.0]), atol=1e-3, rtol=0
    )
    # a batch of 3 with group 2 falls back to the largest divisor (1): std 0
    assert float(minibatch_std(x[:3], 2)[:, 1].abs().max()) < 1e-3


@pytest.mark.parametrize("size", [(16, 16, 16), (32, 32)])
@pytest.mark.parametrize("aux", [True, False])
def test_forward_outputs(schema, size: tuple[int, ...], aux: bool) -> None:  # noqa: ANN001
    D = tiny(schema, size, aux_classifier=aux)
    img, mask = torch.randn(4, 4, *size), torch.softmax(torch.randn(4, 4, *size), 1)
    cat, cont = torch.tensor([[0, 0], [1, 2], [2, 3], [0, 1]]), torch.randn(4, 1)
    out = D(img, mask, cat, cont)
    assert out.score.shape == (4,)
    if aux:
        assert [t.shape for t in out.cat_logits] == [(4, 2), (4, 3)] and out.cont_pred.shape == (
            4,
            1,
        )
    else:
        assert out.cat_logits == () and out.cont_pred is None
    with pytest.raises(ValueError, match="D expects"):
        D(img[:, :3], mask, cat, cont)


@pytest.mark.parametrize("size", [(16, 16, 16), (16, 16)])
def test_projection_makes_the_score_depend_on_conditions(schema, size: tuple[int, ...]) -> None:  # noqa: ANN001
    D = tiny(schema, size)
    img, mask = torch.randn(1, 4, *size), torch.softmax(torch.randn(1, 4, *size), 1)
    with torch.no_grad():
        a = D(img, mask, torch.tensor([[0, 0]]), torch.zeros(1, 1)).score
        b = D(img, mask, torch.tensor([[1, 0]]), torch.zeros(1, 1)).score
    assert abs(float(a - b)) > 1e-4


@pytest.mark.parametrize("size", [(16, 16, 16), (16, 16)])
def test_spectral_norm_bounds_weights(schema, size: tuple[int, ...]) -> None:  # noqa: ANN001
    D = tiny(schema, size, spectral_norm=True)
    img, mask = torch.randn(2, 4, *size), torch.softmax(torch.randn(2, 4, *size), 1)
    for _ in range(20):  # power iterations run in training-mode forwards
        D(img, mask, torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 1))
    w = D.fc.weight.detach()
    assert float(torch.linalg.matrix_norm(w, ord=2)) == pytest.approx(1.0, abs=0.05)
    conv_w = D.blocks[0].conv0.weight.detach().flatten(1)
    assert float(torch.linalg.matrix_norm(conv_w, ord=2)) == pytest.approx(1.0, abs=0.05)
