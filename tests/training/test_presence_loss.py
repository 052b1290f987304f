"""Tumour presence (loss.presence_weight): floors from the store, the term's value, where it pulls."""

from __future__ import annotations

import math

import pytest
import torch

from gliomagen.config import resolve_config
from gliomagen.errors import GliomagenError
from gliomagen.training.batches import TrainingData
from gliomagen.training.terms.presence import PresenceTerm
from gliomagen.training.terms.tables import MaskTables


@pytest.fixture
def make_loss(term_factory):  # noqa: ANN001, ANN201
    """``make_loss(floor, weight, share)``: the presence term with this floor table."""

    def make(floor: torch.Tensor | None, weight: float = 1.0, share: float = 0.5) -> PresenceTerm:
        return term_factory([f"loss.presence_weight={weight}", f"loss.presence_floor={share}"], tumour_floor=floor)

    return make


def _probs(tumour: torch.Tensor) -> torch.Tensor:
    """``[n, V]`` tumour probabilities -> ``[n, 4, V]`` (all tumour mass on the edema, label 2)."""
    p = torch.zeros(tumour.shape[0], 4, tumour.shape[1])
    p[:, 0], p[:, 2] = 1.0 - tumour, tumour
    return p


def test_tumour_floor_is_the_smallest_tumour_per_code(fake_store, tiny_cfg, per_code_min) -> None:  # noqa: ANN001
    store = fake_store(n=6)
    data = TrainingData(store, tiny_cfg())
    floor = MaskTables(data).tumour_floor()
    want = per_code_min(data, lambda i: float((store[i][1] > 0).float().mean()))
    torch.testing.assert_close(floor, want, equal_nan=True)
    assert float(torch.nan_to_num(floor, nan=1.0).min()) > 0  # every fake case has a tumour


def test_value_matches_a_hand_computation(make_loss) -> None:  # noqa: ANN001
    # 100 voxels; grade HGG's smallest tumour 20%, LGG's 10%; side: left 30%, right unknown
    floor = torch.tensor([[0.2, 0.1], [0.3, math.nan]])
    loss = make_loss(floor, share=0.5)
    gen = torch.Generator().manual_seed(0)
    tumour = torch.rand(3, 100, generator=gen) * 0.5
    tumour[1, :40] = 1.0  # sample 1 holds 40 sure tumour voxels
    cat = torch.tensor([[0, 1], [1, 0], [1, 1]])
    # k: sample 0 max(0.2, unknown) -> 10; sample 1 max(0.1, 0.3) -> 15; sample 2 -> 5
    want = [1.0 - tumour[0].topk(10).values.mean(), 0.0, 1.0 - tumour[2].topk(5).values.mean()]
    got = loss.value(_probs(tumour), cat)
    assert float(got) == pytest.approx(float(sum(want)) / 3, rel=1e-6)
    # a whole-tumour sample, or none with a bound, gives exactly zero
    full = torch.ones(1, 100)
    assert float(loss.value(_probs(full), torch.tensor([[0, 0]]))) == 0.0
    # the 'unknown' slot (code 2) sets no bound: grade's alone counts
    torch.testing.assert_close(
        loss.value(_probs(tumour[:1]), torch.tensor([[0, 2]])), 1.0 - tumour[0].topk(10).values.mean()
    )
    nobound = make_loss(torch.tensor([[math.nan, 0.0], [math.nan, math.nan]]))
    assert float(nobound.value(_probs(tumour[:1]), torch.tensor([[1, 0]]))) == 0.0


def test_the_pull_falls_on_the_likeliest_voxels_and_grows_a_tumour(make_loss) -> None:  # noqa: ANN001
    loss = make_loss(torch.tensor([[0.1, 0.1], [0.1, 0.1]]), share=1.0)  # k = 10 of 100 voxels
    logits = torch.full((1, 100), -6.0)
    logits[0, 40:50] = -2.0  # a faint tumour the sample almost drew
    logits.requires_grad_(True)
    cat = torch.tensor([[1, 1]])
    v = loss.value(_probs(torch.sigmoid(logits)), cat)
    v.backward()
    assert logits.grad is not None
    moved = (logits.grad[0] != 0).nonzero().flatten().tolist()
    assert moved == list(range(40, 50))  # only there, and upward
    assert bool((logits.grad[0, 40:50] < 0).all())
    opt = torch.optim.Adam([logits], lr=0.2)
    for _ in range(60):
        opt.zero_grad()
        v = loss.value(_probs(torch.sigmoid(logits)), cat)
        v.backward()
        opt.step()
    p = torch.sigmoid(logits.detach())[0]
    assert float(v.detach()) < 0.05
    assert bool((p[40:50] > 0.9).all()) and float(p[:40].max()) < 0.01  # no specks elsewhere


def test_config_errors(make_loss) -> None:  # noqa: ANN001
    with pytest.raises(GliomagenError, match="loss.presence_weight needs a categorical"):
        make_loss(torch.zeros(0, 0))
    with pytest.raises(GliomagenError, match="loss.presence_weight"):
        resolve_config("demo-cpu", overrides=["loss.presence_weight=-1"])
    for bad in ("0", "1.5"):
        with pytest.raises(GliomagenError, match=r"loss.presence_floor=.*\(0, 1\]"):
            resolve_config("demo-cpu", overrides=[f"loss.presence_floor={bad}"])


def test_generator_phase_reports_the_presence_term(fake_store, tiny_cfg, tmp_path) -> None:  # noqa: ANN001
    from gliomagen.training import train

    cfg = tiny_cfg(train={"steps": 2}, loss={"presence_weight": 1.0})
    train(cfg, fake_store(n=4), tmp_path, progress=False)
    assert "G/presence=" in (tmp_path / "log.txt").read_text()
