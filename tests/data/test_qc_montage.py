"""QC montages: planes through the tumour, one row per modality, overlay only where labelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gliomagen.data.qc import MASK_COLOURS, montage, montage_rgb, save_montage


def _volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, size=(4, 12, 14, 10)).astype(np.float32)  # [C, D, H, W]
    mask = np.zeros((12, 14, 10), np.uint8)
    mask[7:10, 3:6, 5:8] = 2  # centre of mass (8, 4, 6)
    mask[8, 4, 6] = 3
    return image, mask


def _grey(x: np.ndarray) -> np.ndarray:
    return np.round((x + 1) * 127.5).astype(np.uint8)


def test_panels_cut_through_the_tumour_centre_in_display_orientation() -> None:
    image, mask = _volume()
    rgb = montage_rgb(image, mask, alpha=0.0)  # the mask sets the centre, draws nothing
    assert rgb.shape == (4 * 14, 3 * 14, 3) and rgb.dtype == np.uint8
    # axial of channel 1 at z = 6: [H=14 rows (anterior at top), D=12 cols] centred in a 14x14 panel
    axial = rgb[14:28, 1:13, 0]
    np.testing.assert_array_equal(axial, _grey(image[1][:, :, 6].T[::-1]))
    coronal = rgb[0:14, 14:28, 0][2:12, 1:13]  # [W=10 rows (superior at top), D=12 cols]
    np.testing.assert_array_equal(coronal, _grey(image[0][:, 4, :].T[::-1]))
    sagittal = rgb[0:14, 28:42, 0][2:12, 0:14]  # x = 8
    np.testing.assert_array_equal(sagittal, _grey(image[0][8, :, :].T[::-1]))
    assert (rgb[14:28, 0] == 0).all()  # black padding beside the 12-wide axial panel


def test_overlay_colours_only_labelled_voxels() -> None:
    image, mask = _volume()
    plain, over = montage_rgb(image, mask, alpha=0.0), montage_rgb(image, mask, alpha=1.0)
    changed = (plain != over).any(axis=2)
    assert changed[:14, :14].sum() == 9  # axial of channel 0: the 3x3 tumour cross-section
    et = np.argwhere((over[:14, :14] == MASK_COLOURS[2].astype(np.uint8)).all(axis=2))
    assert len(et) == 1
    no_mask = montage_rgb(image, np.full((12, 14, 10), 255, np.uint8))
    np.testing.assert_array_equal(no_mask[:, :, 0], montage_rgb(torch.from_numpy(image))[:, :, 0])


def test_montage_figure_and_png(tmp_path: Path) -> None:
    image, mask = _volume()
    fig = montage(image, mask, title="case", modalities=["a", "b", "c", "d"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["axial", "coronal", "sagittal", "a", "b", "c", "d"]
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), montage_rgb(image, mask))
    assert fig._suptitle.get_text() == "case"
    path = save_montage(image, mask, tmp_path / "qc" / "c1.png", title="c1")
    assert [p.name for p in (tmp_path / "qc").iterdir()] == ["c1.png"]
    png = np.asarray(Image.open(path).convert("RGB"))
    assert png.shape == (36 + 4 * 140, 40 + 3 * 140, 3)  # 14-voxel panels enlarged 10x, margins
    expect = montage_rgb(image, mask).repeat(10, axis=0).repeat(10, axis=1)
    np.testing.assert_array_equal(png[36:, 40:], expect)
