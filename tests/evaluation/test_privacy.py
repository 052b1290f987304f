"""Privacy: closest-training distances and membership inference, on tiny structured cohorts."""

from __future__ import annotations

import json
from types import ModuleType

import numpy as np
import pytest
import torch

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.privacy import (
    Cases,
    auc_with_interval,
    format_privacy,
    image_rmse,
    mask_distance,
    privacy_report,
    probe_features,
)
from gliomagen.evaluation.probe import ProbeNet, to_probe_input

SIZE = 12
SPACES = ("voxel_image", "voxel_mask", "voxel", "feature")


def _cases(volumes: ModuleType, n: int, seed: int, prefix: str) -> Cases:
    images, masks, ids, _ = volumes.make_cohort(n, size=SIZE, seed=seed, prefix=prefix)
    return Cases(ids, images.astype(np.float32), masks)


def _mean_features(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """A cheap embedding: channel means and the tumour volume."""
    return np.c_[images.mean(axis=(2, 3, 4)), (masks > 0).sum(axis=(1, 2, 3))]


def test_image_rmse_and_mask_distance_values() -> None:
    a = np.zeros((2, 2, 4, 4, 4), np.float32)
    b = np.full((1, 2, 4, 4, 4), 0.5, np.float32)
    b[0, 1] = 0.0  # one channel of two differs by 0.5 -> RMSE 0.5 / sqrt(2)
    assert image_rmse(a, b) == pytest.approx(np.full((2, 1), 0.5 / np.sqrt(2)))
    assert image_rmse(a, a) == pytest.approx(np.zeros((2, 2)))

    m = np.zeros((4, 4, 4, 4), np.uint8)
    m[1, :2] = 2  # 32 voxels
    m[2, 1:3] = 3  # 32 voxels, 16 shared with case 1
    m[3, 2:] = 1  # 32 voxels, none shared with case 1
    d = mask_distance(m, m)
    assert d[0, 0] == 0.0  # both empty
    assert d[0, 1] == 1.0  # empty against a tumour
    assert d[1, 2] == pytest.approx(1 - 2 * 16 / 64)
    assert d[1, 3] == 1.0 and np.allclose(np.diag(d), 0.0)


def test_auc_interval() -> None:
    sep = auc_with_interval(np.arange(10.0) + 100, np.arange(10.0))
    assert sep["auc"] == 1.0 and sep["ci"] == [1.0, 1.0]
    same = auc_with_interval(np.zeros(8), np.zeros(8))
    assert same["auc"] == 0.5 and same["ci"] == [0.5, 0.5]
    rng = np.random.default_rng(1)
    m, n = rng.normal(size=30), rng.normal(size=25)
    out = auc_with_interval(m, n)
    assert out["ci"][0] < out["auc"] < out["ci"][1]
    assert out == auc_with_interval(m, n)  # seeded
    assert 0.1 < out["ci"][1] - out["ci"][0] < 0.5  # ~ +-2 SE of an AUC on 30 x 25 cases


def test_copies_of_training_cases_are_all_flagged(volumes: ModuleType) -> None:
    train = _cases(volumes, 16, 0, "TR")
    heldout = _cases(volumes, 16, 1, "HO")
    copies = Cases([f"SYN-{i}" for i in range(16)], train.images.copy(), train.masks.copy())
    d_scores = {**{i: 1.0 for i in train.ids}, **{i: 0.0 for i in heldout.ids}}
    rep = privacy_report(train, heldout, copies, features=_mean_features, d_scores=d_scores)
    assert set(rep["spaces"]) == set(SPACES)
    for name in SPACES:
        s = rep["spaces"][name]
        assert s["heldout_percentile"] > 0.01, name
        assert max(r["distance"] for r in s["synthetic"]) < 1e-6, name
        assert s["synthetic_percentile"] < 1e-6 and not s["passes"], name
        assert s["difference_ci"][1] < 0 and not s["uncertain"], name
        assert s["n_flagged"] == 16 and s["fraction_flagged"] == 1.0, name
        # a copy's closest training case is its original (masks may tie: same distance 0)
        if name != "voxel_mask":
            assert [r["closest_train"] for r in s["synthetic"]] == train.ids, name
        # members were copied, non-members not: every member is told apart
        assert rep["membership"]["attacks"][name]["auc"] == pytest.approx(1.0), name
    assert rep["membership"]["attacks"]["d_score"]["auc"] == 1.0
    assert rep["membership"]["max_auc"] == 1.0 and not rep["membership"]["passes"]
    assert not rep["membership"]["uncertain"]
    assert not rep["closest_passes"] and not rep["passes"]
    assert rep["flagged_ids"] == sorted(copies.ids)
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep  # plain JSON types only
    text = format_privacy(rep)
    assert "voxel_image" in text and "16/16 (100%)" in text and "pass NO" in text
    assert "SYN-0 -> TR-00000" in text


def test_independent_cases_are_rarely_flagged(volumes: ModuleType) -> None:
    train = _cases(volumes, 40, 10, "TR")
    heldout = _cases(volumes, 40, 11, "HO")
    synthetic = _cases(volumes, 40, 12, "SYN")
    rep = privacy_report(train, heldout, synthetic, features=_mean_features)
    for name in SPACES:
        s = rep["spaces"][name]
        # new cases fall under the held-out 5th percentile at about 5% (here 2 of 40)
        assert s["fraction_flagged"] <= 0.2, name
        assert s["heldout_fraction_below"] <= 0.05, name
        # the synthetic cases' closest distances look like the held-out ones
        assert s["synthetic_percentile"] == pytest.approx(s["heldout_percentile"], rel=0.5), name
        assert s["uncertain"] and s["difference_ci"][0] < 0 < s["difference_ci"][1], name
        a = rep["membership"]["attacks"][name]
        assert 0.3 < a["auc"] < 0.7 and a["ci"][0] < 0.5 < a["ci"][1], name
        assert (a["n_members"], a["n_nonmembers"]) == (40, 40)
    assert "d_score" not in rep["membership"]["attacks"]
    assert rep["membership"]["passes"] == (rep["membership"]["max_auc"] <= 0.6)
    assert set(rep["flagged_ids"]) <= set(synthetic.ids)
    assert "Membership inference" in format_privacy(rep)


def test_members_keep_the_attack_within_the_heldout_population(volumes: ModuleType) -> None:
    """A training set of two cohorts, held-out and synthetic cases of one: attacking every training
    case tells the cohorts apart; attacking that cohort's training cases measures membership."""
    other = _cases(volumes, 30, 20, "GLI")
    other = Cases(other.ids, other.images + 3.0, other.masks)  # another cohort: far in images
    scarce = _cases(volumes, 20, 21, "SSA")
    train = Cases(
        other.ids + scarce.ids, np.r_[other.images, scarce.images], np.r_[other.masks, scarce.masks]
    )
    heldout = _cases(volumes, 30, 22, "HO")
    fresh = _cases(volumes, 30, 23, "SYN")
    mixed = privacy_report(train, heldout, fresh)["membership"]["attacks"]["voxel_image"]
    assert mixed["auc"] < 0.35 and mixed["n_members"] == 50  # the cohort shift, not membership
    rep = privacy_report(train, heldout, fresh, members=scarce.ids)
    a = rep["membership"]["attacks"]["voxel_image"]
    assert (a["n_members"], a["n_nonmembers"]) == (20, 30)
    assert 0.3 < a["auc"] < 0.7 and a["ci"][0] < 0.5 < a["ci"][1]
    # the closest-training distances still use every training case
    assert rep["spaces"]["voxel_image"]["synthetic"][0]["closest_train"] in train.ids
    copies = Cases([f"C-{i}" for i in range(20)], scarce.images.copy(), scarce.masks.copy())
    d_scores = {
        **{i: 0.0 for i in other.ids},
        **{i: 1.0 for i in scarce.ids},
        **{i: 0.0 for i in heldout.ids},
    }
    rep = privacy_report(train, heldout, copies, members=scarce.ids, d_scores=d_scores)
    assert rep["membership"]["attacks"]["voxel_image"]["auc"] == pytest.approx(1.0)
    assert rep["membership"]["attacks"]["d_score"]["auc"] == 1.0  # members' scores only
    with pytest.raises(GliomagenError, match="members must be training case ids.*'HO-00000'"):
        privacy_report(train, heldout, fresh, members=[heldout.ids[0]])
    with pytest.raises(GliomagenError, match="members must be training case ids, got 0"):
        privacy_report(train, heldout, fresh, members=[])


def test_voxel_space_is_the_mean_of_the_scaled_spaces(volumes: ModuleType) -> None:
    train = _cases(volumes, 6, 0, "TR")
    heldout = _cases(volumes, 3, 1, "HO")
    synthetic = _cases(volumes, 4, 2, "SYN")
    rep = privacy_report(train, heldout, synthetic)
    assert "feature" not in rep["spaces"]
    scale = rep["voxel_scale"]
    d_img = image_rmse(synthetic.images, train.images) / scale["image"]
    d_msk = mask_distance(synthetic.masks, train.masks) / scale["mask"]
    expected = (0.5 * (d_img + d_msk)).min(1)
    got = [r["distance"] for r in rep["spaces"]["voxel"]["synthetic"]]
    assert got == pytest.approx(expected)
    tt = image_rmse(train.images, train.images)
    assert scale["image"] == pytest.approx(np.median(tt[~np.eye(6, dtype=bool)]))


def test_bad_input_is_refused(volumes: ModuleType) -> None:
    train = _cases(volumes, 4, 0, "TR")
    heldout = _cases(volumes, 3, 1, "HO")
    with pytest.raises(GliomagenError, match="masks"):
        Cases(train.ids, train.images, train.masks[:, :-1])
    with pytest.raises(GliomagenError, match="unique"):
        Cases(["a", "a", "b", "c"], train.images, train.masks)
    with pytest.raises(GliomagenError, match="at least 2 training"):
        privacy_report(Cases(["x"], train.images[:1], train.masks[:1]), heldout, heldout)
    small = Cases(heldout.ids, heldout.images[:, :, :-1, :-1, :-1], heldout.masks[:, :-1, :-1, :-1])
    with pytest.raises(GliomagenError, match="held-out images"):
        privacy_report(train, small, heldout)
    with pytest.raises(GliomagenError, match="both in training and held-out"):
        privacy_report(train, train, heldout)
    with pytest.raises(GliomagenError, match="percentile"):
        privacy_report(train, heldout, heldout, percentile=0)
    with pytest.raises(GliomagenError, match="d_scores: no discriminator score"):
        privacy_report(train, heldout, heldout, d_scores={train.ids[0]: 1.0})
    with pytest.raises(GliomagenError, match="features of the training cases"):
        privacy_report(train, heldout, heldout, features=lambda im, m: np.zeros((1, 2)))


def test_probe_features_embeds_in_batches(volumes: ModuleType) -> None:
    cases = _cases(volumes, 5, 0, "TR")
    torch.manual_seed(0)
    net = ProbeNet(4, 2, {}).eval()

    @torch.no_grad()
    def probe(x: torch.Tensor) -> torch.Tensor:
        return net.features(to_probe_input(x, 16))

    feats = probe_features(probe, batch_size=2)(cases.images, cases.masks)
    assert feats.shape == (5, net.feature_dim) and feats.dtype == np.float64
    whole = probe(torch.from_numpy(cases.images)).double().numpy()
    assert feats == pytest.approx(whole, abs=1e-5)


def test_discriminator_scores_from_a_saved_checkpoint(tmp_path, volumes: ModuleType) -> None:
    """The attack through D: D rebuilt from a checkpoint scores each case as the mean over its
    anchor pairs (the minibatch-std group), the same case alike wherever it stands, and a
    d_scores report gets the d_score attack."""
    from gliomagen.config import resolve_config, to_dict
    from gliomagen.data.conditions import ConditionField, ConditionSchema
    from gliomagen.evaluation.privacy import discriminator_scores
    from gliomagen.io.checkpoint import FORMAT_VERSION, save_checkpoint
    from gliomagen.models import build_discriminator, build_generator
    from gliomagen.models.loading import load_discriminator

    schema = ConditionSchema([ConditionField("cohort", "categorical", categories=["GLI", "SSA"])])
    cfg = resolve_config("demo-cpu")
    m = cfg.model
    m.d_channels, m.d_max_channels, m.g_channels, m.g_max_channels = 4, 8, 4, 8
    cfg.data.size = [16, 16, 16]
    torch.manual_seed(0)
    D = build_discriminator(cfg, schema, (16, 16, 16))
    G = build_generator(cfg, schema, (16, 16, 16))
    state = {
        "format_version": FORMAT_VERSION, "step": 0, "images_seen": 0, "G": G.state_dict(),
        "G_ema": G.state_dict(), "D": D.state_dict(), "config": to_dict(cfg),
        "schema": schema.to_dict(), "store_meta": {}, "size": [16, 16, 16], "n_modalities": 4,
    }  # fmt: skip
    loaded, schema2, _ = load_discriminator(save_checkpoint(state, tmp_path))
    assert schema2.names == ["cohort"] and not loaded.training
    for a, b in zip(D.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    images, masks, ids, _ = volumes.make_cohort(6, size=16, seed=1, prefix="R")
    cases = Cases(ids[:4], images[:4].astype(np.float32), masks[:4])
    anchors = Cases(ids[4:], images[4:].astype(np.float32), masks[4:])
    cat, cont = np.array([[0], [1], [0], [1]]), np.zeros((4, 0), np.float32)
    a_cat, a_cont = np.array([[0], [0]]), np.zeros((2, 0), np.float32)
    scores = discriminator_scores(loaded, cases, cat, cont, anchors, a_cat, a_cont)
    assert list(scores) == ids[:4]

    def one(i: int, j: int) -> float:
        img = torch.from_numpy(np.stack([cases.images[i], anchors.images[j]]))
        lab = torch.from_numpy(np.stack([cases.masks[i], anchors.masks[j]]).astype(np.int64))
        mask = torch.nn.functional.one_hot(lab, 4).movedim(-1, 1).float()
        c = torch.tensor([[int(cat[i, 0])], [0]])
        with torch.no_grad():
            return float(loaded(img, mask, c, torch.zeros(2, 0)).score[0])

    assert scores[ids[1]] == pytest.approx((one(1, 0) + one(1, 1)) / 2, abs=1e-6)
    assert len(set(scores.values())) == 4  # cases are told apart
    again = discriminator_scores(
        loaded, Cases(ids[3:4], cases.images[3:4], cases.masks[3:4]), cat[3:4], cont[3:4],
        anchors, a_cat, a_cont,
    )  # fmt: skip
    assert again[ids[3]] == pytest.approx(scores[ids[3]], abs=1e-6)  # alone or in a list: alike
    with pytest.raises(GliomagenError, match="condition rows"):
        discriminator_scores(loaded, cases, cat[:2], cont, anchors, a_cat, a_cont)
    with pytest.raises(GliomagenError, match="anchor"):
        discriminator_scores(
            loaded,
            cases,
            cat,
            cont,
            Cases([], anchors.images[:0], anchors.masks[:0]),
            a_cat[:0],
            a_cont,
        )
    train = Cases(ids[:2], cases.images[:2], cases.masks[:2])
    held = Cases(ids[2:4], cases.images[2:4], cases.masks[2:4])
    rep = privacy_report(train, held, anchors, d_scores=scores)
    assert rep["membership"]["attacks"]["d_score"]["n_members"] == 2
