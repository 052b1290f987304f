"""A store build's worker plumbing: cases prepared in order, streaming, in this process or a pool.

At most ``2 * workers`` results are held at once. Workers leave Ctrl-C and SIGTERM to the parent;
the parent turns SIGTERM into ``KeyboardInterrupt`` (:func:`sigterm_as_interrupt`), so a batch
job's time limit stops the workers and removes the temporary store like Ctrl-C does.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from gliomagen.data.layouts import CaseRecord
from gliomagen.data.preprocess import PreparedCase, PrepOptions, prepare_case
from gliomagen.data.qc import save_montage
from gliomagen.errors import GliomagenError

Result = tuple[CaseRecord, PreparedCase | GliomagenError, Path | None]
"""``(record, prepared case or its error, QC folder or None)``."""


def prepare_task(
    record: CaseRecord, size: tuple[int, int, int], qc_dir: Path | None, prep: PrepOptions
) -> PreparedCase:
    """One worker job: prepare a case and, when it is in the QC sample, draw its montage."""
    # the default pipeline keeps the two-argument call (tests stand in for it with that signature)
    result = prepare_case(record, size) if prep.is_default else prepare_case(record, size, prep)
    if qc_dir is not None:
        image = result.image.astype(np.float32)  # [C, D, H, W]
        save_montage(image, result.mask, qc_dir / f"{record.case_id}.png", title=record.case_id)
    return result


def prepare_cases(
    todo: list[CaseRecord],
    size: tuple[int, int, int],
    workers: int,
    progress: bool,
    qc_dirs: list[Path | None],
    prep: PrepOptions,
    qc_later: bool = False,
) -> Iterator[Result]:
    """Prepare cases in order, streaming: at most ``2 * workers`` results are held at once.

    Yields ``(record, result, qc_dir)``; with ``qc_later`` the workers draw no montage (the caller
    draws the final images later).
    """
    # disable=None: no bar when stderr is not a terminal
    bar = tqdm(total=len(todo), unit="case", desc="prepare", disable=None if progress else True)
    if workers == 1 or len(todo) <= 1:
        yield from _in_process(todo, size, qc_dirs, prep, qc_later, bar)
    else:
        yield from _in_pool(todo, size, workers, qc_dirs, prep, qc_later, bar)


def _in_process(
    todo: list[CaseRecord],
    size: tuple[int, int, int],
    qc_dirs: list[Path | None],
    prep: PrepOptions,
    qc_later: bool,
    bar: Any,
) -> Iterator[Result]:
    with bar:
        for record, qc_dir in zip(todo, qc_dirs, strict=True):
            try:
                result: PreparedCase | GliomagenError = prepare_task(
                    record, size, None if qc_later else qc_dir, prep
                )
            except GliomagenError as exc:
                result = exc
            bar.update()
            yield record, result, qc_dir


def _in_pool(
    todo: list[CaseRecord],
    size: tuple[int, int, int],
    workers: int,
    qc_dirs: list[Path | None],
    prep: PrepOptions,
    qc_later: bool,
    bar: Any,
) -> Iterator[Result]:
    method = "fork" if sys.platform.startswith("linux") else "spawn"  # workers need no torch
    with ProcessPoolExecutor(workers, get_context(method), initializer=_ignore_sigint) as pool, bar:
        jobs = iter(zip(todo, qc_dirs, strict=True))
        pending: list[tuple[CaseRecord, Path | None, Future[PreparedCase]]] = []

        def submit() -> None:
            job = next(jobs, None)
            if job is not None:
                qc_dir = None if qc_later else job[1]
                future = pool.submit(prepare_task, job[0], size, qc_dir, prep)
                pending.append((job[0], job[1], future))

        for _ in range(2 * workers):
            submit()
        try:
            while pending:
                record, qc_dir, future = pending.pop(0)
                try:
                    result: PreparedCase | GliomagenError = future.result()
                except GliomagenError as exc:
                    result = exc
                except BrokenProcessPool:
                    raise GliomagenError(
                        f"{record.case_id}: a worker process died (out of memory?); try fewer --workers"
                    ) from None
                submit()
                bar.update()
                yield record, result, qc_dir
        finally:
            for _, _, future in pending:
                future.cancel()


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C and SIGTERM to the parent, which stops them and removes the temp store."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def sigterm_as_interrupt() -> Any:
    """Turn SIGTERM (e.g. a batch-job time limit) into KeyboardInterrupt, so the temp store is
    removed and the workers stopped; returns the previous handler (``None`` off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def say(enabled: bool, message: str) -> None:
    """A progress message on stderr (when ``enabled``)."""
    if enabled:
        print(message, file=sys.stderr)
