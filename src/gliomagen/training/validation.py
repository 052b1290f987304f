"""Validation during training: realism, fidelity, diversity and memorisation of G_ema samples.

Every ``train.val_every`` steps (0 = off) the main worker draws ``train.val_samples`` volumes from
G_ema (fixed latents, constant noise, so two evaluations differ only by the weights; the conditions
of the store's ``val`` cases in turn) and measures them with the pieces of
:mod:`gliomagen.evaluation`:

=============== ========================================================================== =======
metric          what                                                                       better
=============== ========================================================================== =======
``fd``          Frechet distance of ``probe`` features, samples vs the val split             lower
``kid``         KID (cubic-kernel MMD^2) of the same features                                lower
``fidelity``    accuracy, averaged over the model's categorical conditions, of a             higher
                classifier fitted on the training split's features in naming the
                *requested* condition of each sample (``fidelity_real``: on the val cases)
``diversity``   mean pairwise MS-SSIM among samples (``diversity_real``: among val cases)    lower
``mask``        tumour-structure distance: per requested condition, how far the samples'     lower
                tumour size, enhancing and necrotic shares, connectedness and tissue
                contrasts (each tumour tissue's mean minus the normal brain's, per modality)
                are from the *training* cases' with that condition (Wasserstein-1 in units
                of the real spread; mask and contrast families weigh alike;
                :func:`gliomagen.evaluation.tissue.structure_distance`; ``mask_groups``: per
                condition and statistic). Vanishing or speckled tumours, the wrong inner
                structure for a grade or a dull enhancing region raise it
``memorised``   samples that the memorisation audit flags as near-copies of *training*       --
                cases (both SSIM and feature distance beyond the val cases' 5th percentile)
=============== ========================================================================== =======

The cost stays small: the probe network is trained once per run with cheap options
(``train.val_probe_steps`` steps, width 8, at most 32 voxels a side) and cached under the hash of
its inputs in ``RUN/validation/probe/``; the features of the real val and training cases, their
coarse copies, the val cases' nearest training cases (the memorisation thresholds) and the val
cases' own diversity are computed once, kept in memory and cached in
``RUN/validation/real-<hash>.npz`` (the hash covers the probe, the case ids and the options).
``train.val_samples`` and ``train.val_batch_size`` bound the work of one evaluation; its seconds
are logged.

Outputs: one JSON line per evaluation appended to ``RUN/validation.jsonl`` (``step``, ``seconds``,
``setup_seconds`` (the part of the first evaluation of a trainer spent on the real side, else
``null``), ``metrics``, ``metric``, ``improved``, ``best``, ``since_best``, ``stop``: ``null`` or
``{"reason", "detail"}``); ``val/*`` scalars in
TensorBoard; a line in ``RUN/log.txt``. The best evaluation by ``train.val_metric`` (improving by
more than ``train.val_min_delta``; an evaluation with ``memorisation_threshold`` or more flagged
samples never counts) is saved as ``RUN/checkpoints/best.pt``. Early stopping: ``memorisation``
when ``train.stop_on_memorisation`` and at least ``train.memorisation_threshold`` samples are
flagged; ``plateau`` when the metric has not improved for ``train.val_patience`` evaluations (0 =
never). The loop then writes a final checkpoint and stops; the reason is in the last JSON line,
the log and the ``gliomagen train`` output.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from gliomagen.errors import GliomagenError
from gliomagen.io.atomic import write_bytes

VALIDATION_FILE = "validation.jsonl"
CACHE_DIR = "validation"
CACHE_FORMAT = 2  # 2: + the training cases' tumour-structure statistics and tissue contrasts
PROBE_WIDTH = 8
SEED_OFFSET = 7919  # latents of the validation samples: seed + this (apart from montage latents)
HIGHER_IS_BETTER = {
    "fd": False, "kid": False, "fidelity": True, "diversity": False, "mask": False,
}  # fmt: skip
"""Direction of each ``train.val_metric``."""


def validation_active(cfg: Any) -> bool:
    """Whether a run with this configuration evaluates at least once."""
    t = cfg.train
    return bool(t.val_every > 0 and t.val_every <= t.steps)


def is_better(metric: str, value: float, best: float | None, min_delta: float = 0.0) -> bool:
    """Whether ``value`` improves on ``best`` by more than ``min_delta`` in ``metric``'s direction."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    if HIGHER_IS_BETTER[metric]:
        return value > best + min_delta
    return value < best - min_delta


@torch.no_grad()
def generate_samples(
    G: torch.nn.Module,
    z: torch.Tensor,
    cat: torch.Tensor,
    cont: torch.Tensor,
    batch_size: int,
    device: torch.device | str,
) -> tuple[np.ndarray, np.ndarray]:
    """Volumes of ``G`` (constant noise) in batches.

    Returns:
        ``(images float32 [N, C, *S] clamped to [-1, 1], masks uint8 [N, *S] (argmax of the logits))``.
    """
    imgs, masks = [], []
    for i in range(0, len(z), batch_size):
        sl = slice(i, i + batch_size)
        img, logits = G(
            z[sl].to(device), cat[sl].to(device), cont[sl].to(device), noise_mode="const"
        )
        imgs.append(img.float().clamp(-1, 1).cpu())
        masks.append(logits.argmax(1).to(torch.uint8).cpu())
    return torch.cat(imgs).numpy(), torch.cat(masks).numpy()


def read_records(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The evaluations of a run (``RUN/validation.jsonl``), oldest first; ``[]`` without the file."""
    path = Path(run_dir) / VALIDATION_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


class Validator:
    """Periodic validation of one run (see the module docstring).

    Args:
        cfg: the run configuration.
        data: the run's :class:`~gliomagen.training.batches.TrainingData` (its store must be a
            store folder, opened on its ``train`` split).
        run_dir: the run folder.
        device: where G_ema and the probe run.
        monitor: the run's :class:`~gliomagen.training.monitor.RunMonitor`.
        enabled: False on workers other than the main one (they only take part in the stop vote).
        resume: the run continues from a checkpoint (keep ``validation.jsonl`` up to that step).

    Raises:
        GliomagenError: the store has no usable val split, ``data.split`` is not ``train``, or the
            metric cannot be measured (``fidelity`` without a categorical condition).
    """

    def __init__(
        self,
        cfg: Any,
        data: Any,
        run_dir: Path,
        device: torch.device,
        monitor: Any,
        *,
        enabled: bool = True,
        resume: bool = False,
    ) -> None:
        from gliomagen.data.store import open_store
        from gliomagen.evaluation.inputs import breakdown_fields

        t = cfg.train
        self.cfg, self.t, self.run_dir, self.device = cfg, t, Path(run_dir), device
        self.monitor, self.enabled, self.metric = monitor, enabled, t.val_metric
        key = f"train.val_every={t.val_every}"
        path = getattr(data.store, "path", None)
        if path is None or not (Path(path) / "meta.json").is_file():
            raise GliomagenError(
                f"{key}: validation reads the val split of a store folder; train on a store "
                f"path or --set train.val_every=0"
            )
        if cfg.data.split != "train" or getattr(data.store, "split", "train") != "train":
            raise GliomagenError(
                f"{key}: validation needs data.split=train (data.split={cfg.data.split} trains "
                f"on other cases); use data.split=train or --set train.val_every=0"
            )
        if len(data.size) != 3:
            raise GliomagenError(
                f"{key}: validation measures 3D volumes; {path} holds {len(data.size)}D slices "
                f"(--set train.val_every=0)"
            )
        self.store_path = Path(path)
        self.modalities = list(data.store.modalities)
        val = open_store(self.store_path, split="val")
        if len(val) < 2:
            raise GliomagenError(
                f"{key}: {self.store_path} has {len(val)} val case(s), validation needs at least 2; "
                f"prepare more cases or --set train.val_every=0"
            )
        schema = data.schema
        self.fields = [
            f for f in breakdown_fields(val.schema) if f in schema.names
        ]  # categorical conditions of the model whose fidelity can be scored
        if self.metric == "fidelity" and not self.fields:
            raise GliomagenError(
                "train.val_metric=fidelity: the model has no categorical condition to score; "
                "choose fd, kid or diversity"
            )
        n = t.val_samples
        pick = np.arange(n) % len(val)  # the val cases' conditions in turn
        cat, cont = schema.encode_many([schema.normalise(r) for r in val.rows])
        self.cat = torch.as_tensor(cat[pick], dtype=torch.long)  # [n, n_cat]
        self.cont = torch.as_tensor(cont[pick], dtype=torch.float32)  # [n, n_cont]
        self.labels = [{f: val.rows[i].get(f) for f in self.fields} for i in pick]
        gen = torch.Generator().manual_seed(t.seed + SEED_OFFSET)
        self.z = torch.randn(n, cfg.model.z_dim, generator=gen)  # [n, z_dim]
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.since_best = 0
        self.evaluations = 0
        self._ref: dict[str, Any] | None = None
        if enabled and not resume:  # a file left by a start that failed before its first checkpoint
            (self.run_dir / VALIDATION_FILE).unlink(missing_ok=True)

    # -- schedule and state --------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether step ``step`` ends with an evaluation."""
        return step % self.t.val_every == 0

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (``train_state["validation"]``)."""
        return {
            "best_value": self.best_value,
            "best_step": self.best_step,
            "since_best": self.since_best,
            "evaluations": self.evaluations,
        }

    def load_state(self, state: dict[str, Any] | None, step: int) -> None:
        """Restore :meth:`state` on resume; drop JSON lines of evaluations after ``step``."""
        if state:
            self.best_value = _finite(state.get("best_value"))
            self.best_step = None if state.get("best_step") is None else int(state["best_step"])
            self.since_best = int(state.get("since_best", 0))
            self.evaluations = int(state.get("evaluations", 0))
        if self.enabled:
            records = read_records(self.run_dir)
            kept = [r for r in records if int(r.get("step", 0)) <= step]
            if len(kept) != len(records):  # the interrupted session evaluated past its checkpoint
                text = "".join(json.dumps(r) + "\n" for r in kept)
                write_bytes(self.run_dir / VALIDATION_FILE, text.encode())

    # -- the real side, once -----------------------------------------------------------------------
    def _reference(self) -> dict[str, Any]:
        if self._ref is not None:
            return self._ref
        from gliomagen.evaluation import audits
        from gliomagen.evaluation.features import ProbeExtractor, extract_features
        from gliomagen.evaluation.inputs import from_store
        from gliomagen.evaluation.probe import ProbeOptions

        t = self.t
        val = from_store(self.store_path, "val", "validation")
        train = from_store(self.store_path, "train", "validation")
        for cases in (val, train):
            cases.categorical = list(self.fields)
        options = ProbeOptions(
            size=min(32, max(16, max(val.spatial))),
            width=PROBE_WIDTH,
            steps=t.val_probe_steps,
            seed=t.seed,
        )
        cache = self.run_dir / CACHE_DIR
        extractor = ProbeExtractor(
            train, options, cache, batch_size=t.val_batch_size, device=self.device
        )
        h = hashlib.sha256()
        h.update(json.dumps({
            "format": CACHE_FORMAT, "probe": extractor.info()["key"], "val": val.case_ids,
            "train": train.case_ids, "coarse": audits.COARSE_SIZE, "pairs": t.val_pairs,
            "seed": t.seed,
        }).encode())  # fmt: skip
        path = cache / f"real-{h.hexdigest()[:20]}.npz"
        arrays: dict[str, np.ndarray] | None = None
        if path.is_file():
            try:
                with np.load(path) as blob:
                    arrays = {k: blob[k] for k in blob.files}
            except (OSError, ValueError):  # damaged: computed again and replaced
                arrays = None
        if arrays is None:
            fv = extract_features(extractor, val, t.val_batch_size)
            ft = extract_features(extractor, train, t.val_batch_size)
            vc = np.concatenate(
                [audits.coarse_vectors(x) for _, x, _ in val.batches(t.val_batch_size)]
            )
            tc = np.concatenate(
                [audits.coarse_vectors(x) for _, x, _ in train.batches(t.val_batch_size)]
            )
            zt, zv = audits.standardise(ft, fv)
            nn = audits.nearest_training(val, zv, vc, train, zt, tc)
            div = audits.pairwise_ms_ssim(
                val, np.arange(len(val)), n_pairs=t.val_pairs, seed=t.seed
            )
            ts: dict[str, list[np.ndarray]] = {}
            for _, img, msk in train.batches(t.val_batch_size):
                for k, v in self._structure_stats(img, msk).items():
                    ts.setdefault(k, []).append(v)
            arrays = {
                "val_features": fv, "train_features": ft, "train_coarse": tc,
                **{f"train_structure_{k}": np.concatenate(v) for k, v in ts.items()},
                "diversity_real": np.array(np.nan if div["mean"] is None else div["mean"]),
                **{f"val_nn_{k}": v for k, v in nn.items()},
            }  # fmt: skip
            if self.enabled:
                buf = io.BytesIO()
                np.savez(buf, **cast(dict[str, Any], arrays))
                write_bytes(path, buf.getvalue())
        sk = "train_structure_"
        self._ref = {
            "val": val, "train": train, "extractor": extractor, "cache": str(path),
            "val_nn": {k[len("val_nn_"):]: v for k, v in arrays.items() if k.startswith("val_nn_")},
            "train_structure": {k[len(sk):]: v for k, v in arrays.items() if k.startswith(sk)},
            **{k: v for k, v in arrays.items() if not k.startswith(("val_nn_", sk))},
        }  # fmt: skip
        return self._ref

    # -- one evaluation ------------------------------------------------------------------------
    def measure(self, G: torch.nn.Module) -> dict[str, Any]:
        """Every metric of ``G``'s samples (see the module docstring); ``None`` where undefined."""
        from gliomagen.evaluation import audits
        from gliomagen.evaluation.cases import CaseSet
        from gliomagen.evaluation.distances import frechet_distance, kernel_inception_distance

        t, ref = self.t, self._reference()
        val, train = ref["val"], ref["train"]
        imgs, masks = generate_samples(
            G, self.z, self.cat, self.cont, t.val_batch_size, self.device
        )
        syn = CaseSet.from_arrays(
            imgs, masks, labels=self.labels, name="G_ema", spacing_mm=val.spacing_mm,
            categorical=list(self.fields),
        )  # fmt: skip
        fs = np.concatenate(
            [ref["extractor"](x).double().numpy() for _, x, _ in syn.batches(t.val_batch_size)]
        )  # [n, F]
        structure = self._structure(imgs, masks, syn, train, ref["train_structure"])
        if not np.isfinite(fs).all():
            return {"fd": None, "kid": None, "fidelity": None, "fidelity_real": None,
                    "diversity": None, "diversity_real": _finite(ref["diversity_real"]),
                    "mask": structure["value"], "mask_groups": structure["groups"],
                    "memorised": None, "n_samples": len(syn), "n_val": len(val),
                    "note": "non-finite features (G_ema gives NaN/inf)"}  # fmt: skip
        fv, ft = ref["val_features"], ref["train_features"]
        kid, _ = kernel_inception_distance(fv, fs, num_subsets=50, seed=t.seed)
        sc = np.concatenate([audits.coarse_vectors(x) for _, x, _ in syn.batches(t.val_batch_size)])
        zt, zs = audits.standardise(ft, fs)
        nn = audits.nearest_training(syn, zs, sc, train, zt, ref["train_coarse"])
        memo = audits.memorisation_table(syn, nn, ref["val_nn"], train)
        fidelity = audits.conditional_fidelity(
            [(f, "categorical") for f in self.fields], train, ft, val, fv, syn, fs
        )
        acc = [e["synthetic"]["accuracy"] for e in fidelity.values() if "synthetic" in e]
        acc_real = [e["heldout"]["accuracy"] for e in fidelity.values() if "heldout" in e]
        div = audits.pairwise_ms_ssim(syn, np.arange(len(syn)), n_pairs=t.val_pairs, seed=t.seed)
        return {
            "fd": _finite(frechet_distance(fv, fs)),
            "kid": _finite(kid),
            "fidelity": float(np.mean(acc)) if acc else None,
            "fidelity_real": float(np.mean([a for a in acc_real if a is not None]))
            if any(a is not None for a in acc_real) else None,
            "diversity": _finite(div["mean"]),
            "diversity_real": _finite(ref["diversity_real"]),
            "mask": structure["value"],
            "mask_groups": structure["groups"],
            "memorised": int(memo["n_flagged"]),
            "n_samples": len(syn),
            "n_val": len(val),
        }  # fmt: skip

    def _structure_stats(self, images: Any, masks: Any) -> dict[str, np.ndarray]:
        """Tumour-structure statistics and tissue contrasts of a batch (``mask`` metric)."""
        from gliomagen.evaluation import tissue

        return {
            **tissue.structure_statistics(masks),
            **tissue.tissue_contrast(images, masks, self.modalities),
        }

    def _structure(
        self, images: np.ndarray, masks: np.ndarray, syn: Any, train: Any,
        real: dict[str, np.ndarray],
    ) -> dict[str, Any]:  # fmt: skip
        """The ``mask`` metric: :func:`~gliomagen.evaluation.tissue.structure_distance` of the
        samples against the training cases, per categorical condition (all cases together
        without one)."""
        from gliomagen.evaluation import tissue

        stats = self._structure_stats(images, masks)
        if self.fields:
            rg, sg = train.groups(self.fields), syn.groups(self.fields)
        else:
            rg, sg = {"all": np.arange(len(train))}, {"all": np.arange(len(syn))}
        return tissue.structure_distance(real, rg, stats, sg)

    def maybe_validate(
        self, step: int, G: torch.nn.Module, state_fn: Callable[[], dict[str, Any]]
    ) -> str | None:
        """Evaluate when ``step`` is due (main worker): log, keep ``best.pt``, decide the stop.

        Args:
            step: optimiser steps done.
            G: the generator to sample (G_ema).
            state_fn: the trainer's checkpoint dict factory (for ``best.pt``).

        Returns:
            The stop reason (``"plateau"`` or ``"memorisation"``), or ``None`` to go on.
        """
        if not self.enabled or not self.due(step):
            return None
        from gliomagen.io.checkpoint import save_best

        t0 = time.time()
        setup_s = None
        if self._ref is None:  # the real side, once: probe, features, thresholds (cached)
            self._reference()
            setup_s = time.time() - t0
        metrics = self.measure(G)
        t, metric = self.t, self.metric
        value = metrics.get(metric)
        memorised = metrics.get("memorised")
        copies = memorised is not None and memorised >= t.memorisation_threshold
        improved = (
            value is not None
            and not copies
            and is_better(metric, float(value), self.best_value, t.val_min_delta)
        )
        self.evaluations += 1
        if improved:
            self.best_value, self.best_step, self.since_best = float(value), step, 0  # type: ignore[arg-type]
            state = state_fn()
            state["validation"] = {"metric": metric, "value": float(value), "metrics": metrics}  # type: ignore[arg-type]
            save_best(state, self.run_dir)
        else:
            self.since_best += 1
        stop, detail = None, None
        if t.stop_on_memorisation and copies:
            stop = "memorisation"
            detail = (
                f"{memorised} of {metrics['n_samples']} samples flagged as near-copies of "
                f"training cases (threshold {t.memorisation_threshold})"
            )
        elif t.val_patience > 0 and self.since_best >= t.val_patience:
            stop = "plateau"
            best = (
                "none"
                if self.best_value is None
                else f"{self.best_value:.4g} at step {self.best_step}"
            )
            detail = (
                f"val {metric} has not improved for {self.since_best} evaluations (best {best})"
            )
        seconds = time.time() - t0
        record = {
            "step": step, "seconds": round(seconds, 3), "setup_seconds": None if setup_s is None else round(setup_s, 3),
            "metrics": metrics, "metric": metric, "improved": improved,
            "best": {"step": self.best_step, "value": self.best_value}, "since_best": self.since_best,
            "stop": None if stop is None else {"reason": stop, "detail": detail},
        }  # fmt: skip
        with open(self.run_dir / VALIDATION_FILE, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        scalars = {f"val/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        scalars["val/seconds"] = seconds
        self.monitor.scalars(step, scalars)
        shown = " ".join(
            f"{k}={v:.4g}"
            for k, v in metrics.items()
            if v is not None and (isinstance(v, float) or k == "memorised")
        )
        self.monitor.log(
            f"validation at step {step}: {shown} ({seconds:.1f} s)"
            + (f"; new best {metric}, saved checkpoints/best.pt" if improved else "")
            + (f"; early stop ({stop}): {detail}" if stop else "")
        )
        return stop


def last_stop(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The last evaluation of a run when it stopped the run early, else ``None``."""
    records = read_records(run_dir)
    return records[-1] if records and records[-1].get("stop") else None


__all__ = [
    "HIGHER_IS_BETTER",
    "VALIDATION_FILE",
    "Validator",
    "generate_samples",
    "is_better",
    "last_stop",
    "read_records",
    "validation_active",
]
