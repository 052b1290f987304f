"""Privacy of the synthetic cohorts of a utility run (the privacy helper's report, called here).

For each synthetic source (its largest pool), :func:`privacy_section` calls
:func:`gliomagen.evaluation.privacy.privacy_report` with ``train`` = the segmenter's real training
cases, which are exactly the generator's training split (the large cohort's training cases and the
n scarce ones), ``heldout`` = the scored real test cases, and the synthetic cases, all on the
store's grid. The membership attack's members are the n scarce training cases only: the held-out
cases are scarce-cohort cases, and members from the large cohort would let the attack tell the
cohorts apart instead of members from non-members. The report lists the synthetic cases it flags as too close to a training case.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.utility_arms import largest_pool
from gliomagen.evaluation.utility_data import BenchmarkData
from gliomagen.evaluation.utility_train import optional_module

# TODO(lead): a plain import once gliomagen.evaluation.privacy is merged.
privacy = optional_module("gliomagen.evaluation.privacy")


def group_cases(data: BenchmarkData, group: str, limit: int | None = None) -> Any:
    """The cases of a group of ``data`` (its first ``limit``), as the privacy report takes them."""
    assert privacy is not None and data.bank is not None
    rows = data.index[group][:limit]
    return privacy.Cases(
        ids=[data.bank.ids[i] for i in rows],
        images=data.bank.images[rows].astype(np.float32),  # [N, C, D, H, W]
        masks=data.bank.labels[rows].astype(np.int64),  # [N, D, H, W]
    )


def flagged_ids(report: Any) -> Iterator[str]:
    """Every case id listed under a key containing ``flagged`` anywhere in a privacy report."""
    if isinstance(report, Mapping):
        for k, v in report.items():
            if "flagged" in str(k) and isinstance(v, list | tuple):
                yield from (str(x) for x in v)
            else:
                yield from flagged_ids(v)
    elif isinstance(report, list | tuple):
        for v in report:
            yield from flagged_ids(v)


D_ANCHORS = 4  # large-cohort training cases each scored case is paired with (D's mbstd group)


def discriminator_attack_scores(data: BenchmarkData, checkpoint: str | Path) -> dict[str, float]:
    """The discriminator score of each scarce training case (the members) and each held-out case,
    from the checkpoint of the generator that made the synthetic cohort (the attack through D's
    score); each case paired with the first :data:`D_ANCHORS` large-cohort training cases.

    Raises:
        GliomagenError: a hierarchical checkpoint (its D judges sub-volumes at fixed positions),
            another grid than the store's, no large-cohort case to pair with, or labels the
            checkpoint does not know.
    """
    from gliomagen.models.hierarchical_d import HierarchicalDiscriminator
    from gliomagen.models.loading import load_discriminator

    assert privacy is not None and data.bank is not None
    D, schema, _ = load_discriminator(checkpoint)
    if isinstance(D, HierarchicalDiscriminator):
        raise GliomagenError(
            f"--discriminator {checkpoint}: a hierarchical model; the attack through D's score "
            "takes full-volume models only"
        )
    size: tuple[int, ...] = tuple(getattr(D, "size", ()))
    if size != tuple(data.size):
        raise GliomagenError(
            f"--discriminator {checkpoint}: trained on a {'x'.join(map(str, size))} grid, the "
            f"store's is {'x'.join(map(str, data.size))}"
        )
    if not data.pools.get("large"):
        raise GliomagenError(
            "--discriminator: needs large-cohort training cases to pair the scored cases with"
        )

    def group(name: str, limit: int | None = None) -> tuple[Any, np.ndarray, np.ndarray]:
        """A group's cases (bank rows in the order of its case list) and encoded conditions."""
        refs = (data.heldout if name == "heldout" else data.pools[name])[:limit]
        rows = [{k: r.row[k] for k in schema.names if k in r.row} for r in refs]
        return (group_cases(data, name, limit), *schema.encode_many(rows))

    pairs = group("large", D_ANCHORS)
    scores: dict[str, float] = {}
    for name in ("real", "heldout"):
        scores.update(privacy.discriminator_scores(D, *group(name), *pairs))
    return scores


def privacy_section(
    data: BenchmarkData,
    sources: Sequence[str],
    d_scores: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """``{"available", "why", "train", "heldout", "sources": {source: {"pool", "report",
    "flagged", "text"}}, "text"}`` for every source with a pool in ``data``; ``d_scores``: per
    source, its generator's discriminator score of each member and held-out case (adds the
    attack through D's score, :func:`gliomagen.evaluation.privacy.discriminator_scores`)."""
    if privacy is None:
        why = "gliomagen.evaluation.privacy is not in this version of gliomagen"
        return {"available": False, "why": why, "sources": {}, "text": f"not computed: {why}"}
    train, held = group_cases(data, "real+large"), group_cases(data, "heldout")
    assert data.bank is not None
    members = [data.bank.ids[i] for i in data.index["real"]]  # the held-out cases' population
    out: dict[str, Any] = {
        "available": True, "why": "", "sources": {},
        "train": "real+large: the large cohort's and the n scarce training cases (the generator's training split)",
        "heldout": "the scored real test cases",
        "members": "the membership attack's members: the n scarce training cases (the held-out "
                   "cases' cohort; the large cohort's cases would measure the cohort shift)",
    }  # fmt: skip
    texts = []
    for source in sources:
        pool = largest_pool(data.index, source)
        if pool is None:
            continue
        scores = (d_scores or {}).get(source)
        rep = privacy.privacy_report(
            train, held, group_cases(data, pool), d_scores=scores, members=members
        )
        text = privacy.format_privacy(rep)
        flagged = sorted(set(flagged_ids(rep)))
        out["sources"][source] = {"pool": pool, "report": rep, "flagged": flagged, "text": text}
        texts.append(f"[{source}, {pool}] {text}")
    out["text"] = "\n".join(texts)
    return out
