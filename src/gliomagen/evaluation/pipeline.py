"""``evaluate``: every metric of a synthetic cohort against held-out real cases, into a report folder.

Order of work: resolve the three sets (held-out real, training, synthetic) -> build the feature
extractor (the probe trains on the training split) -> one pass over each set (features, coarse
copies, mask statistics, tissue histograms) -> FD/KID/PRDC with the real-vs-real floor, diversity,
memorisation, conditional fidelity, mask realism, histograms, all overall and per condition ->
montages -> optional reconstruction -> ``REPORT/metrics.json`` and ``REPORT/index.html``.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
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
from gliomagen.evaluation.probe import ProbeOptions

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
    out = {
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


def _montages(
    out: Path,
    groups: dict[str, Any],
    real: CaseSet,
    synthetic: CaseSet,
    n: int,
    seed: int,
    modalities: list[str],
) -> dict[str, Any]:
    from gliomagen.report.figures import montage_png

    result: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    for key, (pr, ps, _) in groups.items():
        entry = {}
        for role, cases, pos in (("real", real, pr), ("synthetic", synthetic, ps)):
            if not len(pos) or n <= 0:
                continue
            chosen = np.sort(rng.choice(pos, min(n, len(pos)), replace=False))
            imgs, masks = cases.load(chosen)
            items = [
                (imgs[i].numpy(), masks[i].numpy(), cases.case_ids[int(c)])
                for i, c in enumerate(chosen)
            ]
            name = f"montage-{_slug(key)}-{role}.png"
            _write_bytes(out / "figures" / name, montage_png(items, modalities, f"{role}: {key}"))
            entry[role] = f"figures/{name}"
        result[key] = entry
    return result


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    _write_bytes(
        path, (json.dumps(data, indent=1, allow_nan=False, default=_jsonable) + "\n").encode()
    )


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _clean(x: Any) -> Any:
    """Replace NaN/inf by None recursively (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return x


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
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a synthetic cohort against held-out real cases and write ``out/`` (report + metrics).

    Args:
        real: held-out real cases: a CaseSet, ``STORE:split`` or ``STORE`` (its test split, else val).
        synthetic: a CaseSet, a store, or a folder of NIfTI cases (prepared at the real grid).
        out: report folder (``index.html``, ``metrics.json``, ``figures/``).
        train: real training cases (default: the ``train`` split of the real store).
        extractor: ``probe`` | ``medicalnet`` | ``slices``.
        weights: weights file of ``medicalnet`` / ``slices``.
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
    real_default = None
    if not isinstance(real, CaseSet):
        path, split = split_spec(real)
        if (path / "meta.json").is_file() and split is None:
            real_default = held_out_split(path)
        if train is None and (path / "meta.json").is_file():
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
    say(
        f"real: {real_set.name} ({len(real_set)} cases); train: {train_set.name} ({len(train_set)})"
    )
    syn_set = resolve(
        synthetic, "--synthetic", size=real_set.spatial, cache_dir=cache, progress=progress
    )
    check_compatible(real_set, syn_set)
    syn_set.categorical = train_set.categorical = list(real_set.categorical)
    if len(syn_set) < 2 or len(real_set) < 2:
        raise GliomagenError(
            f"need at least 2 real and 2 synthetic cases, got {len(real_set)} and {len(syn_set)}"
        )
    modalities = (
        list(MODALITIES)[: real_set.shape[0]]
        if real_set.shape[0] <= 4
        else [f"ch{i}" for i in range(real_set.shape[0])]
    )

    say(f"features: {extractor}")
    ex = build_extractor(
        extractor, train=train_set, weights=weights, probe_options=probe_options, cache_dir=cache
    )
    scans = {}
    for role, cases in (("train", train_set), ("real", real_set), ("synthetic", syn_set)):
        say(f"scanning {role}: {cases.name}")
        scans[role] = scan(cases, ex, batch_size)
    ft, fr, fs = (scans[r]["features"] for r in ("train", "real", "synthetic"))
    groups = _groups(real_set, syn_set, train_set)

    say("distances")
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
    zt, zr, zs = audits.standardise(ft, fr, fs)
    nn_real = audits.nearest_training(
        real_set, zr, scans["real"]["coarse"], train_set, zt, scans["train"]["coarse"]
    )
    nn_syn = audits.nearest_training(
        syn_set, zs, scans["synthetic"]["coarse"], train_set, zt, scans["train"]["coarse"]
    )
    memo = audits.memorisation_table(syn_set, nn_syn, nn_real, train_set)
    flagged = {row["case_id"] for row in memo["cases"] if row["flagged"]}
    memo["by_condition"] = {
        key: {"n": int(len(ps)), "n_flagged": sum(syn_set.case_ids[i] in flagged for i in ps)}
        for key, (_, ps, _) in groups.items()
    }

    say("conditional fidelity")
    fields = _fidelity_fields(real_set, train_set, syn_set)
    fidelity = audits.conditional_fidelity(fields, train_set, ft, real_set, fr, syn_set, fs)

    masks = {
        key: tissue.mask_realism(
            {k: v[pr] for k, v in scans["real"]["mask"].items()},
            {k: v[ps] for k, v in scans["synthetic"]["mask"].items()},
        )
        for key, (pr, ps, _) in groups.items()
    }
    hists = {
        key: tissue.histogram_comparison(
            scans["real"]["hist"][pr], scans["synthetic"]["hist"][ps], modalities
        )
        for key, (pr, ps, _) in groups.items()
    }

    say("montages")
    montages = _montages(out, groups, real_set, syn_set, n_montage, seed, modalities)

    reconstruction = None
    if checkpoint is not None:
        from gliomagen.evaluation.reconstruction import reconstruct

        say("reconstruction")
        reconstruction = reconstruct(
            checkpoint, real_set, n_cases=n_reconstruct, steps=reconstruct_steps, seed=seed
        )

    curves = None
    if run is not None:
        from gliomagen.report.curves import read_curves

        curves = read_curves(Path(run))

    metrics = _clean({
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
        "settings": {"bootstrap": n_boot, "seed": seed, "n_pairs": n_pairs, "ci_level": 0.95},
        "extractor": ex.info(),
        "groups": {key: {"n_real": int(len(pr)), "n_synthetic": int(len(ps)), "n_train": int(len(pt))} for key, (pr, ps, pt) in groups.items()},
        "distances": distances,
        "diversity": diversity,
        "memorisation": memo,
        "fidelity": fidelity,
        "masks": masks,
        "intensity": hists,
        "montages": montages,
        "reconstruction": reconstruction,
        "curves": curves,
    })  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", metrics)
    from gliomagen.report.html import write_report

    write_report(out, metrics)
    say(f"report: {out / 'index.html'}")
    return metrics


def _fidelity_fields(real: CaseSet, train: CaseSet, syn: CaseSet) -> list[tuple[str, str]]:
    """Labels to score: every label of the synthetic cases that the training cases also have."""
    names: list[str] = []
    for row in syn.labels:
        names += [k for k in row if k not in names]
    out = []
    for name in names:
        values = [v for v in train.label_values(name) if v is not None]
        if not values:
            continue
        kind = "categorical" if any(isinstance(v, str) for v in values) else "continuous"
        out.append((name, kind))
    return out
