from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from gliomagen.generation.interpolate import LABEL_COLOURS, render_frame, walk_ws
from gliomagen.generation.sampling import ConditionMeans, case_ws
from gliomagen.generation.source import load_source


def test_condition_walk_runs_from_condition_a_to_b_at_one_seed(checkpoint: Path) -> None:
    source = load_source(checkpoint)
    ws, labels = walk_ws(source, conditions=["grade=LGG", "grade=HGG,cohort=SSA"], seed=4, steps=5)
    assert ws.shape == (5, source.G.num_ws, source.G.w_dim)
    enc = [source.schema.encode(v) for v in ({"grade": "LGG"}, {"grade": "HGG", "cohort": "SSA"})]
    a = case_ws(source.G, [4], enc[0][0][None], enc[0][1][None])
    b = case_ws(source.G, [4], enc[1][0][None], enc[1][1][None])
    assert torch.allclose(ws[0], a[0], atol=1e-6) and torch.allclose(ws[-1], b[0], atol=1e-6)
    assert torch.allclose(ws[2], (a[0] + b[0]) / 2, atol=1e-5)
    assert labels[0].startswith("grade=LGG -> cohort=SSA,grade=HGG") and labels[-1].endswith("1.00")


def test_seed_walk_with_truncation_pulls_both_ends_toward_the_condition_mean(
    checkpoint: Path,
) -> None:
    source = load_source(checkpoint)
    cat, cont = source.schema.encode({"grade": "HGG"})
    ws, _ = walk_ws(source, seeds=[1, 2], condition={"grade": "HGG"}, steps=3, truncation=0.0)
    mean = ConditionMeans(source.G).get(torch.as_tensor(cat), torch.as_tensor(cont))
    assert torch.allclose(ws, mean.expand_as(ws), atol=1e-6)
    ws1, _ = walk_ws(source, seeds=[1, 2], condition={"grade": "HGG"}, steps=3)
    assert not torch.allclose(ws1[0], ws1[-1])


def test_frame_shows_three_planes_with_radiological_orientation_and_outlines() -> None:
    vol = np.full((8, 10, 6), -1.0, np.float32)
    vol[0] = 1.0  # x = 0: the patient's left-most slab in RAS (+x points right)
    seg = np.zeros(vol.shape, np.uint8)
    seg[3:6, 3:7, 2:5] = 3
    frame = render_frame(vol, seg)
    # axial [Y, X] + coronal [Z, X] + sagittal [Z, Y], padded to one height, 2-pixel gaps
    assert frame.shape == (10, 8 + 2 + 8 + 2 + 10, 3)
    axial = frame[:, :8]
    assert (axial[:, -1] == 255).all()  # patient left shown on the right (radiological)
    assert not (axial[:, :-1] == 255).all(axis=2).any()  # nothing else is bright
    assert (frame == np.array(LABEL_COLOURS[3], np.uint8)).all(axis=2).any()  # ET outline drawn
