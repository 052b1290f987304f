"""Is the view of generated 2D slices recognisable? A view classifier trained on real slices judges them.

On the phantom cohort (``gliomagen phantoms``, 2 mm): a slice store at ``--size`` (64 by default)
with every view, then ``small-data-2d`` with demo-cpu-sized widths (``TINY``) trained on the CPU for
``--minutes``; slices are generated for each requested view (``--condition view=V``, positions
drawn), from the 1-step model (a control: the view is then not learnt yet) and from the final one.

The judge: a multinomial logistic regression (scikit-learn, standardised inputs) on the real
*training* slices, each reduced to 16x16 per modality (area averaging; 1024 numbers), predicting
the view. Its accuracy on held-out real slices (the val and test cases, which it never saw) shows
the view is learnable from such inputs; its accuracy on generated slices against the *requested*
view shows whether the generator draws that view. Chance is 1/3 (three balanced requests).

Prints the figures and writes JSON (``--out``). Everything else goes to ``--workdir`` (a temporary
folder by default; kept when given), including ``overview.png`` of each generated set.

Usage:
    python benchmarks/view2d.py --minutes 5 --out benchmarks/results/view2d-cpu2.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gliomagen.config import resolve_config
from gliomagen.data import open_store
from gliomagen.data.phantoms import generate_cohort as make_phantoms
from gliomagen.data.slices import VIEWS, build_slice_store
from gliomagen.generation import generate_cohort
from gliomagen.generation.slices2d import read_slice_cohort
from gliomagen.training import train

TINY = [
    "model.z_dim=32", "model.w_dim=64", "model.mapping_layers=2", "model.cond_embed_dim=16",
    "model.g_channels=8", "model.g_max_channels=64", "model.d_channels=8", "model.d_max_channels=64",
    "model.fused_modconv=false", "model.mbstd_group=2", "model.d_stem=space_to_depth",
    "train.batch_size=8", "train.ema_half_life_images=500", "train.threads=1", "train.val_every=0",
    "train.log_every=25", "train.w_avg_samples=256", "train.steps=1000000",
    "train.checkpoint_every=1000000", "train.sample_every=1000000",
]  # fmt: skip
"""``small-data-2d`` at demo-cpu widths (~1M parameters): learns in minutes on 2 CPU cores."""

FEATURE_SIDE = 16


def features(images: np.ndarray) -> np.ndarray:
    """``[N, C, s, s]`` in [-1, 1] -> ``[N, C * 16 * 16]`` (area-averaged)."""
    x = torch.from_numpy(np.asarray(images, np.float32))
    return F.adaptive_avg_pool2d(x, FEATURE_SIDE).flatten(1).numpy()


def real_slices(store: Path, splits: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images and view names of the slices of ``splits``."""
    images = np.load(store / "images.npy", mmap_mode="r")
    rows: list[int] = []
    views: list[str] = []
    for split in splits:
        ds = open_store(store, split)
        rows += ds.indices.tolist()
        views += [r["view"] for r in ds.index_rows]
    return np.asarray(images[sorted(rows)], np.float32)[np.argsort(np.argsort(rows))], np.array(
        views
    )


def score(clf: Any, images: np.ndarray, views: np.ndarray) -> dict[str, Any]:
    """Accuracy overall and per true view, and the confusion matrix (rows: true, columns: predicted)."""
    pred = clf.predict(features(images))
    return {
        "n": int(len(views)),
        "accuracy": float((pred == views).mean()),
        "per_view": {v: float((pred[views == v] == v).mean()) for v in VIEWS if (views == v).any()},
        "confusion": [[int(((views == a) & (pred == b)).sum()) for b in VIEWS] for a in VIEWS],
    }


def generated(run: Path, folder: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` slices per view, generated with ``view=V``; images on the network scale and requested views."""
    images, views = [], []
    for k, view in enumerate(VIEWS):
        out = generate_cohort(
            run, folder / view, n=n, conditions={"view": view}, seed=seed + k * n, progress=False
        )
        imgs, _, _, labels, _ = read_slice_cohort(out)
        assert all(r["view"] == view for r in labels)
        images.append(imgs.astype(np.float32))
        views += [view] * len(labels)
    return np.concatenate(images), np.array(views)


def parse_args() -> argparse.Namespace:
    """The command line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0, help="training wall-clock budget")
    ap.add_argument("--size", type=int, default=64, help="slice side (64 or 32)")
    ap.add_argument("--cohorts", default="GLI=12,SSA=4", help="phantom cases per cohort")
    ap.add_argument("--samples", type=int, default=60, help="generated slices per view")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="keep phantoms, store, run and slices here"
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON results")
    return ap.parse_args()


def make_store(args: argparse.Namespace, work: Path, timings: dict[str, float]) -> Path:
    """Phantoms, then the slice store of every view (timed into ``timings``)."""
    t0 = time.perf_counter()
    cohorts = {k: int(v) for k, v in (p.split("=") for p in args.cohorts.split(","))}
    phantoms = make_phantoms(
        work / "phantoms", cohorts, resolution=2, seed=args.seed, progress=False
    )
    timings["phantoms_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = build_slice_store([phantoms], work / "store", labels_csv=phantoms / "clinical.csv", size=args.size,
                              seed=args.seed, progress=False, qc_cases=2)  # fmt: skip
    timings["prepare_s"] = time.perf_counter() - t0
    return store


def fit_judge(store: Path, results: dict[str, Any], timings: dict[str, float]) -> Any:
    """The view classifier, trained on real training slices only, scored on held-out ones."""
    t0 = time.perf_counter()
    x_train, y_train = real_slices(store, ("train",))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    clf.fit(features(x_train), y_train)
    x_held, y_held = real_slices(store, ("val", "test"))
    results["heldout_real"] = score(clf, x_held, y_held)
    timings["classifier_s"] = time.perf_counter() - t0
    print(
        f"classifier on held-out real slices: {results['heldout_real']['accuracy']:.3f} (n={len(y_held)})"
    )
    return clf


def train_and_judge(
    args: argparse.Namespace, store: Path, work: Path, clf: Any, results: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:  # fmt: skip
    """Judge slices after one step (the control), train ``--minutes`` more, judge again.

    Returns:
        The final checkpoint's contents.
    """
    run = work / "run"
    cfg = resolve_config("small-data-2d", overrides=[*TINY, f"train.seed={args.seed}"])
    train(resolve_config("small-data-2d", overrides=[*TINY, "train.steps=1", f"train.seed={args.seed}"]),
          store, run, progress=False)  # fmt: skip
    x_gen, y_gen = generated(run, work / "generated-step1", args.samples, args.seed)
    results["generated_step1"] = score(clf, x_gen, y_gen)
    print(f"generated after 1 step (control): {results['generated_step1']['accuracy']:.3f}")
    t1 = time.perf_counter()
    ckpt = train(cfg, store, run, resume=True, max_minutes=args.minutes, progress=False)
    timings["train_s"] = time.perf_counter() - t1
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    t1 = time.perf_counter()
    x_gen, y_gen = generated(run, work / "generated-final", args.samples, args.seed)
    timings["generate_s"] = time.perf_counter() - t1
    results["generated_final"] = score(clf, x_gen, y_gen)
    return state


def print_final(state: dict[str, Any], final: dict[str, Any], timings: dict[str, float]) -> None:
    """Training length, and the generated slices' accuracy and confusion."""
    print(
        f"trained {state['step']} steps ({state['images_seen']} slices seen) in {timings['train_s'] / 60:.1f} min"
    )
    print(f"generated after training: accuracy {final['accuracy']:.3f} (chance 0.333); per requested view "
          + ", ".join(f"{v} {a:.3f}" for v, a in final["per_view"].items()))  # fmt: skip
    print(
        "confusion (rows requested, columns predicted; axial, coronal, sagittal):",
        final["confusion"],
    )


def make_report(
    args: argparse.Namespace, meta: dict[str, Any], state: dict[str, Any],
    results: dict[str, Any], timings: dict[str, float],
) -> dict[str, Any]:  # fmt: skip
    """The JSON report: settings, store, training, the scores, timings and the machine."""
    return {
        "benchmark": "view2d",
        "settings": {**vars(args), "workdir": str(args.workdir) if args.workdir else None,
                     "out": str(args.out) if args.out else None, "preset": "small-data-2d", "overrides": TINY,
                     "judge": f"logistic regression on {FEATURE_SIDE}x{FEATURE_SIDE}x4 area-averaged real training slices"},
        "store": {"n_slices": meta["n_slices"], "per_view": meta["slices"]["per_view"], "splits": meta["splits"],
                  "case_splits": meta["case_splits"], "size": meta["size"]},
        "training": {"steps": int(state["step"]), "images_seen": int(state["images_seen"]), "minutes": timings["train_s"] / 60},
        "chance": 1 / 3,
        **results,
        "timings": timings,
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__},
    }  # fmt: skip


def main() -> None:
    """Store, judge, training and generated slices; print the figures and write JSON."""
    args = parse_args()
    torch.set_num_threads(1)
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="view2d-")
    work = Path(args.workdir or tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    store = make_store(args, work, timings)
    meta = json.loads((store / "meta.json").read_text())
    print(f"store: {meta['n_slices']} slices {args.size}x{args.size} of {meta['n_cases']} cases; "
          f"{meta['slices']['per_view']}; cases {meta['case_splits']}")  # fmt: skip
    results: dict[str, Any] = {}
    clf = fit_judge(store, results, timings)
    state = train_and_judge(args, store, work, clf, results, timings)
    timings["total_s"] = time.perf_counter() - start
    print_final(state, results["generated_final"], timings)
    report = make_report(args, meta, state, results, timings)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
