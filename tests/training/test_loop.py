"""The loop: run folder, every loss, accumulation, ADA direction, budget, checkpoints, load_generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from gliomagen.io.checkpoint import list_checkpoints
from gliomagen.training import load_checkpoint, load_generator, losses, train


def test_run_folder_and_generator_round_trip(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    cfg = tiny_cfg(
        train={"steps": 4, "checkpoint_every": 1, "keep_checkpoints": 2, "sample_every": 2}
    )
    ckpt = train(cfg, fake_store(n=4), tmp_path, progress=False)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step-0000003.pt",
        "step-0000004.pt",
    ] and ckpt.name == "step-0000004.pt"
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no temp files left
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["steps"] == 4
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "step-0000002.png",
        "step-0000004.png",
    ]
    assert list((tmp_path / "tensorboard").glob("events.*"))
    log = (tmp_path / "log.txt").read_text()
    assert "step 4 G/adv=" in log and "finished at step 4" in log
    c = load_checkpoint(tmp_path)
    expected = {
        "format_version",
        "step",
        "images_seen",
        "G",
        "D",
        "G_ema",
        "opt_G",
        "opt_D",
        "aug_p",
        "train_state",
        "rng",
        "config",
        "schema",
        "store_meta",
        "store",
        "size",
        "n_modalities",
        "w_avg",
    }
    assert set(c) == expected and c["images_seen"] == 16
    assert c["store"]["fingerprint"].startswith("sha256:")
    assert (
        c["store_meta"]["size"] == [16, 16, 16]
        and c["store_meta"]["template_geometry"]["reference_shape"]
    )
    assert c["w_avg"]["cat"].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and c["w_avg"][
        "w"
    ].shape == (4, 16)
    G, schema, config, meta = load_generator(tmp_path)
    assert (
        schema.names == ["cohort", "grade", "wt_volume_ml"]
        and config.train.steps == 4
        and "w_avg" in meta
    )
    for k, v in c["G_ema"].items():
        assert torch.equal(G.state_dict()[k], v)
    with torch.no_grad():
        img, logits = G(
            torch.randn(2, 8), torch.tensor([[0, 1], [1, 0]]), torch.zeros(2, 1), noise_mode="const"
        )
    assert img.shape == (2, 4, 16, 16, 16) and logits.shape == (2, 4, 16, 16, 16)


@pytest.mark.parametrize(
    "sections",
    [
        {"loss": {"kind": "lsgan"}, "model": {"style": "adain"}},
        {"loss": {"kind": "nonsaturating", "r1_gamma": 1.0, "r1_interval": 2}},
        {"loss": {"kind": "hinge"}, "model": {"spectral_norm": True}},
        {"loss": {"kind": "wgan-gp"}, "model": {"aux_classifier": False}},
    ],
)
def test_every_loss_trains_and_logs_its_terms(
    tmp_path: Path, fake_store, tiny_cfg, sections
) -> None:  # noqa: ANN001
    train(tiny_cfg(train={"steps": 2}, **sections), fake_store(n=4), tmp_path, progress=False)
    c = load_checkpoint(tmp_path)
    assert all(bool(torch.isfinite(v).all()) for v in c["D"].values())
    log = (tmp_path / "log.txt").read_text()
    assert "non-finite" not in log
    kind = sections["loss"]["kind"]
    if kind == "wgan-gp":
        assert "D/gp=" in log and "aux=" not in log
    if kind == "nonsaturating":
        assert "D/r1=" in log


def test_grad_accumulation_matches_one_big_batch(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    store = fake_store(n=6)
    base = {
        "model": {"mbstd_group": 2},
        "loss": {"kind": "nonsaturating", "r1_gamma": 1.0, "r1_interval": 1},
    }
    a = load_checkpoint(
        train(tiny_cfg(train={"steps": 2}, **base), store, tmp_path / "a", progress=False)
    )
    b = load_checkpoint(
        train(
            tiny_cfg(train={"steps": 2, "grad_accum": 2}, **base),
            store,
            tmp_path / "b",
            progress=False,
        )
    )
    for net in ("G", "D"):
        for k, v in a[net].items():
            torch.testing.assert_close(b[net][k], v, rtol=1e-4, atol=1e-5, msg=f"{net}.{k}")


@pytest.mark.parametrize(("offset", "up"), [(-1e9, True), (1e9, False)])
def test_ada_p_moves_with_the_overfitting_signal(
    tmp_path: Path,
    fake_store,
    tiny_cfg,
    monkeypatch,
    offset: float,
    up: bool,  # noqa: ANN001
) -> None:
    # moving the real/fake threshold makes every real score read as 'real' (D overfits: p must rise)
    # or as 'fake' (p must fall); target 0.6 as in StyleGAN2-ADA
    monkeypatch.setitem(losses.REAL_SIGN_OFFSET, "lsgan", offset)
    cfg = tiny_cfg(
        augment={"ada": True, "p": 0.5, "interval": 1, "speed_images": 40.0}, train={"steps": 3}
    )
    train(cfg, fake_store(n=4), tmp_path, progress=False)
    p = load_checkpoint(tmp_path)["aug_p"]
    assert p == pytest.approx(0.5 + (0.3 if up else -0.3))  # 3 steps x 4 images / 40


def test_max_minutes_stops_and_checkpoints(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    ckpt = train(
        tiny_cfg(train={"steps": 1000}), fake_store(n=4), tmp_path, max_minutes=1e-6, progress=False
    )
    c = load_checkpoint(ckpt)
    assert c["step"] == 1 and c["train_state"]["elapsed_s"] > 0
    assert "--max-minutes" in (tmp_path / "log.txt").read_text()
    resumed = load_checkpoint(
        train(tiny_cfg(train={"steps": 2}), fake_store(n=4), tmp_path, resume=True, progress=False)
    )
    assert resumed["step"] == 2


def test_a_2d_store_trains_through_the_same_loop(tmp_path: Path, fake_store, tiny_cfg) -> None:  # noqa: ANN001
    cfg = tiny_cfg(augment={"ada": True, "p": 0.5}, loss={"kind": "nonsaturating", "r1_gamma": 1.0})
    train(cfg, fake_store(n=4, size=(32, 32)), tmp_path, progress=False)
    G, _, _, meta = load_generator(tmp_path)
    assert meta["size"] == [32, 32] and G.synthesis.spatial_dims == 2
    with torch.no_grad():
        img, logits = G(torch.randn(1, 8), torch.tensor([[0, 1]]), torch.zeros(1, 1))
    assert img.shape == (1, 4, 32, 32) and logits.shape == (1, 4, 32, 32)


def test_stacked_batches_survive_pinning_and_match_per_item_collation(fake_store) -> None:  # noqa: ANN001
    from torch.utils.data._utils.pin_memory import pin_memory

    from gliomagen.training.batches import StackedItems, TrainingData, stack_items

    store = fake_store(n=3)
    items = [store[i] for i in range(3)]
    stacked = stack_items(items)
    assert isinstance(stacked, StackedItems) and stacked.images.shape[0] == 3
    # the loader's pinning rebuilds named tuples as themselves (plain tuples become lists)
    pinned = pin_memory(stacked, device="cpu") if torch.cuda.is_available() else stacked
    assert isinstance(pinned, StackedItems)
    data = TrainingData.__new__(TrainingData)
    a_img, a_mask = data.collate_real(stacked, torch.device("cpu"))
    b_img, b_mask = data.collate_real(items, torch.device("cpu"))
    assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask)
    assert a_img.dtype == torch.float32 and a_mask.shape[1] == 4
    assert float(a_mask.sum(1).min()) == 1.0  # one-hot at every voxel
