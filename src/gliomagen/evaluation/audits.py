"""Audits of a synthetic cohort: diversity, memorisation and conditional fidelity.

* **Diversity**: mean pairwise MS-SSIM (inside the brain) among synthetic cases against the same
  among real held-out cases. A generator that collapses to a few modes has a *higher* value.
* **Memorisation** (privacy): for every synthetic case its nearest training case, by SSIM (inside
  the union of both brains) and by Euclidean distance of standardised features. The same is done
  for real held-out cases, which were never trained on; a synthetic case closer to the training
  set than the 5th percentile of the held-out cases by *both* measures (SSIM above the held-out
  95th percentile and feature distance below the 5th) is flagged. A near copy of a training case
  crosses both thresholds by far; a new case crosses both by chance rarely (at most 5% of
  held-out-like cases; the rate among the held-out cases themselves is reported beside it), and
  each criterion is also reported on its own.
  SSIM against every training case would cost ``N_syn x N_train`` full-size SSIMs, so each query
  is compared with its ``k`` nearest training cases at a coarse grid (L2 at 24 voxels a side) plus
  its nearest training case in feature space; the SSIM of a near copy is never missed that way.
* **Conditional fidelity**: a logistic-regression classifier on standardised features, trained on
  the real training split, predicts each categorical label of the synthetic cases; its accuracy
  against the *requested* labels is compared with its accuracy on held-out real cases and with
  chance (the majority class). Continuous labels use ridge regression (Pearson r, MAE).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.spatial.distance
import torch

from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.probe import to_probe_input
from gliomagen.evaluation.similarity import ms_ssim, ssim

COARSE_SIZE = 24


def coarse_vectors(images: torch.Tensor) -> np.ndarray:
    """Coarse copies of images ``[B, C, D, H, W]`` (longest side 24) flattened: ``[B, n]`` float32."""
    return to_probe_input(images, COARSE_SIZE).flatten(1).numpy().astype(np.float32)


def _mean_ci(values: np.ndarray, n_boot: int, seed: int) -> list[float] | None:
    if n_boot <= 0 or len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(n_boot)]
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def pairwise_ms_ssim(
    cases: CaseSet,
    positions: Sequence[int] | np.ndarray,
    *,
    n_pairs: int,
    seed: int,
    n_boot: int = 0,
    batch: int = 8,
) -> dict[str, Any]:
    """Mean MS-SSIM over random pairs of distinct cases among ``positions``.

    ``n_pairs`` distinct pairs are drawn (all pairs when there are fewer) and loaded ``batch``
    pairs at a time, so memory stays bounded for any cohort size.

    Returns:
        ``{"mean", "ci", "n_pairs", "n_cases"}`` (``mean`` is ``None`` with fewer than 2 cases);
        ``ci`` is a bootstrap interval over the pairs.
    """
    pos = np.asarray(positions, dtype=np.int64)
    if len(pos) < 2 or n_pairs < 1:
        return {"mean": None, "ci": None, "n_pairs": 0, "n_cases": int(len(pos))}
    rng = np.random.default_rng(seed)
    total = len(pos) * (len(pos) - 1) // 2
    if total <= n_pairs:
        pairs = [
            (int(pos[i]), int(pos[j])) for i in range(len(pos)) for j in range(i + 1, len(pos))
        ]
    else:
        chosen: set[tuple[int, int]] = set()
        while len(chosen) < n_pairs:
            i, j = rng.choice(len(pos), 2, replace=False)
            chosen.add((int(pos[min(i, j)]), int(pos[max(i, j)])))
        pairs = sorted(chosen)
    values = []
    for start in range(0, len(pairs), batch):
        chunk = pairs[start : start + batch]
        a, _ = cases.load([p[0] for p in chunk])  # [b, C, D, H, W]
        b, _ = cases.load([p[1] for p in chunk])
        values.append(ms_ssim(a, b).numpy())
    v = np.concatenate(values).astype(np.float64)
    return {
        "mean": float(v.mean()),
        "ci": _mean_ci(v, n_boot, seed),
        "n_pairs": len(v),
        "n_cases": int(len(pos)),
    }


def standardise(train_feats: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Z-score features with the training set's mean and std (std floor 1e-8)."""
    mu, sd = train_feats.mean(0), train_feats.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    return [(x - mu) / sd for x in (train_feats, *others)]


def nearest_training(
    queries: CaseSet,
    query_feats: np.ndarray,
    query_coarse: np.ndarray,
    train: CaseSet,
    train_feats: np.ndarray,
    train_coarse: np.ndarray,
    *,
    k: int = 4,
) -> dict[str, np.ndarray]:
    """Nearest training case of every query case, by feature distance and by SSIM.

    Args:
        queries: cases to audit (synthetic or held-out real).
        query_feats: their standardised features ``[Q, F]``.
        query_coarse: their coarse vectors ``[Q, n]`` (:func:`coarse_vectors`).
        train: training cases.
        train_feats: standardised training features ``[T, F]``.
        train_coarse: coarse training vectors ``[T, n]``.
        k: training candidates per query (coarse L2 nearest) whose SSIM is computed.

    Returns:
        ``{"feature_index" [Q], "feature_distance" [Q], "ssim_index" [Q], "ssim" [Q]}``.
    """
    fd = scipy.spatial.distance.cdist(query_feats, train_feats)  # [Q, T]
    feat_idx = fd.argmin(1)
    cd = scipy.spatial.distance.cdist(query_coarse, train_coarse, "sqeuclidean")  # [Q, T]
    kk = min(k, len(train))
    cand = np.argpartition(cd, kk - 1, axis=1)[:, :kk]
    best_ssim = np.full(len(queries), -np.inf)
    best_idx = np.zeros(len(queries), dtype=np.int64)
    for q in range(len(queries)):
        idx = np.unique(np.append(cand[q], feat_idx[q]))
        q_img, _ = queries.load([q])
        t_img, _ = train.load(idx)
        values = ssim(q_img, t_img).numpy()  # one query against its candidates
        j = int(values.argmax())
        best_ssim[q], best_idx[q] = values[j], idx[j]
    return {
        "feature_index": feat_idx,
        "feature_distance": fd.min(1),
        "ssim_index": best_idx,
        "ssim": best_ssim,
    }


def memorisation_table(
    synthetic: CaseSet,
    syn_nn: dict[str, np.ndarray],
    heldout_nn: dict[str, np.ndarray],
    train: CaseSet,
    *,
    percentile: float = 5.0,
) -> dict[str, Any]:
    """Flag synthetic cases closer to the training set than the held-out cases' 5th percentile (both measures).

    Returns:
        ``{"percentile", "threshold": {"feature_distance", "ssim"}, "cases": [...], "heldout": {...},
        "n_flagged", "fraction_flagged", "expected_fraction"}``; ``cases`` is sorted closest first.
    """
    thr_feat = float(np.percentile(heldout_nn["feature_distance"], percentile))
    thr_ssim = float(np.percentile(heldout_nn["ssim"], 100 - percentile))
    rows: list[dict[str, Any]] = []
    for i, cid in enumerate(synthetic.case_ids):
        by_feat = bool(syn_nn["feature_distance"][i] < thr_feat)
        by_ssim = bool(syn_nn["ssim"][i] > thr_ssim)
        rows.append({
            "case_id": cid,
            "labels": {k: synthetic.labels[i].get(k) for k in synthetic.categorical},
            "nearest_by_ssim": train.case_ids[int(syn_nn["ssim_index"][i])],
            "ssim": float(syn_nn["ssim"][i]),
            "nearest_by_feature": train.case_ids[int(syn_nn["feature_index"][i])],
            "feature_distance": float(syn_nn["feature_distance"][i]),
            "flag_ssim": by_ssim,
            "flag_feature": by_feat,
            "flagged": by_ssim and by_feat,
        })  # fmt: skip
    rows.sort(key=lambda r: (-float(r["ssim"]), float(r["feature_distance"])))
    n_flag = sum(bool(r["flagged"]) for r in rows)
    held_flag = (heldout_nn["feature_distance"] < thr_feat) & (heldout_nn["ssim"] > thr_ssim)
    return {
        "percentile": percentile,
        "threshold": {"feature_distance": thr_feat, "ssim": thr_ssim},
        "cases": rows,
        "n_flagged": int(n_flag),
        "fraction_flagged": n_flag / max(1, len(rows)),
        "expected_fraction": float(held_flag.mean()) if len(held_flag) else None,
        "heldout": {
            "n": int(len(heldout_nn["ssim"])),
            "ssim": [float(v) for v in heldout_nn["ssim"]],
            "feature_distance": [float(v) for v in heldout_nn["feature_distance"]],
        },
        "synthetic": {
            "ssim": [float(v) for v in syn_nn["ssim"]],
            "feature_distance": [float(v) for v in syn_nn["feature_distance"]],
        },
    }


def _known(values: list[Any]) -> np.ndarray:
    return np.array([v is not None for v in values], dtype=bool)


_Roles = tuple[tuple[str, np.ndarray, list[Any], np.ndarray], ...]
"""``(role, features, label values, known)`` of the scored sets (held-out real, synthetic)."""


def conditional_fidelity(
    fields: Sequence[tuple[str, str]],
    train: CaseSet,
    train_feats: np.ndarray,
    heldout: CaseSet,
    heldout_feats: np.ndarray,
    synthetic: CaseSet,
    synthetic_feats: np.ndarray,
) -> dict[str, Any]:
    """Per label: a classifier (or regressor) trained on real training features, scored on synthetic cases.

    Args:
        fields: ``(name, kind)`` pairs, ``kind`` in ``categorical`` / ``continuous``.
        train: training cases (labels).
        train_feats: ``[T, F]``.
        heldout: held-out real cases.
        heldout_feats: ``[R, F]``.
        synthetic: synthetic cases; their labels are the *requested* conditions.
        synthetic_feats: ``[G, F]``.

    Returns:
        ``{name: {...}}``; a label that cannot be scored has ``{"skipped": reason}``.
    """
    out: dict[str, Any] = {}
    for name, kind in fields:
        ytr, yho, ysy = (
            train.label_values(name),
            heldout.label_values(name),
            synthetic.label_values(name),
        )
        ktr, kho, ksy = _known(ytr), _known(yho), _known(ysy)
        if not ksy.any():
            out[name] = {"kind": kind, "skipped": "no synthetic case has this label"}
            continue
        roles: _Roles = (
            ("heldout", heldout_feats, yho, kho), ("synthetic", synthetic_feats, ysy, ksy)
        )  # fmt: skip
        score = _categorical_fidelity if kind == "categorical" else _continuous_fidelity
        out[name] = score(kind, train_feats, ytr, ktr, roles)
    return out


def _categorical_fidelity(
    kind: str, train_feats: np.ndarray, ytr: list[Any], ktr: np.ndarray, roles: _Roles
) -> dict[str, Any]:
    """A logistic-regression classifier on the training cases' features, scored on each role:
    accuracy, per category, confusion matrix; ``chance`` is the majority class's share."""
    # scikit-learn: a heavy import (seconds), only needed here
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.array([str(v) for v in ytr], dtype=object)
    cats = sorted(set(y[ktr]))
    if len(cats) < 2:
        return {"kind": kind, "skipped": "fewer than 2 categories among training cases"}
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(train_feats[ktr], y[ktr])
    entry: dict[str, Any] = {"kind": kind, "categories": cats, "n_train": int(ktr.sum())}
    counts = {c: int((y[ktr] == c).sum()) for c in cats}
    entry["chance"] = max(counts.values()) / int(ktr.sum())
    for role, feats, values, known in roles:
        target = np.array([str(v) for v in values], dtype=object)[known]
        if not known.any():
            entry[role] = {"n": 0, "accuracy": None}
            continue
        pred = clf.predict(feats[known])
        per = {
            c: {
                "n": int((target == c).sum()),
                "accuracy": float((pred[target == c] == c).mean())
                if (target == c).any()
                else None,
            }
            for c in sorted(set(target))
        }
        confusion = [[int(((target == a) & (pred == b)).sum()) for b in cats] for a in cats]
        entry[role] = {
            "n": int(known.sum()),
            "accuracy": float((pred == target).mean()),
            "per_category": per,
            "confusion": confusion,
        }
    return entry


def _continuous_fidelity(
    kind: str, train_feats: np.ndarray, ytr: list[Any], ktr: np.ndarray, roles: _Roles
) -> dict[str, Any]:
    """A ridge regression on the training cases' features, scored on each role (Pearson r, MAE)."""
    # scikit-learn: a heavy import (seconds), only needed here
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ytr_f = np.array([float(v) if k else np.nan for v, k in zip(ytr, ktr, strict=True)])
    if ktr.sum() < 3:
        return {"kind": kind, "skipped": "fewer than 3 training cases with this label"}
    reg = make_pipeline(StandardScaler(), Ridge(alpha=10.0))
    reg.fit(train_feats[ktr], ytr_f[ktr])
    entry: dict[str, Any] = {"kind": kind, "n_train": int(ktr.sum())}
    for role, feats, values, known in roles:
        if known.sum() < 2:
            entry[role] = {"n": int(known.sum()), "pearson_r": None, "mae": None}
            continue
        target = np.array([float(v) for v, k in zip(values, known, strict=True) if k])
        pred = reg.predict(feats[known])
        r = (
            float(np.corrcoef(pred, target)[0, 1])
            if np.std(pred) > 0 and np.std(target) > 0
            else None
        )
        entry[role] = {
            "n": int(known.sum()),
            "pearson_r": r,
            "mae": float(np.abs(pred - target).mean()),
        }
    return entry
