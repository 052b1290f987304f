"""Memorisation audit: near copies of training cases are flagged, new cases are not; diversity and fidelity."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

from gliomagen.evaluation import audits
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.features import build_extractor, extract_features
from gliomagen.evaluation.probe import ProbeOptions


@pytest.fixture(scope="module")
def cohorts(volumes: ModuleType) -> dict[str, Any]:
    """Training (30), reference held-out (20) and a second held-out set (10), 24^3; 6 noisy training copies."""

    def make(n: int, seed: int, prefix: str) -> CaseSet:
        imgs, masks, ids, labels = volumes.make_cohort(n, size=24, seed=seed, prefix=prefix)
        return CaseSet.from_arrays(imgs, masks, case_ids=ids, labels=labels, name=prefix)

    train, ref, other = make(30, 11, "TRAIN"), make(20, 12, "REF"), make(10, 13, "NEW")
    imgs, masks = train.load(np.arange(0, 30, 5))
    rng = np.random.default_rng(0)
    noisy = imgs.numpy() + rng.normal(0, 0.02, imgs.shape).astype(np.float32)  # slight noise
    noisy = np.where(imgs.numpy() > -1, np.clip(noisy, -0.99, 1), -1.0).astype(np.float32)
    copies = CaseSet.from_arrays(
        noisy, masks.numpy(), case_ids=[f"COPY-of-{train.case_ids[i]}" for i in range(0, 30, 5)],
        labels=[train.labels[i] for i in range(0, 30, 5)], name="COPY",
    )  # fmt: skip
    other_imgs, other_masks = other.load(np.arange(10))
    synthetic = CaseSet.from_arrays(
        np.concatenate([noisy, other_imgs.numpy()]), np.concatenate([masks.numpy(), other_masks.numpy()]),
        case_ids=copies.case_ids + other.case_ids, labels=copies.labels + other.labels, name="synthetic",
    )  # fmt: skip
    return {"train": train, "ref": ref, "synthetic": synthetic}


def test_noisy_copies_are_flagged_and_new_cases_are_not(cohorts: dict[str, Any]) -> None:
    train, ref, syn = cohorts["train"], cohorts["ref"], cohorts["synthetic"]
    ex = build_extractor(
        "probe", train=train, probe_options=ProbeOptions(size=24, width=8, steps=60)
    )
    ft, fr, fs = (extract_features(ex, c) for c in (train, ref, syn))
    zt, zr, zs = audits.standardise(ft, fr, fs)
    coarse = {
        k: np.concatenate([audits.coarse_vectors(b[1]) for b in c.batches(8)])
        for k, c in cohorts.items()
    }
    nn_ref = audits.nearest_training(ref, zr, coarse["ref"], train, zt, coarse["train"])
    nn_syn = audits.nearest_training(syn, zs, coarse["synthetic"], train, zt, coarse["train"])
    table = audits.memorisation_table(syn, nn_syn, nn_ref, train)

    flagged = {r["case_id"] for r in table["cases"] if r["flagged"]}
    copies = {cid for cid in syn.case_ids if cid.startswith("COPY")}
    assert flagged == copies
    assert table["n_flagged"] == 6 and table["fraction_flagged"] == pytest.approx(6 / 16)
    by_id = {r["case_id"]: r for r in table["cases"]}
    for cid in copies:  # each copy finds its own original, by SSIM and by features
        original = cid.removeprefix("COPY-of-")
        assert (
            by_id[cid]["nearest_by_ssim"] == original
            and by_id[cid]["nearest_by_feature"] == original
        )
        assert by_id[cid]["ssim"] > 0.95 > table["threshold"]["ssim"]
    # the table lists the closest cases first, and the thresholds are the held-out percentiles
    assert [r["case_id"] for r in table["cases"][:6]] and all(
        r["flagged"] for r in table["cases"][:6]
    )
    assert table["threshold"]["ssim"] == pytest.approx(np.percentile(nn_ref["ssim"], 95))
    assert table["threshold"]["feature_distance"] == pytest.approx(
        np.percentile(nn_ref["feature_distance"], 5)
    )
    assert len(table["heldout"]["ssim"]) == 20


def test_diversity_is_lower_for_a_collapsed_set(cohorts: dict[str, Any]) -> None:
    train = cohorts["train"]
    diverse = audits.pairwise_ms_ssim(train, np.arange(30), n_pairs=20, seed=0, n_boot=50)
    imgs, masks = train.load([0] * 6)
    collapsed_set = CaseSet.from_arrays(
        imgs.numpy() + np.float32(0.0), masks.numpy(), name="collapsed"
    )
    collapsed = audits.pairwise_ms_ssim(collapsed_set, np.arange(6), n_pairs=20, seed=0)
    assert collapsed["mean"] == pytest.approx(1.0, abs=1e-5)
    assert diverse["mean"] < 0.9 and diverse["n_pairs"] == 20 and diverse["n_cases"] == 30
    lo, hi = diverse["ci"]
    assert lo <= diverse["mean"] <= hi
    assert audits.pairwise_ms_ssim(train, [3], n_pairs=20, seed=0)["mean"] is None


def test_conditional_fidelity_scores_requested_labels(cohorts: dict[str, Any]) -> None:
    train, ref, syn = cohorts["train"], cohorts["ref"], cohorts["synthetic"]

    # features that encode the grade perfectly (column 0) and nothing about the cohort
    def feats(c: CaseSet, flip: bool = False) -> np.ndarray:
        grade = np.array([1.0 if (r["grade"] == "HGG") != flip else 0.0 for r in c.labels])
        return np.c_[grade, np.random.default_rng(len(c)).normal(size=(len(c), 3))]

    out = audits.conditional_fidelity(
        [("grade", "categorical"), ("cohort", "categorical"), ("missing", "categorical")],
        train, feats(train), ref, feats(ref), syn, feats(syn, flip=True),
    )  # fmt: skip
    assert out["grade"]["heldout"]["accuracy"] == 1.0
    assert (
        out["grade"]["synthetic"]["accuracy"] == 0.0
    )  # every synthetic case shows the other grade
    n_hgg = sum(r["grade"] == "HGG" for r in syn.labels)
    assert out["grade"]["synthetic"]["confusion"] == [[0, n_hgg], [len(syn) - n_hgg, 0]]
    n_train_hgg = sum(r["grade"] == "HGG" for r in train.labels)
    assert out["grade"]["chance"] == max(n_train_hgg, 30 - n_train_hgg) / 30
    assert out["missing"]["skipped"]
