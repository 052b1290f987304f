"""Which conditions the sample montages show, and the w_avg grid."""

from __future__ import annotations

import torch

from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.training.monitor import condition_grid, montage_conditions

SCHEMA = ConditionSchema(
    [
        ConditionField("grade", "categorical", categories=["HGG", "LGG"]),
        ConditionField("hemisphere", "categorical", categories=["bilateral", "left", "right"]),
        ConditionField("age", "continuous", mean=50.0, std=10.0),
    ]
)


def test_montage_shows_every_category_with_the_others_at_their_mode() -> None:
    codes = torch.tensor([[0, 1], [1, 1], [0, 2]])  # modes: HGG, left
    cat, cont, labels = montage_conditions(SCHEMA, codes)
    assert cat.tolist() == [[0, 1], [1, 1], [0, 0], [0, 2]]
    assert labels == ["grade=HGG hemisphere=left", "grade=LGG hemisphere=left",
                      "grade=HGG hemisphere=bilateral", "grade=HGG hemisphere=right"]  # fmt: skip
    assert cont.shape == (4, 1) and float(cont.abs().sum()) == 0.0
    cat, _, labels = montage_conditions(ConditionSchema([]), torch.zeros(2, 0, dtype=torch.long))
    assert cat.shape == (1, 0) and labels == ["unconditional"]


def test_condition_grid_is_the_product_capped() -> None:
    cat, cont, labels = condition_grid(SCHEMA, limit=4)
    assert cat.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0]]
    assert labels[1] == "grade=HGG, hemisphere=left" and cont.shape == (4, 1)
