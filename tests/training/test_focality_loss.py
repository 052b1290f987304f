"""Focality (loss.focality_weight): floors from the store, the term's value, where it pushes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gliomagen.config import resolve_config
from gliomagen.errors import GliomagenError
from gliomagen.training.batches import TrainingData
from gliomagen.training.terms.focality import FocalityTerm
from gliomagen.training.terms.tables import MaskTables, main_lesion_share


@pytest.fixture
def make_loss(term_factory):  # noqa: ANN001, ANN201
    """``make_loss(floor, weight)``: the focality term with this floor table."""

    def make(floor: torch.Tensor | None, weight: float = 1.0) -> FocalityTerm:
        return term_factory([f"loss.focality_weight={weight}"], focal_floor=floor)

    return make


def _probs(tumour: torch.Tensor) -> torch.Tensor:
    """``[n, *S]`` tumour probabilities -> ``[n, 4, *S]`` (the tumour mass on the edema)."""
    p = torch.zeros(tumour.shape[0], 4, *tumour.shape[1:])
    p[:, 0], p[:, 2] = 1.0 - tumour, tumour
    return p


def _two_lesions() -> torch.Tensor:
    """One ``[8, 8, 8]`` sample: a 27-voxel lesion (p 0.9) and an 8-voxel one (p 0.6)."""
    t = torch.full((8, 8, 8), 0.1)
    t[0:3, 0:3, 0:3] = 0.9
    t[5:7, 5:7, 5:7] = 0.6
    return t


def test_main_lesion_share_and_the_floor_per_code(fake_store, tiny_cfg, per_code_min) -> None:  # noqa: ANN001
    assert main_lesion_share(_two_lesions().numpy() > 0.5) == pytest.approx(27 / 35)
    assert main_lesion_share(np.zeros((4, 4, 4), bool)) == 1.0
    diag = np.zeros((4, 4, 4), bool)
    diag[0, 0, 0] = diag[1, 1, 1] = True  # corner neighbours: one 26-connected lesion
    assert main_lesion_share(diag) == 1.0
    store = fake_store(n=6)
    data = TrainingData(store, tiny_cfg())
    want = per_code_min(data, lambda i: main_lesion_share(store[i][1].numpy() > 0))
    torch.testing.assert_close(MaskTables(data).focal_floor(), want, equal_nan=True)


def test_value_matches_a_hand_computation(make_loss) -> None:  # noqa: ANN001
    # grade: HGG cases all unifocal (1.0), LGG's least focal case 80% in its main lesion
    floor = torch.tensor([[1.0, 0.8], [math.nan, math.nan]])
    loss = make_loss(floor)
    two = _two_lesions()
    one = torch.full((8, 8, 8), 0.1)
    one[2:5, 2:5, 2:5] = 0.9
    share = 8 * 0.6 / (27 * 0.9 + 8 * 0.6)  # satellite mass / argmax-tumour mass = 0.165
    got = loss.value(_probs(torch.stack([two, two, one])), torch.tensor([[0, 2], [1, 2], [0, 0]]))
    # HGG: all of it; LGG: only what exceeds the 20% allowance (none); one lesion: 0
    assert float(got) == pytest.approx((share + 0.0 + 0.0) / 3, rel=1e-5)


def test_the_push_falls_on_the_satellite_and_removes_it(make_loss) -> None:  # noqa: ANN001
    loss = make_loss(torch.tensor([[1.0, 1.0], [1.0, 1.0]]))
    logit = torch.logit(_two_lesions()).unsqueeze(0).requires_grad_(True)
    cat = torch.tensor([[1, 1]])
    loss.value(_probs(torch.sigmoid(logit)), cat).backward()
    assert logit.grad is not None
    g = logit.grad[0]
    assert bool((g[5:7, 5:7, 5:7] > 0).all())  # the satellite is pushed down
    assert bool((g[0:3, 0:3, 0:3] <= 0).all())  # the main lesion only gains
    outside = torch.ones_like(g, dtype=torch.bool)
    outside[0:3, 0:3, 0:3] = outside[5:7, 5:7, 5:7] = False
    assert float(g[outside].abs().max()) == 0.0  # background voxels are left alone
    opt = torch.optim.Adam([logit], lr=0.3)
    for _ in range(40):
        opt.zero_grad()
        v = loss.value(_probs(torch.sigmoid(logit)), cat)
        v.backward()
        opt.step()
    p = torch.sigmoid(logit.detach())[0]
    assert float(v.detach()) == 0.0  # one lesion left: the term is off
    assert float(p[5:7, 5:7, 5:7].max()) < 0.5 and float(p[0:3, 0:3, 0:3].min()) > 0.9


def test_config_errors(make_loss) -> None:  # noqa: ANN001
    with pytest.raises(GliomagenError, match="loss.focality_weight needs a categorical"):
        make_loss(torch.zeros(0, 0))
    with pytest.raises(GliomagenError, match="loss.focality_weight"):
        resolve_config("demo-cpu", overrides=["loss.focality_weight=-1"])


def test_generator_phase_reports_the_focality_term(fake_store, tiny_cfg, tmp_path) -> None:  # noqa: ANN001
    from gliomagen.training import train

    cfg = tiny_cfg(train={"steps": 2}, loss={"focality_weight": 1.0})
    train(cfg, fake_store(n=4), tmp_path, progress=False)
    assert "G/focality=" in (tmp_path / "log.txt").read_text()
