"""Privacy of a synthetic cohort: closest-training distances and membership inference.

Two questions, answered from the cases themselves (images and tumour masks, in memory):

1. **Is a synthetic case a near copy of a training case?** Every synthetic case gets its closest
   training case and the distance to it. Every held-out real case gets the same: its distance to
   the closest training case is what a *fresh* real case from the same population gets, so the
   held-out distances are the reference. A synthetic case closer to a training case than the
   held-out cases' ``percentile``-th percentile (5th by default) is **flagged**: a generator that
   makes new cases has about ``percentile`` % of its cases flagged by chance, a memorising one many
   more. A space **passes** when the synthetic cases' percentile is no smaller than the held-out
   cases' (the target: "the 5th percentile of the synthetic cases' closest-training distance is no
   smaller than the held-out real cases'"). A low percentile of a few dozen cases is noisy (a
   generator of genuinely new cases fails it about half of the time by chance), so the difference
   of the two percentiles comes with a bootstrap 95% interval, and ``uncertain`` says when that
   interval holds 0 (the verdict is then chance).
2. **Can an attacker tell the training cases from other real cases?** (membership inference).
   Members are the training cases (or the ``members`` among them: those of the held-out cases'
   population), non-members the held-out real cases. The attack scores a real
   case by minus its distance to the closest *synthetic* case (a training case that the generator
   memorised sits close to one of its samples), in every space; with ``d_scores`` also by the
   discriminator's score (a discriminator that over-fits its training cases scores them higher).
   The figure is the ROC AUC of that score (members positive): 0.5 = the attacker cannot tell, 1 =
   every member is told apart. An attack **passes** at AUC <= 0.6; with few cases the AUC is
   noisy, so each comes with a bootstrap 95% interval (members and non-members resampled apart,
   1000 times, seeded). An AUC well under 0.5 would mean the attack's direction is wrong; it is
   reported as it is.

Distance spaces (each picks its own closest training case):

* ``voxel_image``: RMSE over all voxels and channels between two cases' images (store scale).
* ``voxel_mask``: 1 - Dice of the whole tumour (labels > 0); 0 when both masks are empty.
* ``voxel``: the mean of the two above, each divided by its median over pairs of distinct training
  cases (so both count alike; 1 = as far apart as two typical training cases).
* ``feature`` (when ``features`` is given): Euclidean distance between the cases' embeddings
  ``features(images, masks) -> [N, F]``, each feature z-scored with the training cases' mean and
  standard deviation.

Everything returned is JSON-serialisable (floats, ints, strings, lists, dicts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn.metrics
import torch

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.privacy_format import format_privacy as format_privacy  # re-export

MEMBERSHIP_THRESHOLD = 0.6  # an attack passes at AUC <= this
N_BOOT = 1000  # bootstrap resamples of each AUC's interval
SEED = 0
BLOCK_BYTES = 1 << 27  # about 128 MB of float64 per block of rows in the pairwise distances

Features = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Cases:
    """A set of cases held in memory.

    Attributes:
        ids: one id per case.
        images: ``[N, C, *S]`` float32 images in the store's intensity scale.
        masks: ``[N, *S]`` integer labels 0-3 (BraTS 2023: 1 NCR, 2 ED, 3 ET).
    """

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.images.ndim < 3 or self.images.shape[0] != n:
            raise GliomagenError(
                f"privacy: images {self.images.shape} must be [N, C, *S] with N = {n} ids"
            )
        if self.masks.shape != (n, *self.images.shape[2:]):
            raise GliomagenError(
                f"privacy: masks {self.masks.shape} must be [N, *S] = {(n, *self.images.shape[2:])}"
            )
        if len(set(self.ids)) != n:
            raise GliomagenError("privacy: case ids must be unique within a set")

    def __len__(self) -> int:
        return len(self.ids)


def _blocks(n: int, row_values: int) -> Iterator[slice]:
    """Row slices of at most :data:`BLOCK_BYTES` of float64 each (at least one row)."""
    step = max(1, BLOCK_BYTES // max(1, 8 * row_values))
    return (slice(i, min(n, i + step)) for i in range(0, n, step))


def image_rmse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMSE over all voxels and channels between every image of ``a [Na, ...]`` and of ``b [Nb, ...]``.

    Returns:
        ``[Na, Nb]`` float64. Computed block by block with scikit-learn's Euclidean distance on
        float64 copies (its dot-product form puts an exact copy at about 1e-8, not at 0).
    """
    x, y = a.reshape(len(a), -1), b.reshape(len(b), -1)
    out = np.empty((len(x), len(y)))
    for i in _blocks(len(x), x.shape[1]):
        for j in _blocks(len(y), x.shape[1]):
            out[i, j] = sklearn.metrics.pairwise_distances(
                x[i].astype(np.float64), y[j].astype(np.float64), n_jobs=1
            )
    return out / np.sqrt(max(1, x.shape[1]))


def mask_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - Dice of the whole tumour (labels > 0) between every mask of ``a [Na, *S]`` and ``b [Nb, *S]``.

    Two empty masks are at 0, an empty and a non-empty one at 1. Written out rather than
    ``scipy.spatial.distance.cdist(metric="dice")``: the overlaps are one matrix product per block
    of rows (memory stays bounded on large grids) and two empty masks get a defined 0.
    """
    x, y = (a.reshape(len(a), -1) > 0), (b.reshape(len(b), -1) > 0)
    inter = np.empty((len(x), len(y)))
    for i in _blocks(len(x), x.shape[1]):
        xi = x[i].astype(np.float64)
        for j in _blocks(len(y), x.shape[1]):
            inter[i, j] = xi @ y[j].astype(np.float64).T
    total = x.sum(1, dtype=np.float64)[:, None] + y.sum(1, dtype=np.float64)[None, :]
    dice = np.divide(2 * inter, total, out=np.ones_like(inter), where=total > 0)
    return np.clip(1.0 - dice, 0.0, 1.0)


def _median_offdiagonal(d: np.ndarray) -> float:
    """Median distance between distinct training cases (1.0 when they all coincide)."""
    m = float(np.median(d[~np.eye(len(d), dtype=bool)]))
    return m if m > 0 else 1.0


def _embed(features: Features, cases: Cases, name: str) -> np.ndarray:
    feats = np.asarray(features(cases.images, cases.masks), dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] != len(cases) or not np.isfinite(feats).all():
        raise GliomagenError(
            f"privacy: features of the {name} cases must be a finite [{len(cases)}, F] array, "
            f"got shape {feats.shape}"
        )
    return feats


def _feature_space(
    train: Cases, heldout: Cases, synthetic: Cases, features: Features
) -> dict[str, np.ndarray]:
    """Euclidean distances of z-scored features (training mean and std, std floor 1e-8)."""
    t, h, s = (
        _embed(features, c, n)
        for c, n in ((train, "training"), (heldout, "held-out"), (synthetic, "synthetic"))
    )
    mu, sd = t.mean(0), t.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    t, h, s = ((x - mu) / sd for x in (t, h, s))
    dist = sklearn.metrics.pairwise_distances
    return {"syn_train": dist(s, t), "held_train": dist(h, t), "held_syn": dist(h, s)}


def _spaces(
    train: Cases, heldout: Cases, synthetic: Cases, features: Features | None
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Distance matrices ``syn_train [S, T]``, ``held_train [H, T]``, ``held_syn [H, S]`` per space,
    and the voxel scales (median training-training distances)."""
    pairs = {
        "syn_train": (synthetic, train),
        "held_train": (heldout, train),
        "held_syn": (heldout, synthetic),
    }
    img = {k: image_rmse(a.images, b.images) for k, (a, b) in pairs.items()}
    msk = {k: mask_distance(a.masks, b.masks) for k, (a, b) in pairs.items()}
    scale = {
        "image": _median_offdiagonal(image_rmse(train.images, train.images)),
        "mask": _median_offdiagonal(mask_distance(train.masks, train.masks)),
    }
    voxel = {k: 0.5 * (img[k] / scale["image"] + msk[k] / scale["mask"]) for k in pairs}
    spaces = {"voxel_image": img, "voxel_mask": msk, "voxel": voxel}
    if features is not None:
        spaces["feature"] = _feature_space(train, heldout, synthetic, features)
    return spaces, scale


def _closest(d: np.ndarray, ids: list[str], train_ids: list[str]) -> list[dict[str, Any]]:
    """Per query row of ``d [Q, T]``: its id, the closest training id and the distance."""
    idx = d.argmin(1)
    return [
        {"id": q, "closest_train": train_ids[int(j)], "distance": float(d[i, j])}
        for i, (q, j) in enumerate(zip(ids, idx, strict=True))
    ]


def _difference_ci(syn: np.ndarray, held: np.ndarray, percentile: float) -> list[float]:
    """Bootstrap 95% interval of ``percentile(syn) - percentile(held)`` (both resampled apart)."""
    rng = np.random.default_rng(SEED)
    ps = np.percentile(syn[rng.integers(0, len(syn), (N_BOOT, len(syn)))], percentile, axis=1)
    ph = np.percentile(held[rng.integers(0, len(held), (N_BOOT, len(held)))], percentile, axis=1)
    low, high = np.percentile(ps - ph, [2.5, 97.5])
    return [float(low), float(high)]


def _space_report(
    d: Mapping[str, np.ndarray],
    train: Cases,
    heldout: Cases,
    synthetic: Cases,
    percentile: float,
) -> dict[str, Any]:
    """Closest-training distances of one space; flags and pass/fail (see the module docstring)."""
    syn = _closest(d["syn_train"], synthetic.ids, train.ids)
    held = _closest(d["held_train"], heldout.ids, train.ids)
    d_syn = np.array([r["distance"] for r in syn])
    d_held = np.array([r["distance"] for r in held])
    p_syn, p_held = (float(np.percentile(x, percentile)) for x in (d_syn, d_held))
    diff_ci = _difference_ci(d_syn, d_held, percentile)
    flagged = sorted((r for r in syn if r["distance"] < p_held), key=lambda r: r["distance"])
    return {
        "synthetic": syn,
        "heldout": held,
        "synthetic_percentile": p_syn,
        "heldout_percentile": p_held,
        "passes": bool(p_syn >= p_held),
        "difference_ci": diff_ci,
        "uncertain": bool(diff_ci[0] < 0 <= diff_ci[1]),
        "flagged": flagged,
        "n_flagged": len(flagged),
        "fraction_flagged": len(flagged) / len(syn),
        "heldout_fraction_below": float(np.mean([r["distance"] < p_held for r in held])),
    }


def auc_with_interval(
    member_scores: np.ndarray, nonmember_scores: np.ndarray, n_boot: int = N_BOOT, seed: int = SEED
) -> dict[str, Any]:
    """ROC AUC of an attack score (members positive) and its bootstrap 95% interval.

    The AUC is scikit-learn's ``roc_auc_score``. Each bootstrap draw resamples members and
    non-members apart (with replacement); its AUC is the Mann-Whitney mean of one precomputed
    ``[M, N]`` pair matrix weighted by the draw's counts (the same number as ``roc_auc_score`` on the
    resampled cases, without 1000 calls).

    Returns:
        ``{"auc", "ci": [low, high], "n_members", "n_nonmembers"}``.
    """
    m = np.asarray(member_scores, dtype=np.float64)
    n = np.asarray(nonmember_scores, dtype=np.float64)
    labels = np.r_[np.ones(len(m)), np.zeros(len(n))]
    auc = float(sklearn.metrics.roc_auc_score(labels, np.r_[m, n]))
    pair = (m[:, None] > n[None, :]) + 0.5 * (m[:, None] == n[None, :])
    rng = np.random.default_rng(seed)
    cm = rng.multinomial(len(m), np.full(len(m), 1.0 / len(m)), size=n_boot)
    cn = rng.multinomial(len(n), np.full(len(n), 1.0 / len(n)), size=n_boot)
    boots = np.einsum("bm,mn,bn->b", cm, pair, cn) / (len(m) * len(n))
    low, high = np.percentile(boots, [2.5, 97.5])
    return {
        "auc": auc,
        "ci": [float(low), float(high)],
        "n_members": len(m),
        "n_nonmembers": len(n),
    }


def _membership(
    spaces: Mapping[str, Mapping[str, np.ndarray]],
    train: Cases,
    heldout: Cases,
    d_scores: Mapping[str, float] | None,
    members: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Membership-inference AUC per attack, the largest, and pass/fail (members: ``members`` of
    ``train``, default all)."""
    row = {cid: j for j, cid in enumerate(train.ids)}
    cols = np.arange(len(train)) if members is None else np.array([row[i] for i in members])
    attacks: dict[str, dict[str, Any]] = {}
    for name, d in spaces.items():
        scores = -d["syn_train"][:, cols].min(0)  # each member's distance to its closest sample
        attacks[name] = auc_with_interval(scores, -d["held_syn"].min(1))
        attacks[name]["score"] = "minus the distance to the closest synthetic case"
    if d_scores is not None:
        member_ids = [train.ids[int(j)] for j in cols]
        missing = [i for i in (*member_ids, *heldout.ids) if i not in d_scores]
        if missing:
            raise GliomagenError(
                f"d_scores: no discriminator score for {len(missing)} real case(s), e.g. {missing[0]!r}"
            )
        attacks["d_score"] = auc_with_interval(
            np.array([float(d_scores[i]) for i in member_ids]),
            np.array([float(d_scores[i]) for i in heldout.ids]),
        )
        attacks["d_score"]["score"] = "the discriminator's score"
    worst = max(attacks, key=lambda k: attacks[k]["auc"])
    low, high = attacks[worst]["ci"]
    return {
        "attacks": attacks,
        "max_auc": attacks[worst]["auc"],
        "max_attack": worst,
        "threshold": MEMBERSHIP_THRESHOLD,
        "passes": bool(attacks[worst]["auc"] <= MEMBERSHIP_THRESHOLD),
        "uncertain": bool(low <= MEMBERSHIP_THRESHOLD < high),
        "n_boot": N_BOOT,
    }


def _check_sets(
    train: Cases, heldout: Cases, synthetic: Cases, percentile: float, members: Sequence[str] | None
) -> None:
    if len(train) < 2 or len(heldout) < 1 or len(synthetic) < 1:
        raise GliomagenError(
            "privacy: needs at least 2 training, 1 held-out and 1 synthetic case, got "
            f"{len(train)}, {len(heldout)} and {len(synthetic)}"
        )
    shape = train.images.shape[1:]
    for name, cases in (("held-out", heldout), ("synthetic", synthetic)):
        if cases.images.shape[1:] != shape:
            raise GliomagenError(
                f"privacy: {name} images {cases.images.shape[1:]} differ from the training "
                f"cases' {shape} (channels and grid)"
            )
    both = set(train.ids) & set(heldout.ids)
    if both:
        raise GliomagenError(
            f"privacy: {len(both)} case id(s) both in training and held-out, e.g. {sorted(both)[0]!r}"
        )
    if not 0 < percentile < 100:
        raise GliomagenError(f"privacy: percentile must be in (0, 100), got {percentile}")
    if members is not None:
        known = set(train.ids)
        unknown = [i for i in members if i not in known]
        if unknown or not members:
            raise GliomagenError(
                f"privacy: members must be training case ids, got {len(members)} "
                f"({len(unknown)} not in training{', e.g. ' + repr(unknown[0]) if unknown else ''})"
            )


def privacy_report(
    train: Cases,
    heldout: Cases,
    synthetic: Cases,
    features: Features | None = None,
    d_scores: Mapping[str, float] | None = None,
    percentile: float = 5.0,
    members: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Closest-training distances and membership inference of a synthetic cohort.

    Args:
        train: the real cases the generator was trained on.
        heldout: real cases it never saw (same population).
        synthetic: the generator's cases.
        features: optional embedding ``features(images, masks) -> [N, F]`` (adds the ``feature``
            space; e.g. :func:`probe_features`).
        d_scores: optional discriminator score per real case id (training and held-out).
        percentile: the low percentile compared (5 = the 5th).
        members: the training case ids the membership attack scores as members (default: all).
            Give those of the held-out cases' population: when the training set mixes cohorts
            and the held-out cases are one of them, an attack on every training case measures the
            cohort shift, not membership.

    Returns:
        ``{"percentile", "n": {"train", "heldout", "synthetic"}, "voxel_scale": {"image", "mask"},
        "spaces": {space: {"synthetic" | "heldout": [{"id", "closest_train", "distance"}],
        "synthetic_percentile", "heldout_percentile", "passes", "difference_ci", "uncertain",
        "flagged", "n_flagged", "fraction_flagged", "heldout_fraction_below"}}, "membership": {"attacks": {name: {"auc",
        "ci", "n_members", "n_nonmembers", "score"}}, "max_auc", "max_attack", "threshold",
        "passes", "uncertain", "n_boot"}, "closest_passes", "passes", "flagged_ids"}``.
        ``closest_passes``: every space passes; ``passes``: that and the membership test;
        ``flagged_ids``: synthetic ids flagged in any space.

    Raises:
        GliomagenError: too few cases, mismatched shapes, an id both in training and held-out, a
            bad percentile, unusable features or a missing discriminator score.
    """
    _check_sets(train, heldout, synthetic, percentile, members)
    spaces, scale = _spaces(train, heldout, synthetic, features)
    per_space = {
        name: _space_report(d, train, heldout, synthetic, percentile) for name, d in spaces.items()
    }
    membership = _membership(spaces, train, heldout, d_scores, members)
    closest_passes = all(s["passes"] for s in per_space.values())
    flagged = sorted({r["id"] for s in per_space.values() for r in s["flagged"]})
    return {
        "percentile": float(percentile),
        "n": {"train": len(train), "heldout": len(heldout), "synthetic": len(synthetic)},
        "voxel_scale": scale,
        "spaces": per_space,
        "membership": membership,
        "closest_passes": bool(closest_passes),
        "passes": bool(closest_passes and membership["passes"]),
        "flagged_ids": flagged,
    }


def probe_features(probe: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 8) -> Features:
    """The ``features`` callable of :func:`privacy_report` from a feature extractor.

    ``probe`` is any extractor of :mod:`gliomagen.evaluation.features` (a trained
    :class:`~gliomagen.evaluation.features.ProbeExtractor`, MedicalNet, ...): images
    ``[B, C, *S]`` -> features ``[B, F]``. The extractor embeds the images only; the masks are
    not part of the embedding (the ``voxel_mask`` space measures them).

    Args:
        probe: the extractor.
        batch_size: cases per call of the extractor.
    """

    def embed(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
        del masks  # the extractors see the modalities only
        out = [
            probe(torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size], np.float32)))
            .double()
            .numpy()
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out)

    return embed


def discriminator_scores(
    D: Callable[..., Any],
    cases: Cases,
    cat: np.ndarray,
    cont: np.ndarray,
    anchors: Cases,
    anchor_cat: np.ndarray,
    anchor_cont: np.ndarray,
) -> dict[str, float]:
    """The trained discriminator's realness score of each real case (the ``d_scores`` of
    :func:`privacy_report`).

    D's minibatch-standard-deviation layer judges a case together with its group, so each case is
    scored in a pair with every anchor case in turn (anchors: cases that are neither members nor
    non-members, e.g. the large cohort's training cases) and its scores are averaged: every case
    is judged alike.

    Args:
        D: a full-volume discriminator (:func:`gliomagen.models.loading.load_discriminator`):
            ``D(images, one-hot masks, cat, cont).score``.
        cases: the cases to score (store intensities, labels 0-3).
        cat / cont: ``[N, n_cat]`` / ``[N, n_cont]`` their encoded conditions.
        anchors, anchor_cat, anchor_cont: the anchor cases and their encoded conditions.

    Returns:
        ``{case id: mean score}``.

    Raises:
        GliomagenError: no anchor, or conditions that do not match the cases.
    """
    if len(anchors) < 1:
        raise GliomagenError("d_scores: needs at least one anchor case")
    if len(cat) != len(cases) or len(cont) != len(cases):
        raise GliomagenError(f"d_scores: {len(cat)} condition rows for {len(cases)} cases")

    def onehot(labels: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.asarray(labels, np.int64)).clamp(0, 3)
        return torch.nn.functional.one_hot(t, 4).movedim(-1, 1).float()

    scores: dict[str, float] = {}
    with torch.no_grad():
        for i, cid in enumerate(cases.ids):
            total = 0.0
            for j in range(len(anchors)):
                img = torch.from_numpy(
                    np.stack([cases.images[i], anchors.images[j]]).astype(np.float32)
                )
                mask = onehot(np.stack([cases.masks[i], anchors.masks[j]]))
                c = torch.from_numpy(np.stack([cat[i], anchor_cat[j]]).astype(np.int64))
                x = torch.from_numpy(np.stack([cont[i], anchor_cont[j]]).astype(np.float32))
                total += float(D(img, mask, c, x).score.reshape(-1)[0])
            scores[cid] = total / len(anchors)
    return scores
