"""``loss.covariate_weight``: G's soft mask against its wt_volume_ml / enhancing_fraction conditions."""

from __future__ import annotations

import math

import pytest
import torch

from gliomagen.config import resolve_config
from gliomagen.training.batches import TrainingData
from gliomagen.training.terms import MaskTables, build_terms
from gliomagen.training.terms.covariates import CovariateTerm
from gliomagen.training.terms.tables import ENHANCING, VOLUME

GRID = (8, 8, 8)  # 512 voxels; with 1 ml per voxel a voxel count reads as ml


def _term(rows: list[list[float]]) -> CovariateTerm:
    cfg = resolve_config("demo-cpu", overrides=["loss.covariate_weight=2.0"])
    return CovariateTerm(cfg, {"covariates": torch.tensor(rows, dtype=torch.float64)})


def _probs(tumour: int, enhancing: int, n: int = 1) -> torch.Tensor:
    """``n`` hard masks on :data:`GRID`: ``tumour`` voxels of tumour, ``enhancing`` of them ET."""
    lab = torch.zeros(512, dtype=torch.long)
    lab[:tumour] = 2
    lab[:enhancing] = 3
    one = torch.nn.functional.one_hot(lab, 4).T.reshape(4, *GRID).float()
    return one.expand(n, *one.shape).clone()


def test_the_enhancing_fraction_is_an_l1_error_and_unset_conditions_cost_nothing() -> None:
    # enhancing fraction standardised with mean 0.2, sd 0.1: codes -2 (0.0), 1 (0.3), 0 (unset)
    term = _term([[0, ENHANCING, 0.2, 0.1, 512.0]])
    probs = _probs(100, 30, n=3)
    cont = torch.tensor([[-2.0], [1.0], [0.0]])
    assert term.value(probs[:1], cont[:1]).item() == pytest.approx(0.3)  # LGG asked, 30% ET drawn
    assert term.value(probs[1:2], cont[1:2]).item() == pytest.approx(0.0, abs=1e-6)
    assert term.value(probs[2:], cont[2:]).item() == 0.0  # unset: no pair
    assert term.value(probs, cont).item() == pytest.approx(0.15)  # the mean over the set pairs


def test_the_volume_is_free_within_a_quarter_and_a_log_ratio_beyond() -> None:
    term = _term([[1, VOLUME, 100.0, 50.0, 512.0]])  # column 1 of cont; 1 ml per voxel
    probs = _probs(100, 0)
    value = {
        ml: term.value(probs, torch.tensor([[5.0, (ml - 100.0) / 50.0]])).item()
        for ml in (100.0, 120.0, 200.0, 40.0)
    }
    assert value[100.0] == 0.0 and value[120.0] == 0.0  # 100 ml drawn
    assert value[200.0] == pytest.approx(math.log(2.0) - math.log(1.25), abs=1e-5)
    assert value[40.0] == pytest.approx(math.log(2.5) - math.log(1.25), abs=1e-5)
    no_spacing = _term([[1, VOLUME, 100.0, 50.0, 0.0]])
    assert no_spacing.value(probs, torch.tensor([[0.0, 2.0]])).item() == 0.0


def test_its_gradient_takes_the_enhancing_region_away_from_an_lgg_request() -> None:
    term = _term([[0, ENHANCING, 0.2, 0.1, 512.0]])
    logits = (_probs(100, 30) * 2.0).requires_grad_(True)
    cont = torch.tensor([[-2.0]])
    before = term.value(torch.softmax(logits, 1), cont)
    before.backward()
    after = term.value(torch.softmax(logits - 1000.0 * logits.grad, 1), cont)
    assert after.item() < before.item() - 0.05


def test_without_a_covariate_among_the_conditions_it_adds_zero_with_a_gradient() -> None:
    term = CovariateTerm(resolve_config("demo-cpu", overrides=["loss.covariate_weight=1.0"]), {})
    probs = _probs(10, 5).requires_grad_(True)
    value = term.value(probs, torch.zeros(1, 0))
    assert value.item() == 0.0 and value.requires_grad


def test_mask_tables_give_the_covariates_of_the_conditions(fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = fake_store(n=4)  # wt_volume_ml (mean 20, sd 5), 16^3 at 15 mm
    data = TrainingData(store, tiny_cfg())
    rows = MaskTables(data).get("covariates").tolist()
    grid_ml = 16**3 * 15.0**3 / 1000.0
    assert rows == [[0.0, VOLUME, 20.0, 5.0, pytest.approx(grid_ml)]]
    cfg = tiny_cfg()
    cfg.loss.covariate_weight = 1.5
    terms = build_terms(cfg, data)
    cov = next(t for t in terms if t.name == "covariates")
    assert cov.weight == 1.5 and cov.tables["covariates"].shape == (1, 5)
