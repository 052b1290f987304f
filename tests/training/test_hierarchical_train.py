"""Hierarchical training (``model.hierarchical``): the configuration's checks, the real views, a
few finite steps, a checkpoint that loads and generates full-grid cases."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import pytest
import torch

from gliomagen.config import Config, preset
from gliomagen.errors import GliomagenError
from gliomagen.generation import generate_cohort
from gliomagen.models import build_discriminator, build_generator
from gliomagen.models.hierarchical import HierarchicalSynthesis
from gliomagen.training import load_checkpoint, load_generator, train
from gliomagen.training.batches import SubVolumePlan
from gliomagen.training.hierarchical import crop, real_low_view

HIER = {"hierarchical": True, "low_res": 16, "sub_volume": 16, "sub_volumes": 2}


def _hier(**model: object) -> Config:
    cfg = preset("demo-cpu")
    cfg.data.size = [32, 32, 32]
    for k, v in {**HIER, **model}.items():
        setattr(cfg.model, k, v)
    return cfg


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"low_res": 24}, "model.low_res=24"),
        ({"low_res": 32}, "model.low_res=32"),
        ({"low_res": 8}, "model.low_res=8"),
        ({"sub_volume": 18}, "model.sub_volume=18"),
        ({"sub_volume": 64}, "model.sub_volume=64"),
        ({"sub_volumes": 0}, "model.sub_volumes=0"),
        ({"style": "adain"}, "model.style='adain'"),
        ({"encoder": True}, "model.encoder=True"),
    ],
)
def test_inconsistent_values_are_refused_naming_the_key(
    change: dict[str, object], key: str
) -> None:
    with pytest.raises(
        GliomagenError, match=r"^" + key.replace("(", r"\(").replace(")", r"\)")
    ) as e:
        _hier(**change).validate()
    assert "\n" not in str(e.value)


def test_the_default_preset_and_2d_are_refused_with_one_line() -> None:
    cfg = preset("default")
    cfg.model.hierarchical = True
    with pytest.raises(GliomagenError, match=r"^model.encoder=True: the VAE-GAN encoder"):
        cfg.validate()
    cfg = preset("small-data-2d")
    cfg.model.hierarchical = True
    with pytest.raises(GliomagenError, match=r"^data.spatial_dims=2: model.hierarchical is for 3D"):
        cfg.validate()
    cfg = _hier()
    cfg.data.size = [32, 32, 16]
    with pytest.raises(GliomagenError, match=r"needs a cubic grid, got 32x32x16"):
        cfg.validate()
    _hier().validate()  # the consistent one passes
    assert (
        preset("default").model.hierarchical is False
        and preset("origin").model.hierarchical is False
    )


def test_real_views_and_corners() -> None:
    img = torch.arange(2 * 1 * 4**3, dtype=torch.float32).reshape(2, 1, 4, 4, 4)
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    labels[0, :2, :2, :1] = 2  # 2 of the 8 voxels of the first 2x2x2 block
    onehot = torch.nn.functional.one_hot(labels, 4).movedim(-1, 1).float()
    low_img, soft = real_low_view(img[:1], onehot, 2, hard=False)
    assert float(low_img[0, 0, 0, 0, 0]) == pytest.approx(float(img[0, 0, :2, :2, :2].mean()))
    assert soft[0, :, 0, 0, 0].tolist() == [0.5, 0.0, 0.5, 0.0]
    _, hard = real_low_view(img[:1], onehot, 2, hard=True)
    assert hard[0, :, 0, 0, 0].tolist() in ([1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0])
    assert torch.equal(crop(img, [2, 0, 2], 2), img[:, :, 2:4, 0:2, 2:4])
    corners = SubVolumePlan(full=32, side=16, step=2, count=50).corners(
        torch.Generator().manual_seed(0)
    )
    assert corners.shape == (50, 3) and int(corners.min()) >= 0 and int(corners.max()) <= 16
    assert bool((corners % 2 == 0).all()) and len(set(corners.flatten().tolist())) > 4


def test_a_few_steps_train_finite_and_generate_full_grid_cases(
    tmp_path: Path, fake_store, tiny_cfg
) -> None:  # noqa: ANN001
    cfg = tiny_cfg(
        model={**HIER, "d_mask": "straight_through"},
        loss={"r1_gamma": 1.0, "r1_interval": 2},
        augment={"ada": False, "p": 0.5},
        train={"steps": 3, "checkpoint_every": 3, "sample_every": 3},
    )
    store = fake_store(n=4, size=(32, 32, 32))
    store.meta["template_geometry"] = {}  # generate on the store grid with its spacing
    ckpt = train(cfg, store, tmp_path / "run", progress=False)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "non-finite" not in log and "finished at step 3" in log
    assert "G/adv_sub=" in log and "D/real_sub=" in log and "D/r1_sub=" in log
    c = load_checkpoint(ckpt)
    assert any(k.startswith("sub.") for k in c["D"]) and c["size"] == [32, 32, 32]
    for net in ("G", "D"):
        assert all(torch.isfinite(v).all() for v in c[net].values() if v.is_floating_point())
    G, schema, config, _meta = load_generator(ckpt)
    assert isinstance(G.synthesis, HierarchicalSynthesis) and config.model.hierarchical
    torch.manual_seed(cfg.train.seed)  # the run's initial networks (setup.build_networks)
    G0, D0 = build_generator(cfg, schema, (32,) * 3), build_discriminator(cfg, schema, (32,) * 3)
    for name in ("synthesis.layers.1.conv.weight", "synthesis.heads.0.to_img.weight"):  # the branch
        assert not torch.equal(c["G"][name], G0.state_dict()[name]), name
    for name in ("sub.from_input.weight", "low.from_input.weight"):
        assert not torch.equal(c["D"][name], D0.state_dict()[name]), name
    out = generate_cohort(ckpt, tmp_path / "cohort", n=2, seed=3, progress=False, space="native")
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["case_ids"]) == 2
    first = out / manifest["case_ids"][0]
    seg = nib.load(next(first.glob("*-seg.nii.gz")))
    assert seg.shape == (32, 32, 32)


def test_a_resumed_run_takes_the_uninterrupted_steps(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    """The sub-volume corners and the branch noise come from the step plan: resuming replays them."""

    def cfg() -> Config:
        return tiny_cfg(
            model=HIER,
            augment={"ada": False, "p": 0.5},
            train={"steps": 3, "checkpoint_every": 2, "sample_every": 100},
        )

    store = fake_store(n=4, size=(32, 32, 32))
    full = load_checkpoint(train(cfg(), store, tmp_path / "full", progress=False))

    class Killed(Exception):
        pass

    def kill_at_3(step: int) -> None:
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train(cfg(), store, tmp_path / "cut", callback=kill_at_3, progress=False)
    resumed = load_checkpoint(train(cfg(), store, tmp_path / "cut", resume=True, progress=False))
    assert resumed["step"] == full["step"] == 3
    for net in ("G", "D", "G_ema"):
        for k, v in full[net].items():
            assert torch.equal(v, resumed[net][k]), f"{net}.{k} differs after resume"
