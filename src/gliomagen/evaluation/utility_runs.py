"""Every arm for every seed, in this process or in ``jobs`` worker processes.

The large-cohort pretraining runs once per seed (only when a ``large-then-real*`` arm is asked
for) and its weights are handed to every such arm of that seed; with a ``cache_dir`` they are
also kept on disk, keyed by everything they depend on, and shared by later runs (e.g. every n). With ``jobs > 1`` the runs go to
a pool of ``spawn``-ed processes, each with ``threads`` torch threads (1 by default: on a small
CPU, two single-threaded runs side by side beat one two-threaded run, see the benchmark's
``--jobs``); each process gets the case bank once. A run's numbers do not depend on where it ran
(same torch build, same thread count).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch

from gliomagen import __version__
from gliomagen.evaluation import segmentation as seg
from gliomagen.evaluation.utility_arms import parse_arm
from gliomagen.evaluation.utility_train import Arrays, TrainOptions, pretrain, run_arm
from gliomagen.io.checkpoint import save_torch

Results = dict[str, dict[int, dict[str, Any]]]

_ARRAYS: Arrays | None = None  # a worker process's cases, set once by _init


def _init(arrays: Arrays, threads: int) -> None:
    global _ARRAYS
    _ARRAYS = arrays
    torch.set_num_threads(max(1, int(threads)))


def _pretrain_job(seed: int, opts: TrainOptions) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    assert _ARRAYS is not None
    return pretrain(_ARRAYS, seed, opts)


def _arm_job(arm: str, seed: int, opts: TrainOptions, pre: Any, realism: Any) -> dict[str, Any]:
    assert _ARRAYS is not None
    return run_arm(_ARRAYS, arm, seed, opts, pre, realism)


def pretrain_cache(arrays: Arrays, seed: int, opts: TrainOptions, cache_dir: Path | None, tag: str) -> Path | None:
    """Where a seed's pretraining is kept: a hash of the options it depends on, the seed, the
    large-cohort and val case ids and ``tag`` (e.g. the store's path); ``None`` without a folder."""
    if cache_dir is None:
        return None
    keep = ("batch_size", "network", "lr", "init_filters", "val_every", "pretrain_steps", "outputs", "device")
    key = {k: v for k, v in dataclasses.asdict(opts).items() if k in keep}
    ids = {g: [arrays.bank.ids[i] for i in arrays.index.get(g, [])] for g in ("large", "val")}
    blob = json.dumps([key, int(seed), ids, tag, torch.__version__, __version__], sort_keys=True).encode()
    return Path(cache_dir) / f"pretrain-seed{seed}-{hashlib.sha256(blob).hexdigest()[:16]}.pt"


def _load_pretrain(path: Path | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    if path is None or not path.is_file():
        return None
    got = torch.load(path, map_location="cpu", weights_only=True)
    return got["state"], {**got["info"], "cached": str(path)}


def _keep_pretrain(path: Path | None, state: Mapping[str, torch.Tensor], info: Mapping[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_torch({"state": dict(state), "info": dict(info)}, path)


def _say(progress: bool, arm: str, seed: int, res: Mapping[str, Any]) -> None:
    if not progress:
        return
    if "per_case" not in res:
        print(f"utility: seed {seed} pretrain on the large cohort, {res['steps']} steps "
              f"({res['seconds']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
        return
    d = " ".join(f"{r} {res['mean'][r]['dice']:.3f}" for r in seg.REGIONS)
    val = "-" if res["best_val"] is None else f"{res['best_val']:.3f}"
    print(
        f"utility: seed {seed} {arm:<28} best val {val} at step {res['best_step']:>5}  "
        f"test Dice {d}  ({res['seconds']:.0f} s)",
        file=sys.stderr, flush=True,
    )  # fmt: skip


def run_all(
    arrays: Arrays,
    arms: Sequence[str],
    seeds: Sequence[int],
    opts: TrainOptions,
    *,
    jobs: int = 1,
    threads: int = 1,
    realism: Mapping[str, str] | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
    cache_tag: str = "",
) -> tuple[Results, dict[int, dict[str, Any]]]:
    """Train and score every arm for every seed.

    Args:
        arrays: the cases.
        arms: arm names; ``real`` also scores the ``realism`` pools.
        seeds: one run per arm and seed.
        opts: the training options.
        jobs: worker processes (1: in this process, with the caller's torch threads).
        threads: torch threads per worker process.
        realism: ``{source: pool}`` passed to the ``real`` arm (image-mask agreement).
        progress: one line per finished run on stderr.
        cache_dir: where pretrainings are kept (:func:`pretrain_cache`; ``None``: not kept).
        cache_tag: part of the pretraining's cache key (the real store's path).

    Returns:
        ``(results[arm][seed], pretraining[seed])`` (the latter without the weights).
    """
    needs_pre = any(parse_arm(a).pretrain for a in arms)
    cache = {s: pretrain_cache(arrays, s, opts, cache_dir, cache_tag) for s in seeds}
    if jobs <= 1:
        return _serial(arrays, arms, seeds, opts, cache if needs_pre else None, realism, progress)
    ctx = mp.get_context("spawn")  # a fresh interpreter: forking after torch started is unsafe
    results: Results = {a: {} for a in arms}
    pre_info: dict[int, dict[str, Any]] = {}
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init, initargs=(arrays, threads)) as ex:
        todo: dict[Future[Any], tuple[str, int]] = {}

        def submit(seed: int, pre: Any, pretrained: bool) -> None:
            for a in arms:
                if parse_arm(a).pretrain == pretrained:
                    rl = realism if a == "real" else None
                    todo[ex.submit(_arm_job, a, seed, opts, pre, rl)] = (a, seed)

        for s in seeds if needs_pre else []:
            got = _load_pretrain(cache[s])
            if got is None:
                todo[ex.submit(_pretrain_job, s, opts)] = ("", s)
            else:
                pre_info[s] = got[1]
                submit(s, got[0], True)
        for s in seeds:
            submit(s, None, False)
        try:
            while todo:
                done, _ = wait(list(todo), return_when=FIRST_COMPLETED)
                for fut in done:
                    arm, seed = todo.pop(fut)
                    if arm:
                        results[arm][seed] = fut.result()
                        _say(progress, arm, seed, results[arm][seed])
                        continue
                    state, pre_info[seed] = fut.result()
                    _keep_pretrain(cache[seed], state, pre_info[seed])
                    _say(progress, "", seed, pre_info[seed])
                    submit(seed, state, True)
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise
    return {a: dict(sorted(r.items())) for a, r in results.items()}, dict(sorted(pre_info.items()))


def _serial(
    arrays: Arrays,
    arms: Sequence[str],
    seeds: Sequence[int],
    opts: TrainOptions,
    cache: Mapping[int, Path | None] | None,
    realism: Mapping[str, str] | None,
    progress: bool,
) -> tuple[Results, dict[int, dict[str, Any]]]:
    """:func:`run_all` in this process (``cache``: ``None`` when no arm needs pretraining)."""
    results: Results = {a: {} for a in arms}
    pre_info: dict[int, dict[str, Any]] = {}
    for s in seeds:
        state = None
        if cache is not None:
            got = _load_pretrain(cache[s])
            if got is None:
                got = pretrain(arrays, s, opts)
                _keep_pretrain(cache[s], *got)
                _say(progress, "", s, got[1])
            state, pre_info[s] = got
        for a in arms:
            pre = state if parse_arm(a).pretrain else None
            results[a][s] = run_arm(arrays, a, s, opts, pre, realism if a == "real" else None)
            _say(progress, a, s, results[a][s])
    return results, pre_info
