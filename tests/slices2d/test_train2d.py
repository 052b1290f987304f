"""Training on a slice store: the same loop and losses in 2D, the 2D presets and their checks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from slices2d_helpers import SIDE, run_cli, tiny_2d

from gliomagen.config import check_store_size, preset, resolve_config
from gliomagen.data import open_store
from gliomagen.errors import GliomagenError
from gliomagen.io.checkpoint import load_checkpoint
from gliomagen.models import build_generator
from gliomagen.models.loading import load_generator
from gliomagen.training import train


def test_a_slice_store_trains_with_small_data_2d(run2d: Path, slice_store: Path) -> None:
    G, schema, cfg, meta = load_generator(run2d)
    assert cfg.preset == "small-data-2d" and meta["size"] == [SIDE, SIDE]
    assert G.synthesis.spatial_dims == 2 and {"view", "position"} <= set(schema.names)
    ckpt = load_checkpoint(run2d)
    assert ckpt["step"] == 3 and ckpt["size"] == [SIDE, SIDE]
    cat = torch.zeros(1, len(schema.categorical), dtype=torch.long)
    with torch.no_grad():
        img, logits = G(torch.randn(1, G.z_dim), cat, torch.zeros(1, len(schema.continuous)))
    assert img.shape == (1, 4, SIDE, SIDE) and logits.shape == (1, 4, SIDE, SIDE)


@pytest.mark.parametrize(
    "loss",
    [
        ["loss.kind=lsgan", "loss.r1_gamma=0"],
        ["loss.kind=nonsaturating", "loss.r1_gamma=1.0", "loss.r1_interval=1"],
        ["loss.kind=hinge", "loss.r1_gamma=0"],
        ["loss.kind=wgan-gp", "loss.r1_gamma=0"],
    ],
)
def test_every_loss_runs_in_2d(slice_store: Path, tmp_path: Path, loss: list[str]) -> None:
    """Two steps of each loss (with R1 / the gradient penalty) on 2-D slices: finite, and G moves."""
    cfg = tiny_2d("train.steps=2", "augment.p=0.5", *loss)
    train(cfg, slice_store, tmp_path, progress=False)
    log = (tmp_path / "log.txt").read_text()
    steps = [line for line in log.splitlines() if " step " in line and "G/adv=" in line]
    assert len(steps) == 2 and "non-finite" not in log
    values = [
        float(t.split("=")[1])
        for line in steps
        for t in line.split()
        if "=" in t and "/" in t.split("=")[0]
    ]
    assert values and all(math.isfinite(v) for v in values)
    if "r1_interval=1" in loss:
        assert "D/r1=" in steps[0]
    if "wgan-gp" in loss[0]:
        assert "D/gp=" in steps[0]
    ckpt = load_checkpoint(tmp_path)
    torch.manual_seed(cfg.train.seed)  # the initial G: the loop seeds, then builds it
    start = build_generator(cfg, open_store(slice_store, "train").schema, (SIDE, SIDE))
    moved = [
        not torch.equal(ckpt["G"][k], v)
        for k, v in start.state_dict().items()
        if v.is_floating_point()
    ]
    assert any(moved)


def test_2d_presets() -> None:
    o = preset("origin-2d").validate()
    assert (o.data.size, o.data.spatial_dims, o.loss.kind, o.model.style) == (
        [256, 256],
        2,
        "lsgan",
        "adain",
    )
    assert (o.train.lr_g, o.train.lr_d, o.train.betas_g, o.train.batch_size) == (
        4e-4,
        1e-4,
        (0.5, 0.999),
        4,
    )
    assert o.model.aux_classifier is False and o.augment.ada is False
    s = preset("small-data-2d").validate()
    assert (s.data.size, s.data.spatial_dims, s.model.style, s.loss.kind, s.augment.ada) == (
        None, 2, "modulated", "nonsaturating", True,
    )  # fmt: skip
    assert s.train.batch_size == 16
    with pytest.raises(
        GliomagenError, match=r"data.size=\[64, 64, 64\]: has 3 sides but data.spatial_dims=2"
    ):
        resolve_config("small-data-2d", overrides=["data.size=[64, 64, 64]"])
    with pytest.raises(GliomagenError, match="data.spatial_dims=4: must be 2"):
        resolve_config("small-data", overrides=["data.spatial_dims=4"])


def test_store_dimensions_are_checked() -> None:
    with pytest.raises(GliomagenError) as err:
        check_store_size(preset("origin"), (64, 64), "S2")
    assert str(err.value) == (
        "preset origin: data.size=128x128x128 is for 3D volumes but S2 is a 2D slice store (64x64); "
        "use --preset origin-2d or small-data-2d, or --set data.size=null --set data.spatial_dims=null"
    )
    with pytest.raises(
        GliomagenError, match="data.spatial_dims=2 is for 2D slices but V is a 3D volume store"
    ):
        check_store_size(preset("small-data-2d"), (32, 32, 32), "V")
    with pytest.raises(GliomagenError, match="data.size=256x256 but S2 holds 64x64 slices"):
        check_store_size(preset("origin-2d"), (64, 64), "S2")
    check_store_size(preset("small-data-2d"), (64, 64), "S2")  # any slice size fits
    check_store_size(
        preset("small-data"), (64, 64), "S2"
    )  # no size, no dimensions: the store's own
    check_store_size(preset("demo-cpu"), (32, 32, 32), "V")


def test_a_3d_preset_is_refused_on_a_slice_store(slice_store: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(
        "train",
        slice_store,
        "--run",
        tmp_path / "r",
        "--preset",
        "demo-cpu",
        "--set",
        "train.steps=1",
    )
    assert code == 2 and err.startswith("error: preset demo-cpu: data.size=32x32x32 is for 3D volumes") and f"{SIDE}x{SIDE}" in err
    assert not (tmp_path / "r").exists()
