"""Hierarchical training (``model.hierarchical``): the configuration's checks, the real views, a
few finite steps, a checkpoint that loads and generates full-grid cases."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import pytest
import torch

from gliomagen.config import Config, apply_grid_defaults, preset
from gliomagen.errors import GliomagenError
from gliomagen.generation import generate_cohort
from gliomagen.models import build_discriminator, build_generator
from gliomagen.models.encoder import LatentEncoder
from gliomagen.models.grid import low_view
from gliomagen.models.hierarchical import HierarchicalSynthesis
from gliomagen.training import load_checkpoint, load_generator, train
from gliomagen.training.batches import SubVolumePlan
from gliomagen.training.hierarchical import crop

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


def test_the_default_preset_validates_hierarchical_and_2d_is_refused_with_one_line() -> None:
    cfg = preset("default")  # the VAE-GAN and the other terms act on the low-resolution view
    cfg.model.hierarchical = True
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
    cfg = preset("default")
    cfg.model.hierarchical_from = -1
    with pytest.raises(GliomagenError, match=r"^model.hierarchical_from=-1: must be >= 0"):
        cfg.validate()
    assert (
        preset("default").model.hierarchical is False  # decided on the store's grid
        and preset("default").model.hierarchical_from == 64
        and preset("origin").model.hierarchical is False
        and preset("origin").model.hierarchical_from == 0
    )


@pytest.mark.parametrize(
    ("size", "on", "note"),
    [
        (
            (64, 64, 64),
            True,
            "model.hierarchical: on, the 64x64x64 grid reaches model.hierarchical_from=64",
        ),
        ((128, 128, 128), True, "(whole volume at 32^3, 1 sub-volume(s) of 32^3 per sample)"),
        ((32, 32, 32), False, None),
        ((64, 64), False, None),
        (
            (64, 64, 48),
            False,
            "model.hierarchical_from=64: the 64x64x48 grid trains full-volume (model.hierarchical",
        ),
    ],
)
def test_the_default_preset_turns_hierarchical_from_64(
    size: tuple[int, ...], on: bool, note: str | None
) -> None:
    cfg = preset("default")
    said = apply_grid_defaults(cfg, size)
    assert cfg.model.hierarchical is on
    assert (said is None) if note is None else (note in str(said))
    origin = preset("origin")
    assert apply_grid_defaults(origin, size) is None and origin.model.hierarchical is False


def test_the_encoder_reads_the_full_grid_as_its_low_view() -> None:
    torch.manual_seed(0)
    enc = LatentEncoder((16, 16, 16), 6, channels=4, max_channels=8).eval()
    img = torch.randn(2, 4, 32, 32, 32)
    onehot = (
        torch.nn.functional.one_hot(torch.randint(0, 4, (2, 32, 32, 32)), 4).movedim(-1, 1).float()
    )
    low_img, low_mask = low_view(img, onehot, 2, hard=True)
    with torch.no_grad():
        full, low = enc(img, onehot), enc(low_img, low_mask)
    assert all(torch.equal(a, b) for a, b in zip(full, low, strict=True))
    with pytest.raises(
        ValueError, match=r"reads \[16, 16, 16\] grids or a multiple, got \[24, 24, 24\]"
    ):
        enc(torch.zeros(1, 4, 24, 24, 24), torch.zeros(1, 4, 24, 24, 24))


def test_real_views_and_corners() -> None:
    img = torch.arange(2 * 1 * 4**3, dtype=torch.float32).reshape(2, 1, 4, 4, 4)
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    labels[0, :2, :2, :1] = 2  # 2 of the 8 voxels of the first 2x2x2 block
    onehot = torch.nn.functional.one_hot(labels, 4).movedim(-1, 1).float()
    low_img, soft = low_view(img[:1], onehot, 2, hard=False)
    assert float(low_img[0, 0, 0, 0, 0]) == pytest.approx(float(img[0, 0, :2, :2, :2].mean()))
    assert soft[0, :, 0, 0, 0].tolist() == [0.5, 0.0, 0.5, 0.0]
    _, hard = low_view(img[:1], onehot, 2, hard=True)
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


def test_the_default_recipe_trains_hierarchical_with_its_terms_on_the_low_view(
    tmp_path: Path, fake_store, tiny_cfg
) -> None:  # noqa: ANN001
    """The default preset at a grid that reaches ``model.hierarchical_from``: every term of its
    recipe runs (on the low-resolution view), the encoder sits at the low grid, and the fitted
    latent prior and generation work from the full-grid store."""
    small = tiny_cfg()
    cfg = preset("default")
    for key in ("z_dim", "w_dim", "mapping_layers", "cond_embed_dim", "g_channels", "g_max_channels",
                "d_channels", "d_max_channels"):  # fmt: skip
        setattr(cfg.model, key, getattr(small.model, key))
    cfg.model.hierarchical_from, cfg.model.low_res, cfg.model.sub_volume = 32, 16, 16
    cfg.model.latent_prior_components = 2
    t = cfg.train
    t.steps, t.threads, t.val_every, t.batch_size, t.log_every = 4, 1, 0, 4, 1
    t.checkpoint_every, t.sample_every, t.latent_prior_every, t.w_avg_samples = 4, 1000, 2, 16
    store = fake_store(n=6, size=(32, 32, 32))
    store.meta["template_geometry"] = {}
    ckpt = train(cfg.validate(), store, tmp_path / "run", progress=False)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "model.hierarchical: on, the 32x32x32 grid reaches model.hierarchical_from=32" in log
    last = [line for line in log.splitlines() if " step 4 G/adv=" in line][-1]
    assert "step 4 latent prior fitted to 6 encoded cases" in log
    for key in ("G/adv_sub", "G/recon_ce", "G/recon_l1", "G/kl", "G/presence", "G/focality",
                "G/label_consistency", "D/seg_fit", "D/real_sub"):  # fmt: skip
        value = float(last.split(f"{key}=")[1].split()[0])
        assert value == value and abs(value) < 1e4, key  # present and finite
    G, _schema, config, _meta = load_generator(ckpt)
    assert config.model.hierarchical and isinstance(G.synthesis, HierarchicalSynthesis)
    assert G.encoder is not None and G.encoder.size == (16, 16, 16)
    out = generate_cohort(ckpt, tmp_path / "cohort", n=2, seed=1, progress=False, space="native")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["latent_prior"] == "fitted"
    seg = nib.load(next((out / manifest["case_ids"][0]).glob("*-seg.nii.gz")))
    assert seg.shape == (32, 32, 32)
