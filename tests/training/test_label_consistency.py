"""Label consistency (``loss.seg_weight``): D's segmenter learns real masks; G's images must give
G's own mask back through it."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
import torch

from gliomagen.config import resolve_config
from gliomagen.data.conditions import ConditionField, ConditionSchema
from gliomagen.errors import GliomagenError
from gliomagen.io.checkpoint import load_checkpoint
from gliomagen.models import build_discriminator, build_generator
from gliomagen.training.loop import train
from gliomagen.training.losses import MicroBatch, StyleGANLoss
from gliomagen.training.terms import build_terms
from gliomagen.training.terms.segmentation import region_loss, region_targets

SMALL = [
    "model.g_channels=4",
    "model.d_channels=4",
    "model.g_max_channels=8",
    "model.d_max_channels=8",
]


def _one_hot(lab: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(lab.long(), 4).movedim(-1, 1).float()


def test_region_targets_are_the_brats_regions() -> None:
    lab = torch.tensor([[0, 1, 2, 3]]).reshape(1, 1, 1, 4)  # bg, NCR, ED, ET
    t = region_targets(_one_hot(lab))
    assert t.shape == (1, 3, 1, 1, 4)
    assert t[0, :, 0, 0].tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]  # WT, TC, ET


def test_region_loss_is_small_for_the_right_regions_and_large_for_wrong_ones() -> None:
    torch.manual_seed(0)
    target = region_targets(_one_hot(torch.randint(0, 4, (2, 8, 8, 8))))
    right = region_loss((target * 2 - 1) * 20, target)
    wrong = region_loss((1 - 2 * target) * 20, target)
    assert right.shape == (2,) and float(right.max()) < 0.01
    assert float(wrong.min()) > 10.0  # BCE of confident mistakes plus a Dice of ~1
    # a region absent from both target and prediction costs no Dice
    empty = torch.zeros(1, 3, 4, 4, 4)
    assert float(region_loss(torch.full_like(empty, -20.0), empty)[0]) < 1e-6


def _nets(cfg):  # noqa: ANN001, ANN202
    schema = ConditionSchema([ConditionField("grade", "categorical", categories=["HGG", "LGG"])])
    torch.manual_seed(0)
    return build_generator(cfg, schema, (16, 16, 16)), build_discriminator(
        cfg, schema, (16, 16, 16)
    )


def test_the_weight_builds_d_s_segmenter_and_both_terms() -> None:
    off = resolve_config("demo-cpu", overrides=SMALL)
    assert not hasattr(_nets(off)[1], "seg") and build_terms(off) == []
    on = resolve_config("demo-cpu", overrides=[*SMALL, "loss.seg_weight=0.5"])
    G, D = _nets(on)
    assert isinstance(D.seg, torch.nn.Module) and any(k.startswith("seg.") for k in D.state_dict())
    terms = build_terms(on)
    assert [(t.name, t.phase, t.weight) for t in terms] == [
        ("seg_fit", "D", 1.0),
        ("label_consistency", "G", 0.5),
    ]
    with pytest.raises(GliomagenError, match=r"loss.seg_weight=-1.0"):
        resolve_config("demo-cpu", overrides=["loss.seg_weight=-1"])


def test_d_phase_trains_the_segmenter_on_reals_and_g_phase_reaches_g_through_images_only() -> None:
    cfg = resolve_config("demo-cpu", overrides=[*SMALL, "loss.seg_weight=1"])
    G, D = _nets(cfg)
    lab = torch.zeros(2, 16, 16, 16, dtype=torch.long)
    lab[:, 5:11, 5:11, 5:11] = 2
    lab[:, 7:9, 7:9, 7:9] = 3
    mb = MicroBatch(
        real_img=torch.rand(2, 4, 16, 16, 16) * 2 - 1, real_mask=_one_hot(lab),
        real_cat=torch.tensor([[0], [1]]), real_cont=torch.zeros(2, 0), z=torch.randn(2, G.z_dim),
        gen_cat=torch.tensor([[0], [1]]), gen_cont=torch.zeros(2, 0), noise_seeds=[1, 2],
    )  # fmt: skip
    loss = StyleGANLoss(G, D, cfg, None, contextlib.nullcontext, [3], terms=build_terms(cfg))
    G.requires_grad_(False)
    D.requires_grad_(True)
    stats = loss.accumulate_gradients("D", mb, 1.0)
    expect = region_loss(D.seg(mb.real_img), region_targets(mb.real_mask)).sum().detach()
    assert float(stats["D/seg_fit"]) == pytest.approx(float(expect), rel=1e-5)
    assert all(p.grad is not None for p in D.seg.parameters())
    # G's phase: D (its segmenter too) is frozen by the loop; the gradient reaches G
    D.zero_grad(set_to_none=True)
    D.requires_grad_(False)
    G.requires_grad_(True)
    stats = loss.accumulate_gradients("G", mb, 1.0)
    assert float(stats["G/label_consistency"]) > 0
    assert all(p.grad is None for p in D.seg.parameters())
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in G.parameters())
    # ... through the images only: the target is G's argmax mask, detached
    img = torch.rand(1, 4, 16, 16, 16, requires_grad=True)
    probs = torch.softmax(torch.randn(1, 4, 16, 16, 16), 1).requires_grad_(True)
    term = build_terms(cfg)[1]
    value, _ = term.loss(type("I", (), {"mb": mb, "img": img, "probs": probs, "net": loss})())
    value.backward()
    assert img.grad is not None and float(img.grad.abs().sum()) > 0 and probs.grad is None


def test_training_fits_the_segmenter_to_real_masks_and_checkpoints_it(
    tmp_path: Path,
    fake_store,
    tiny_cfg,  # noqa: ANN001
) -> None:
    store = fake_store(n=4)
    cfg = tiny_cfg(train={"steps": 30}, loss={"seg_weight": 1.0})
    train(cfg, store, tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path)
    assert any(k.startswith("seg.") for k in ckpt["D"])
    fits = [
        float(v) for v in re.findall(r"D/seg_fit=([0-9.eE+-]+)", (tmp_path / "log.txt").read_text())
    ]
    assert len(fits) >= 20
    assert sum(fits[-5:]) / 5 < 0.8 * sum(fits[:5]) / 5  # the segmenter learns the real regions
    assert "G/label_consistency=" in (tmp_path / "log.txt").read_text()


def test_hierarchical_takes_it() -> None:
    """Label consistency runs on a hierarchical model's low-resolution view (trained in
    ``tests/training/test_hierarchical_train.py``)."""
    cfg = resolve_config("small-data", overrides=["model.hierarchical=true", "model.low_res=16",
                                                  "model.sub_volume=16", "loss.seg_weight=1"])  # fmt: skip
    assert cfg.model.hierarchical and cfg.loss.seg_weight == 1.0
