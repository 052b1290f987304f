"""Presets, typed overrides, YAML round trip, and one-line errors (exit 2 from the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gliomagen.cli import app
from gliomagen.config import (
    PRESETS,
    dump_yaml,
    from_dict,
    load_yaml,
    preset,
    resolve_config,
    to_dict,
)
from gliomagen.errors import GliomagenError
from gliomagen.training import train


def test_origin_preset_is_the_origin_recipe() -> None:
    c = preset("origin")
    assert (c.loss.kind, c.model.style, c.train.batch_size, c.data.size) == (
        "lsgan",
        "adain",
        4,
        [128, 128, 128],
    )
    assert (c.train.lr_g, c.train.lr_d, c.train.betas_g, c.train.betas_d) == (
        4e-4,
        1e-4,
        (0.5, 0.999),
        (0.5, 0.999),
    )
    assert c.augment.ada is False and c.train.ema_half_life_images == 0.0


def test_small_data_and_demo_presets() -> None:
    s = preset("small-data")
    assert (s.model.style, s.loss.kind, s.augment.ada, s.model.aux_classifier) == (
        "modulated",
        "nonsaturating",
        True,
        True,
    )
    assert s.loss.r1_gamma > 0 and s.loss.r1_interval == 16 and s.train.ema_half_life_images > 0
    d = preset("demo-cpu")
    assert d.data.size == [32, 32, 32] and d.model.aux_classifier
    assert set(PRESETS) == {"default", "origin", "small-data", "demo-cpu", "origin-2d", "small-data-2d"}


def test_default_preset_is_the_recipe_and_what_train_runs() -> None:
    d = resolve_config()  # no --preset, no config file: what `gliomagen train` runs
    assert d.preset == "default" and d.data.size is None  # the store's grid
    assert (d.model.encoder, d.model.latent_prior, d.model.latent_prior_components) == (True, "fitted", 16)
    assert (d.model.mask_head, d.model.d_mask, d.model.start) == ("nested", "straight_through", "latent")
    assert (d.loss.presence_weight, d.loss.focality_weight, d.loss.kl_weight) == (1.0, 3.0, 0.2)
    assert d.loss.seg_weight == 1.0 and preset("origin").loss.seg_weight == 0.0  # label consistency
    assert (d.train.val_metric, d.train.val_required, d.train.latent_prior_every) == ("mask", False, 50)
    assert d.model.g_channels == preset("demo-cpu").model.g_channels
    o = preset("origin")  # the origin report's recipe stays as it was
    assert (o.loss.kind, o.train.lr_g, o.train.lr_d, o.train.batch_size) == ("lsgan", 4e-4, 1e-4, 4)


def test_overrides_are_typed() -> None:
    c = resolve_config(
        "demo-cpu",
        overrides=[
            "train.lr_g=1e-3",
            "train.betas_d=[0.1, 0.9]",
            "model.noise=false",
            "data.conditions=[grade]",
            "loss.r1_gamma=2",
        ],
    )
    assert c.train.lr_g == 1e-3 and c.train.betas_d == (0.1, 0.9) and c.model.noise is False
    assert (
        c.data.conditions == ["grade"]
        and c.loss.r1_gamma == 2.0
        and isinstance(c.loss.r1_gamma, float)
    )


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.lr=1", "unknown config key in train: 'lr'; did you mean 'lr_g'?"),
        ("trian.lr_g=1", "unknown config section 'trian'; did you mean 'train'?"),
        ("train.steps=1.5", "train.steps=1.5: expected int"),
        ("model.noise=maybe", "model.noise='maybe': expected bool"),
        ("model.style=stylegan", "model.style='stylegan': expected one of 'adain', 'modulated'"),
        ("data.size=[100,100,100]", "data.size=[100, 100, 100]: unsupported size"),
        ("train.batch_size=6", "train.batch_size=6: must be divisible by train.grad_accum=4"),
        ("train.lr_g=-1", "train.lr_g=-1.0: must be > 0"),
        ("lr_g", "--set 'lr_g': expected section.key=value"),
    ],
)
def test_errors_are_one_line(item: str, message: str) -> None:
    extra = ["train.grad_accum=4"] if "batch_size" in item else []
    with pytest.raises(GliomagenError) as err:
        resolve_config("demo-cpu", overrides=extra + [item])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_yaml_round_trip_and_file_errors(tmp_path: Path) -> None:
    c = resolve_config("small-data", overrides=["train.betas_g=[0.2, 0.9]"])
    dump_yaml(c, tmp_path / "c.yaml")
    back = from_dict(load_yaml(tmp_path / "c.yaml"))
    assert to_dict(back) == to_dict(c) and back.train.betas_g == (0.2, 0.9)
    (tmp_path / "bad.yaml").write_text("train:\n  lr_g: [1, 2]\n")
    with pytest.raises(GliomagenError, match=r"bad.yaml: train.lr_g=\[1, 2\]: expected float"):
        resolve_config(None, tmp_path / "bad.yaml")
    (tmp_path / "p.yaml").write_text("preset: origin\ntrain:\n  steps: 7\n")
    c = resolve_config(None, tmp_path / "p.yaml")
    assert c.preset == "origin" and c.train.steps == 7 and c.model.style == "adain"
    with pytest.raises(GliomagenError, match="file not found"):
        resolve_config(None, tmp_path / "missing.yaml")
    with pytest.raises(GliomagenError, match="unknown preset"):
        preset("tiny")


def test_condition_and_size_not_in_the_store(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = fake_store(n=4)
    with pytest.raises(
        GliomagenError,
        match="data.conditions: 'age' is not a condition of store; it has: cohort, grade",
    ):
        train(
            tiny_cfg(data={"conditions": ["grade", "age"]}), store, tmp_path / "a", progress=False
        )
    with pytest.raises(
        GliomagenError, match=r"data.size=32x32x32 but store holds 16x16x16 volumes"
    ):
        train(tiny_cfg(data={"size": [32, 32, 32]}), store, tmp_path / "b", progress=False)
    no_masks = fake_store(n=2, n_without_mask=2)
    with pytest.raises(GliomagenError, match="no case of this split has a tumour mask"):
        train(tiny_cfg(), no_masks, tmp_path / "c", progress=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.lr=1"], "error: unknown config key in train: 'lr'"),
        (["--set", "train.steps=abc"], "error: train.steps='abc': expected int"),
        (["--set", "data.size=[100,100,100]"], "unsupported size"),
        (["--preset", "large"], "error: --preset 'large': unknown preset"),
        (["--device", "tpu"], "error: --device 'tpu': expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_cli_config_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app, ["train", str(tmp_path), "--run", str(tmp_path / "run"), *args]
    )
    assert result.exit_code == 2
    err = result.stderr if hasattr(result, "stderr") else result.output
    assert message in err and len(err.strip().splitlines()) == 1


def test_shipped_config_files_resolve() -> None:
    """Every YAML recipe in configs/ is valid on top of demo-cpu (their documented base)."""
    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert files, f"no recipes in {root}"
    for f in files:
        cfg = resolve_config("demo-cpu", f)
        assert cfg.preset == "demo-cpu"
    vaegan = resolve_config("demo-cpu", root / "structure-vaegan.yaml")
    assert vaegan.model.latent_prior == "fitted" and vaegan.loss.kl_warmup_steps == 4000
    assert vaegan.train.val_metric == "mask" and vaegan.train.val_every == 500
    assert vaegan.model.latent_prior_components == 16
    assert vaegan.loss.presence_weight == 1.0 and vaegan.loss.focality_weight == 3.0


@pytest.mark.parametrize(
    ("key", "on"), [("model.tumour_crop", 16), ("loss.volume_weight", 1.0)]
)
def test_removed_options_refuse_a_value_and_ignore_their_off_value(
    tmp_path: Path, fake_store, tiny_cfg, key: str, on: float  # noqa: ANN001
) -> None:
    section, name = key.split(".")
    with pytest.raises(GliomagenError, match=f"{key}={on!r}: this option .* was removed"):
        resolve_config("demo-cpu", overrides=[f"{key}={on}"])
    assert to_dict(resolve_config("demo-cpu", overrides=[f"{key}=0"])) == to_dict(preset("demo-cpu"))
    # a checkpoint written while the option existed: off loads silently, on names the key
    from gliomagen.training import load_checkpoint, load_generator

    ckpt_path = train(tiny_cfg(train={"steps": 1}), fake_store(n=4), tmp_path / "run", progress=False)
    ckpt = load_checkpoint(ckpt_path)
    for value, ok in ((0, True), (on, False)):
        ckpt["config"][section][name] = value
        old = tmp_path / f"old-{ok}.pt"
        torch.save(ckpt, old)
        if ok:
            assert load_generator(old)[2].model.z_dim == 8
        else:
            with pytest.raises(GliomagenError, match=f"{key}={on!r}: this option .* was removed"):
                load_generator(old)
    # resuming such a run names the key too (ckpt_path is the run's newest checkpoint)
    torch.save(ckpt, ckpt_path)
    with pytest.raises(GliomagenError, match=f"{key}={on!r}: this option .* was removed"):
        train(tiny_cfg(train={"steps": 2}), fake_store(n=4), tmp_path / "run", resume=True, progress=False)
