"""A run killed and resumed ends with exactly the weights of an uninterrupted run (CPU, fixed seed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gliomagen.training import load_checkpoint, train


class Killed(Exception):
    pass


def _cfg(tiny_cfg):  # noqa: ANN001, ANN202
    # ADA, R1 (lazy every 2 steps), style mixing, EMA: every piece of state a resume must restore
    return tiny_cfg(
        loss={"kind": "nonsaturating", "r1_gamma": 1.0, "r1_interval": 2},
        augment={"ada": True, "p": 0.3, "interval": 1, "speed_images": 100.0},
        train={"steps": 6, "checkpoint_every": 3, "style_mixing": 0.5, "ema_half_life_images": 8.0},
    )


def test_killed_and_resumed_equals_uninterrupted(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = fake_store(n=6)
    full = load_checkpoint(train(_cfg(tiny_cfg), store, tmp_path / "full", progress=False))

    def kill_at_5(step: int) -> None:
        if step == 5:  # the last checkpoint is step 3; steps 4-5 are lost
            raise Killed

    with pytest.raises(Killed):
        train(_cfg(tiny_cfg), store, tmp_path / "cut", callback=kill_at_5, progress=False)
    resumed = load_checkpoint(
        train(_cfg(tiny_cfg), store, tmp_path / "cut", resume=True, progress=False)
    )

    assert resumed["step"] == full["step"] == 6
    assert resumed["aug_p"] == full["aug_p"] and full["aug_p"] != 0.3
    for net in ("G", "D", "G_ema"):
        for k, v in full[net].items():
            assert torch.equal(v, resumed[net][k]), f"{net}.{k} differs after resume"
    for k, v in full["opt_D"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], resumed["opt_D"]["state"][k]["exp_avg_sq"])


def test_resume_refuses_a_changed_model(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    from gliomagen.errors import GliomagenError

    store = fake_store(n=4)
    train(tiny_cfg(train={"steps": 1}), store, tmp_path / "r", progress=False)
    with pytest.raises(GliomagenError, match="model.g_channels differs"):
        train(
            tiny_cfg(train={"steps": 2}, model={"g_channels": 2}),
            store,
            tmp_path / "r",
            resume=True,
            progress=False,
        )
    with pytest.raises(GliomagenError, match="already holds checkpoints"):
        train(tiny_cfg(train={"steps": 2}), store, tmp_path / "r", progress=False)
    with pytest.raises(GliomagenError, match="no checkpoints to resume"):
        train(tiny_cfg(), store, tmp_path / "empty", resume=True, progress=False)


ENCODER = {"encoder": True}
VAE_LOSS = {"recon_weight": 1.0, "recon_img_weight": 1.0, "kl_weight": 0.1}
DRAWING_OPTIONS = {
    # every option that draws random numbers during training
    "minibatch-noise-mixing": {"train": {"style_mixing": 0.5}},
    "ada": {"augment": {"ada": True, "p": 0.3, "interval": 1, "speed_images": 100.0}},
    "encoder": {"model": ENCODER, "loss": VAE_LOSS},
    "prior-refits": {
        "model": {**ENCODER, "latent_prior": "fitted", "latent_prior_components": 2},
        "loss": VAE_LOSS,
        "train": {"latent_prior_every": 2},
    },
    "d-dropout": {"model": {"d_dropout": 0.3}},
}


@pytest.mark.parametrize("option", sorted(DRAWING_OPTIONS))
def test_resume_is_exact_for_every_option_that_draws(
    option: str, tmp_path: Path, fake_store, tiny_cfg, same_state  # noqa: ANN001
) -> None:
    """5 steps uninterrupted == 3 steps (killed after the step-2 checkpoint), resumed to 5: every
    tensor of G, G_ema, D and both optimisers, and the counters, equal."""

    def cfg():  # noqa: ANN202
        sections = {k: dict(v) for k, v in DRAWING_OPTIONS[option].items()}
        sections["train"] = {"steps": 5, "checkpoint_every": 2, **sections.get("train", {})}
        return tiny_cfg(**sections)

    store = fake_store(n=6)
    full = load_checkpoint(train(cfg(), store, tmp_path / "full", progress=False))

    def kill_at_3(step: int) -> None:
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        train(cfg(), store, tmp_path / "cut", callback=kill_at_3, progress=False)
    torch.manual_seed(1234)  # whatever the process drew since: the resume restores its generators
    resumed = load_checkpoint(train(cfg(), store, tmp_path / "cut", resume=True, progress=False))
    assert resumed["step"] == full["step"] == 5
    for key in ("G", "G_ema", "D", "opt_G", "opt_D", "aug_p", "images_seen"):
        same_state(full[key], resumed[key], key)
    same_state(
        {k: v for k, v in full["train_state"].items() if k != "elapsed_s"},
        {k: v for k, v in resumed["train_state"].items() if k != "elapsed_s"},
        "train_state",
    )
