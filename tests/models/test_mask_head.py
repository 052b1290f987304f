"""The nested mask head: valid probabilities, concentric layers, grade-free core, generator wiring."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import ndimage

from gliomagen.config import resolve_config
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.errors import GliomagenError
from gliomagen.models import build_generator
from gliomagen.models.mask_head import nested_logits, to_logits

SMALL = [
    "model.g_channels=4",
    "model.d_channels=4",
    "model.g_max_channels=8",
    "model.d_max_channels=8",
]
SCHEMA = ConditionSchema([ConditionField("grade", "categorical", categories=["HGG", "LGG"])])


def _inv_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def test_probabilities_are_valid_even_at_extremes() -> None:
    torch.manual_seed(0)
    raw = torch.randn(3, 4, 6, 6, 6) * 20  # logits up to about +-80
    lp = nested_logits(raw)
    assert torch.isfinite(lp).all()
    assert float(lp.max()) <= 1e-6
    assert torch.allclose(lp.logsumexp(1), torch.zeros(3, 6, 6, 6), atol=1e-4)


def test_matches_the_ordinal_model_computed_naively() -> None:
    torch.manual_seed(1)
    raw = torch.randn(2, 4, 5, 5) * 2
    f, g1, g2, g3 = raw.unbind(1)
    t1 = g1
    t2 = t1 + torch.nn.functional.softplus(g2)
    t3 = t2 + torch.nn.functional.softplus(g3)
    ge1, ge2, ge3 = (torch.sigmoid(f - t) for t in (t1, t2, t3))
    # label order: 0 background, 1 core, 2 edema, 3 enhancing
    want = torch.stack([1 - ge1, ge3, ge1 - ge2, ge2 - ge3], dim=1)
    assert torch.allclose(nested_logits(raw).exp(), want, atol=1e-5)


def _bump(gap_et: float, side: int = 21) -> torch.Tensor:
    """Raw output for a radial depth field ``f = 6 - r`` with edema and enhancing layers 2 wide."""
    ax = torch.arange(side, dtype=torch.float32) - side // 2
    r = torch.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
    f = 6.0 - r
    g1 = torch.zeros_like(f)  # edema starts at r = 6
    g2 = torch.full_like(f, _inv_softplus(2.0))  # enhancing starts at r = 4
    g3 = torch.full_like(f, gap_et)  # core starts at r = 4 - softplus(gap_et)
    return torch.stack([f, g1, g2, g3])[None]


def test_a_bump_gives_a_core_inside_an_enhancing_rim_inside_edema() -> None:
    labels = nested_logits(_bump(_inv_softplus(2.0))).argmax(1)[0].numpy()
    core, et, ed = labels == 1, labels == 3, labels == 2
    assert core.sum() > 0 and et.sum() > 0 and ed.sum() > 0
    assert labels[10, 10, 10] == 1  # the centre is core
    core_shell = ndimage.binary_dilation(core) & ~core
    assert (labels[core_shell] == 3).all()  # the rim surrounds the core completely
    tc = core | et
    tc_shell = ndimage.binary_dilation(tc) & ~tc
    assert (labels[tc_shell] == 2).all()  # and edema surrounds the rim
    assert labels[0, 0, 0] == 0


def test_a_zero_width_enhancing_layer_gives_a_low_grade_tumour() -> None:
    labels = nested_logits(_bump(-30.0)).argmax(1)[0].numpy()
    assert (labels == 3).sum() == 0
    core = labels == 1
    assert core.sum() > 0
    assert (labels[ndimage.binary_dilation(core) & ~core] == 2).all()


def test_softmax_head_is_the_identity() -> None:
    raw = torch.randn(1, 4, 3, 3)
    assert to_logits(raw, "softmax") is raw
    with pytest.raises(ValueError, match="unknown mask head"):
        to_logits(raw, "bogus")


@pytest.mark.parametrize("size", [(16, 16), (16, 16, 16)])
def test_generator_with_the_nested_head(size: tuple[int, ...]) -> None:
    cfg = resolve_config("demo-cpu", overrides=[*SMALL, "model.mask_head=nested"])
    torch.manual_seed(0)
    G = build_generator(cfg, SCHEMA, size)
    assert G.synthesis.mask_head == "nested"
    z = torch.randn(2, G.z_dim)
    img, logits = G(z, torch.tensor([[0], [1]]), torch.zeros(2, 0), noise_seeds=[1, 2])
    assert img.shape == logits.shape == (2, 4, *size)
    assert torch.allclose(logits.logsumexp(1), torch.zeros(2, *size), atol=1e-4)
    (logits[:, 3].exp().mean() + img.mean()).backward()
    for head in G.synthesis.heads:  # every level's mask head gets a gradient
        grads = [p.grad for p in head.to_mask.parameters() if p.requires_grad]
        assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads)
    # the same weights read as softmax logits give other probabilities: the head matters
    G.synthesis.mask_head = "softmax"
    for head in G.synthesis.heads:
        head.mask_head = "softmax"
    _, plain = G(z, torch.tensor([[0], [1]]), torch.zeros(2, 0), noise_seeds=[1, 2])
    assert float((plain.softmax(1) - logits.exp()).detach().abs().max()) > 1e-3


def test_config_rejects_an_unknown_mask_head() -> None:
    with pytest.raises(GliomagenError, match="model.mask_head"):
        resolve_config("demo-cpu", overrides=["model.mask_head=onion"])
