from __future__ import annotations

import numpy as np
import pytest

from gliomagen.generation.intensity import (
    SCANNER_RANGES,
    brain_mask,
    mask_labels,
    scanner_ranges,
    to_scanner,
)


def _ball(shape, centre, radius):
    grid = np.indices(shape).astype(np.float32)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) < radius**2


def test_brain_mask_keeps_the_largest_component_and_fills_holes() -> None:
    shape = (24, 24, 24)
    brain = _ball(shape, (12, 12, 12), 8)
    hole = _ball(shape, (12, 12, 12), 2)  # dark core (e.g. necrosis) inside the brain
    speck = _ball(shape, (2, 2, 2), 1.5)  # a floating blob outside it
    images = np.full((4, *shape), -1.0, np.float32)
    images[:, brain & ~hole] = 0.2
    images[:, speck] = 0.9
    mask = brain_mask(images)
    assert mask[12, 12, 12]  # the hole is filled
    assert not mask[2, 2, 2]  # the speck is dropped
    assert not mask[0, 12, 12]
    assert abs(int(mask.sum()) - int(brain.sum())) < 0.1 * brain.sum()


def test_brain_mask_of_pure_background_is_empty() -> None:
    assert not brain_mask(np.full((4, 8, 8, 8), -1.0, np.float32)).any()


def test_labels_are_argmax_and_zero_outside_the_brain() -> None:
    logits = np.zeros((4, 2, 2, 1), np.float32)
    logits[3, 0, 0, 0] = 5  # ET
    logits[2, 0, 1, 0] = 5  # ED
    logits[1, 1, 0, 0] = 5  # NCR, but outside the brain
    brain = np.array([[[True], [True]], [[False], [True]]])
    seg = mask_labels(logits, brain)
    assert seg.dtype == np.uint8
    assert seg[:, :, 0].tolist() == [[3, 2], [0, 0]]


@pytest.mark.parametrize("fmt", ["float32", "int16"])
def test_scanner_intensities_span_the_documented_range_with_zero_background(fmt: str) -> None:
    images = np.zeros((4, 3, 1, 1), np.float32)
    images[:, 0] = -1.0
    images[:, 1] = 1.0
    images[:, 2] = 5.0  # out of range: clipped to +1
    brain = np.ones((3, 1, 1), bool)
    brain[2] = True
    ranges = scanner_ranges(["t1n", "t1c", "t2w", "t2f"])
    out = to_scanner(images, brain, ranges, fmt)
    assert out.dtype == np.dtype(fmt)
    for c, m in enumerate(["t1n", "t1c", "t2w", "t2f"]):
        lo, hi = SCANNER_RANGES[m]
        assert out[c, :, 0, 0].tolist() == [lo, hi, hi]
    brain[0] = False
    out = to_scanner(images, brain, ranges, fmt)
    assert (out[:, 0] == 0).all()
    assert (out[:, 1:] >= 1).all()  # a brain voxel is never 0, so `image > 0` finds the brain


def test_scanner_range_from_the_store_meta_wins() -> None:
    meta = {"preprocessing": {"reference_range": {"t1n": [20.0, 800.0]}}}
    assert scanner_ranges(["t1n", "t2f"], meta) == [(20.0, 800.0), SCANNER_RANGES["t2f"]]
