"""``evaluate``: every metric of a synthetic cohort against held-out real cases, into a report folder.

Order of work: resolve the three sets (held-out real, training, synthetic) -> build the feature
extractor (the probe trains on the training split) -> one pass over each set (features, coarse
copies, mask statistics, tissue histograms) -> FD/KID/PRDC with the real-vs-real floor, diversity,
memorisation, conditional fidelity, mask realism, histograms, all overall and per condition ->
montages -> optional reconstruction -> ``REPORT/metrics.json`` and ``REPORT/index.html``.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen import MODALITIES, __version__
from gliomagen.errors import GliomagenError
from gliomagen.evaluation import audits, tissue
from gliomagen.evaluation.cases import CaseSet, check_compatible
from gliomagen.evaluation.distances import distance_summary
from gliomagen.evaluation.features import build_extractor
from gliomagen.evaluation.inputs import held_out_split, resolve, split_spec
from gliomagen.evaluation.montages import write_montages
from gliomagen.evaluation.probe import ProbeOptions
from gliomagen.report.files import clean_json, write_json

METRICS_FORMAT = 1
ALL = "all"


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def scan(cases: CaseSet, extractor: Any, batch_size: int) -> dict[str, Any]:
    """One pass over a set: features ``[N, F]``, coarse vectors, mask statistics, tissue histograms."""
    feats, coarse, hists = [], [], []
    stats: dict[str, list[np.ndarray]] = {}
    voxel_ml = float(np.prod(cases.spacing_mm)) / 1000.0
    for _, imgs, masks in cases.batches(batch_size):
        with torch.no_grad():
            feats.append(extractor(imgs).double().numpy())
        coarse.append(audits.coarse_vectors(imgs))
        hists.append(tissue.tissue_histograms(imgs, masks))
        for key, value in tissue.mask_statistics(masks, voxel_ml).items():
            stats.setdefault(key, []).append(value)
    out: dict[str, Any] = {
        "features": np.concatenate(feats),
        "coarse": np.concatenate(coarse),
        "hist": np.concatenate(hists),
        "mask": {k: np.concatenate(v) for k, v in stats.items()},
    }
    if not np.isfinite(out["features"]).all():
        raise GliomagenError(f"{cases.name}: the {extractor.name} extractor gave NaN/inf features")
    return out


def _subsample(n: int, m: int, seed: int) -> np.ndarray:
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def _groups(
    real: CaseSet, synthetic: CaseSet, train: CaseSet
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = {ALL: (np.arange(len(real)), np.arange(len(synthetic)), np.arange(len(train)))}
    rg, sg, tg = real.groups(), synthetic.groups(real.categorical), train.groups(real.categorical)
    for key in sorted(set(rg) | set(sg)):
        out[key] = (
            rg.get(key, np.zeros(0, np.int64)),
            sg.get(key, np.zeros(0, np.int64)),
            tg.get(key, np.zeros(0, np.int64)),
        )
    return out


def _distances(
    real_f: np.ndarray, syn_f: np.ndarray, train_f: np.ndarray, n_boot: int, seed: int
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "n_real": len(real_f),
        "n_synthetic": len(syn_f),
        "n_train": len(train_f),
    }
    if len(real_f) >= 2 and len(syn_f) >= 2:
        entry["synthetic"] = distance_summary(real_f, syn_f, n_boot=n_boot, seed=seed)
    if len(real_f) >= 2 and len(train_f) >= 2:
        # the floor uses as many training cases as there are synthetic ones (FD is biased by n)
        pick = _subsample(len(train_f), max(2, len(syn_f)), seed)
        entry["floor"] = distance_summary(real_f, train_f[pick], n_boot=n_boot, seed=seed)
    return entry


def resolve_sets(
    real: CaseSet | str | os.PathLike[str],
    synthetic: CaseSet | str | os.PathLike[str],
    train: CaseSet | str | os.PathLike[str] | None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> tuple[CaseSet, CaseSet, CaseSet]:
    """``(held-out real, training, synthetic)`` sets on one grid, broken down by the real conditions.

    ``--real STORE`` without a split means its test split (else val); ``--train`` defaults to the
    same store's train split; a synthetic NIfTI folder is prepared at the real grid.
    """
    real_default = None
    if not isinstance(real, CaseSet):
        path, split = split_spec(real)
        if not path.exists():
            raise GliomagenError(f"--real {path}: not found")
        if not (path / "meta.json").is_file():
            raise GliomagenError(
                f"--real {path}: not a gliomagen store (no meta.json); run gliomagen prepare"
            )
        real_default = None if split else held_out_split(path)
        if train is None:
            if (split or real_default) == "train":
                raise GliomagenError(
                    f"--real {real}: the train split is not held out; give --train another store"
                )
            train = f"{path}:train"
    if train is None:
        raise GliomagenError("--train: needed when --real is not a store (real training cases)")
    real_set = resolve(real, "--real", default_split=real_default)
    train_set = resolve(train, "--train", default_split="train")
    check_compatible(real_set, train_set)
    syn_set = resolve(
        synthetic, "--synthetic", size=real_set.spatial, cache_dir=cache_dir, progress=progress
    )
    check_compatible(real_set, syn_set)
    if len(syn_set) < 2 or len(real_set) < 2:
        raise GliomagenError(
            f"need at least 2 real and 2 synthetic cases, got {len(real_set)} and {len(syn_set)}"
        )
    syn_set.categorical = train_set.categorical = list(real_set.categorical)
    return real_set, train_set, syn_set


def _memorisation(
    scans: dict[str, Any], real: CaseSet, train: CaseSet, syn: CaseSet, groups: dict[str, Any]
) -> dict[str, Any]:
    zt, zr, zs = audits.standardise(*(scans[r]["features"] for r in ("train", "real", "synthetic")))
    tc = scans["train"]["coarse"]
    nn_real = audits.nearest_training(real, zr, scans["real"]["coarse"], train, zt, tc)
    nn_syn = audits.nearest_training(syn, zs, scans["synthetic"]["coarse"], train, zt, tc)
    memo = audits.memorisation_table(syn, nn_syn, nn_real, train)
    flagged = {row["case_id"] for row in memo["cases"] if row["flagged"]}
    memo["by_condition"] = {
        key: {"n": int(len(ps)), "n_flagged": sum(syn.case_ids[i] in flagged for i in ps)}
        for key, (_, ps, _) in groups.items()
    }
    return memo


def evaluate(
    real: CaseSet | str | os.PathLike[str],
    synthetic: CaseSet | str | os.PathLike[str],
    out: str | os.PathLike[str],
    train: CaseSet | str | os.PathLike[str] | None = None,
    extractor: str = "probe",
    weights: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    run: str | os.PathLike[str] | None = None,
    *,
    n_boot: int = 100,
    seed: int = 0,
    n_pairs: int = 100,
    batch_size: int = 4,
    n_montage: int = 2,
    probe_options: ProbeOptions | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    n_reconstruct: int = 8,
    reconstruct_steps: int = 100,
    device: str = "cpu",
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    slice_size: int | None = None,
) -> dict[str, Any]:
    """Evaluate a synthetic cohort against held-out real cases and write ``out/`` (report + metrics).

    Volumes and 2-D slices (a slice store with a 2D cohort or store) go through the same steps.

    Args:
        real: held-out real cases: a CaseSet, ``STORE:split`` or ``STORE`` (its test split, else val).
        synthetic: a CaseSet, a store, or a folder of NIfTI cases (prepared at the real grid).
        out: report folder (``index.html``, ``metrics.json``, ``figures/``).
        train: real training cases (default: the ``train`` split of the real store).
        extractor: ``probe`` | ``medicalnet`` | ``slices`` (2-D slices: ``probe`` or ``slices``).
        weights: weights file of ``medicalnet`` / ``slices``.
        slice_size: ``slices``: resize every slice to this square side first (e.g. 299 for an
            InceptionV3); ``None`` keeps the grid's size.
        checkpoint: generator checkpoint for the reconstruction audit.
        run: run folder whose training curves go into the report.
        n_boot: bootstrap resamples of the intervals.
        seed: seed of every random choice.
        n_pairs: MS-SSIM pairs per set and condition for diversity.
        batch_size: cases per batch when reading and extracting.
        n_montage: cases per montage.
        probe_options: probe network options.
        cache_dir: cache of the probe and of prepared NIfTI folders.
        n_reconstruct: held-out cases projected into ``w`` space (with ``checkpoint``).
        reconstruct_steps: optimisation steps per projection.
        device: where networks run (``cpu`` or ``cuda``): feature extraction, probe training and
            the projection; similarity measures and statistics run on the CPU.
        progress: print progress on stderr.
        log: alternative to ``progress``: called with each progress message.

    Returns:
        The metrics dict (also written to ``out/metrics.json``).
    """
    say = log or (lambda m: _say(progress, m))
    if n_boot < 0:
        raise GliomagenError(f"--bootstrap {n_boot}: must be >= 0")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GliomagenError(f"--out {out}: exists and is not a folder")
    cache = Path(cache_dir) if cache_dir else None
    from gliomagen.generation.source import resolve_device

    dev = resolve_device(device)
    real_set, train_set, syn_set = resolve_sets(real, synthetic, train, cache, progress)
    say(f"real: {real_set.name} ({len(real_set)} cases); train: {train_set.name} ({len(train_set)}); "
        f"synthetic: {syn_set.name} ({len(syn_set)})")  # fmt: skip
    n_ch = real_set.shape[0]
    modalities = (
        list(MODALITIES)[:n_ch] if n_ch <= len(MODALITIES) else [f"ch{i}" for i in range(n_ch)]
    )

    say(f"features: {extractor}")
    ex = build_extractor(
        extractor, train=train_set, weights=weights, probe_options=probe_options, cache_dir=cache,
        device=dev, slice_size=slice_size,
    )  # fmt: skip
    scans = {}
    for role, cases in (("train", train_set), ("real", real_set), ("synthetic", syn_set)):
        say(f"scanning {role}: {cases.name}")
        scans[role] = scan(cases, ex, batch_size)
    ft, fr, fs = (scans[r]["features"] for r in ("train", "real", "synthetic"))
    groups = _groups(real_set, syn_set, train_set)

    say("distances (FD, KID, PRDC) with bootstrap intervals")
    distances = {
        key: _distances(fr[pr], fs[ps], ft[pt], n_boot, seed)
        for key, (pr, ps, pt) in groups.items()
    }
    say("diversity (MS-SSIM)")
    diversity = {
        key: {
            "synthetic": audits.pairwise_ms_ssim(
                syn_set, ps, n_pairs=n_pairs, seed=seed, n_boot=n_boot
            ),
            "real": audits.pairwise_ms_ssim(
                real_set, pr, n_pairs=n_pairs, seed=seed, n_boot=n_boot
            ),
        }
        for key, (pr, ps, _) in groups.items()
    }
    say("memorisation")
    memo = _memorisation(scans, real_set, train_set, syn_set, groups)
    say("conditional fidelity, masks, intensities, montages")
    fidelity = audits.conditional_fidelity(
        _fidelity_fields(train_set, syn_set), train_set, ft, real_set, fr, syn_set, fs
    )
    real_mask, syn_mask = scans["real"]["mask"], scans["synthetic"]["mask"]
    masks = {
        key: tissue.mask_realism(
            {k: v[pr] for k, v in real_mask.items()}, {k: v[ps] for k, v in syn_mask.items()}
        )
        for key, (pr, ps, _) in groups.items()
    }
    hists = {
        key: tissue.histogram_comparison(
            scans["real"]["hist"][pr], scans["synthetic"]["hist"][ps], modalities
        )
        for key, (pr, ps, _) in groups.items()
    }
    montages = write_montages(out, groups, real_set, syn_set, n_montage, seed, modalities)
    reconstruction = None
    if checkpoint is not None:
        from gliomagen.evaluation.reconstruction import reconstruct

        say("reconstruction")
        reconstruction = reconstruct(
            checkpoint,
            real_set,
            n_cases=n_reconstruct,
            steps=reconstruct_steps,
            seed=seed,
            device=dev,
        )
    curves = None
    if run is not None:
        from gliomagen.evaluation.curves import read_curves

        curves = read_curves(Path(run))

    metrics = clean_json({
        "format_version": METRICS_FORMAT,
        "gliomagen_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": {
            "real": {"name": real_set.name, "n": len(real_set)},
            "train": {"name": train_set.name, "n": len(train_set)},
            "synthetic": {"name": syn_set.name, "n": len(syn_set)},
            "grid": list(real_set.spatial), "spacing_mm": list(real_set.spacing_mm), "modalities": modalities,
            "conditions": list(real_set.categorical), "checkpoint": str(checkpoint) if checkpoint else None,
            "run": str(Path(run).resolve()) if run else None,
        },
        "settings": {"bootstrap": n_boot, "seed": seed, "n_pairs": n_pairs, "ci_level": 0.95, "device": str(dev)},
        "extractor": ex.info(),
        "groups": {
            key: {"n_real": len(pr), "n_synthetic": len(ps), "n_train": len(pt)} for key, (pr, ps, pt) in groups.items()
        },
        "distances": distances, "diversity": diversity, "memorisation": memo, "fidelity": fidelity,
        "masks": masks, "intensity": hists, "montages": montages, "reconstruction": reconstruction, "curves": curves,
    })  # fmt: skip
    say("writing metrics.json and index.html")
    write_json(out / "metrics.json", metrics)
    from gliomagen.report.html import write_report

    write_report(out, metrics)
    say(f"report: {out / 'index.html'}")
    return metrics


def _fidelity_fields(train: CaseSet, syn: CaseSet) -> list[tuple[str, str]]:
    """Labels to score: every requested label of the synthetic cases that the training cases also have."""
    names: list[str] = []
    for row in syn.labels:
        names += [k for k in row if k not in names and k not in syn.derived]
    out = []
    for name in names:
        values = [v for v in train.label_values(name) if v is not None]
        if not values:
            continue
        kind = "categorical" if any(isinstance(v, str) for v in values) else "continuous"
        out.append((name, kind))
    return out
