"""One metric suite for ``gliomagen evaluate`` and for validation during training, 2D and 3D.

Two steps, the same code for both callers:

* **reference** (:func:`build_reference`, :mod:`~gliomagen.evaluation.reference`): what depends
  on the real cases only, computed once per pair of sets (held-out real, training) and
  :class:`SuiteOptions` and cached on disk: the feature extractor, one pass over both sets, the
  held-out cases' nearest training cases (the memorisation thresholds) and their diversity.
* **measure** (:func:`measure`): a set of samples -> the metrics dict. Per condition (or ``all``
  only): FD/KID/PRDC against the held-out cases (with the training cases' floor), MS-SSIM
  diversity, memorisation (features standardised with the training cases' statistics -> nearest
  training case by feature distance and by SSIM -> flags against the held-out cases' thresholds),
  conditional fidelity, mask and intensity realism; and the tumour-structure distance against the
  training cases when the reference holds their statistics.

``gliomagen evaluate`` (:func:`gliomagen.evaluation.pipeline.evaluate`) writes that dict into
``metrics.json``; validation (:mod:`gliomagen.training.validation`) records its :func:`summary`
(``fd``, ``kid``, ``fidelity``, ``diversity``, ``mask``, ``memorised``, ...), measured with options
of its own (no intervals, ``all`` only, no floor, KID over 50 subsets, the structure distance).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gliomagen.evaluation import audits, tissue
from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.distances import distance_summary
from gliomagen.evaluation.reference import (
    ALL,
    REFERENCE_FORMAT,
    Reference,
    SuiteOptions,
    build_reference,
    channel_names,
    quiet,
)
from gliomagen.evaluation.scan import Scan, check_finite, scan

Groups = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Condition -> positions of its (held-out real, sample, training) cases."""


def groups(ref: Reference, samples: CaseSet) -> Groups:
    """``all`` and, with ``by_condition``, every condition of the held-out or sample cases."""
    real, train = ref.real, ref.train
    out = {ALL: (np.arange(len(real)), np.arange(len(samples)), np.arange(len(train)))}
    if not ref.options.by_condition:
        return out
    rg, sg, tg = real.groups(), samples.groups(real.categorical), train.groups(real.categorical)
    empty = np.zeros(0, np.int64)
    for key in sorted(set(rg) | set(sg)):
        out[key] = (rg.get(key, empty), sg.get(key, empty), tg.get(key, empty))
    return out


def fidelity_fields(train: CaseSet, samples: CaseSet) -> list[tuple[str, str]]:
    """Labels to score: every requested label of the samples that the training cases also have."""
    names: list[str] = []
    for row in samples.labels:
        names += [k for k in row if k not in names and k not in samples.derived]
    out = []
    for name in names:
        values = [v for v in train.label_values(name) if v is not None]
        if not values:
            continue
        kind = "categorical" if any(isinstance(v, str) for v in values) else "continuous"
        out.append((name, kind))
    return out


def measure(
    ref: Reference,
    samples: CaseSet,
    *,
    strict: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every metric of ``samples`` against the reference (see the module docstring).

    Args:
        ref: the reference.
        samples: the synthetic cases; their labels are the conditions they were asked for.
        strict: raise on non-finite sample features (else the dict says so in ``note``).
        log: called with each progress message.

    Returns:
        ``{"groups", "distances", "diversity", "memorisation", "fidelity", "masks",
        "intensity"}`` (each ``{condition: ...}`` but ``fidelity``, per label), plus
        ``"structure"`` when the options ask for it. With non-finite features (``strict=False``)
        only ``groups``, ``structure`` and ``note``.
    """
    say, o = log or quiet, ref.options
    say(f"scanning synthetic: {samples.name}")
    ss = scan(samples, ref.extractor, o.batch_size, realism=True, structure=o.structure)
    if strict:
        check_finite(ss, samples, ref.extractor)
    pos = groups(ref, samples)
    out: dict[str, Any] = {
        "groups": {
            key: {"n_real": len(pr), "n_synthetic": len(ps), "n_train": len(pt)}
            for key, (pr, ps, pt) in pos.items()
        }
    }
    if o.structure is not None:
        out["structure"] = _structure(ref, samples, ss)
    if not np.isfinite(ss.features).all():
        return {**out, "note": f"non-finite features ({samples.name} gives NaN/inf)"}
    say("distances (FD, KID, PRDC)" + (" with bootstrap intervals" if o.n_boot else ""))
    out["distances"] = _distances(ref, ss, pos)
    say("diversity (MS-SSIM)")
    out["diversity"] = _diversity(ref, samples, pos)
    say("memorisation")
    out["memorisation"] = _memorisation(ref, samples, ss, pos)
    say("conditional fidelity, masks, intensities")
    out["fidelity"] = audits.conditional_fidelity(
        fidelity_fields(ref.train, samples), ref.train, ref.train_scan.features, ref.real,
        ref.real_scan.features, samples, ss.features,
    )  # fmt: skip
    out.update(_realism(ref, ss, pos))
    return out


def _distances(ref: Reference, ss: Scan, pos: Groups) -> dict[str, Any]:
    """FD/KID/PRDC of the samples (and, with ``floor``, of training cases) per condition."""
    o = ref.options
    fr, fs, ft = ref.real_scan.features, ss.features, ref.train_scan.features
    out = {}
    for key, (pr, ps, pt) in pos.items():
        r, s, t = fr[pr], fs[ps], ft[pt]
        entry: dict[str, Any] = {"n_real": len(r), "n_synthetic": len(s), "n_train": len(t)}
        opts = {"n_boot": o.n_boot, "seed": o.seed, "kid_subsets": o.kid_subsets}
        if len(r) >= 2 and len(s) >= 2:
            entry["synthetic"] = distance_summary(r, s, **opts)
        if o.floor and len(r) >= 2 and len(t) >= 2:
            # the floor uses as many training cases as there are samples (FD is biased by n)
            pick = _subsample(len(t), max(2, len(s)), o.seed)
            entry["floor"] = distance_summary(r, t[pick], **opts)
        out[key] = entry
    return out


def _subsample(n: int, m: int, seed: int) -> np.ndarray:
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def _diversity(ref: Reference, samples: CaseSet, pos: Groups) -> dict[str, Any]:
    o = ref.options
    kw = {"n_pairs": o.n_pairs, "seed": o.seed, "n_boot": o.n_boot}
    return {
        key: {
            "synthetic": audits.pairwise_ms_ssim(samples, ps, **kw),
            "real": ref.real_diversity.get(key) or audits.pairwise_ms_ssim(ref.real, pr, **kw),
        }
        for key, (pr, ps, _) in pos.items()
    }


def _memorisation(ref: Reference, samples: CaseSet, ss: Scan, pos: Groups) -> dict[str, Any]:
    """Standardise -> nearest training case -> flags against the held-out cases' thresholds."""
    zt, zs = audits.standardise(ref.train_scan.features, ss.features)
    nn = audits.nearest_training(samples, zs, ss.coarse, ref.train, zt, ref.train_scan.coarse)
    memo = audits.memorisation_table(samples, nn, ref.real_nn, ref.train)
    flagged = {row["case_id"] for row in memo["cases"] if row["flagged"]}
    memo["by_condition"] = {
        key: {"n": int(len(ps)), "n_flagged": sum(samples.case_ids[i] in flagged for i in ps)}
        for key, (_, ps, _) in pos.items()
    }
    return memo


def _realism(ref: Reference, ss: Scan, pos: Groups) -> dict[str, Any]:
    """Mask realism (tumour volume, enhancing fraction) and intensity histograms per condition."""
    rs = ref.real_scan
    assert rs.hist is not None and ss.hist is not None
    modalities = channel_names(ref.real.shape[0])
    masks = {
        key: tissue.mask_realism(
            {k: v[pr] for k, v in rs.mask.items()}, {k: v[ps] for k, v in ss.mask.items()}
        )
        for key, (pr, ps, _) in pos.items()
    }
    hists = {
        key: tissue.histogram_comparison(rs.hist[pr], ss.hist[ps], modalities)
        for key, (pr, ps, _) in pos.items()
    }
    return {"masks": masks, "intensity": hists}


def _structure(ref: Reference, samples: CaseSet, ss: Scan) -> dict[str, Any]:
    """Tumour-structure distance of the samples against the training cases, per categorical
    condition of the held-out cases (all cases together without one)."""
    fields = ref.real.categorical
    if fields:
        rg, sg = ref.train.groups(fields), samples.groups(fields)
    else:
        rg, sg = {ALL: np.arange(len(ref.train))}, {ALL: np.arange(len(samples))}
    return tissue.structure_distance(ref.train_scan.structure, rg, ss.structure, sg)


# -- validation's record -----------------------------------------------------------------------
def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def summary(ref: Reference, measured: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers validation records of a :func:`measure` dict (``all`` of every section).

    ``fd``, ``kid``; ``fidelity`` / ``fidelity_real``: accuracy averaged over the categorical
    labels on the samples / the held-out cases; ``diversity`` / ``diversity_real``; ``mask`` /
    ``mask_groups``: the structure distance and its breakdown; ``memorised``: flagged samples;
    ``n_samples``, ``n_val``; ``None`` where undefined (``note`` says why for non-finite features).
    """
    structure = measured.get("structure") or {"value": None, "groups": {}}
    n = measured["groups"][ALL]["n_synthetic"]
    real_div = _finite(ref.real_diversity[ALL]["mean"])
    mask = {"mask": structure["value"], "mask_groups": structure["groups"]}
    if "note" in measured:
        return {"fd": None, "kid": None, "fidelity": None, "fidelity_real": None,
                "diversity": None, "diversity_real": real_div, **mask, "memorised": None,
                "n_samples": n, "n_val": len(ref.real), "note": measured["note"]}  # fmt: skip
    dist = measured["distances"][ALL].get("synthetic", {})
    labels = [e for e in measured["fidelity"].values() if e.get("kind") == "categorical"]
    acc = [e["synthetic"]["accuracy"] for e in labels if "synthetic" in e]
    acc_real = [e["heldout"]["accuracy"] for e in labels if "heldout" in e]
    known = [a for a in acc_real if a is not None]
    return {
        "fd": _finite(dist.get("fd", {}).get("value")),
        "kid": _finite(dist.get("kid", {}).get("value")),
        "fidelity": float(np.mean(acc)) if acc else None,
        "fidelity_real": float(np.mean(known)) if known else None,
        "diversity": _finite(measured["diversity"][ALL]["synthetic"]["mean"]),
        "diversity_real": real_div,
        **mask,
        "memorised": int(measured["memorisation"]["n_flagged"]),
        "n_samples": n,
        "n_val": len(ref.real),
    }


__all__ = [
    "ALL",
    "REFERENCE_FORMAT",
    "Reference",
    "SuiteOptions",
    "build_reference",
    "channel_names",
    "fidelity_fields",
    "groups",
    "measure",
    "summary",
]
