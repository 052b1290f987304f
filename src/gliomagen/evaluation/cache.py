"""What the evaluation keeps on disk, and where: trained probe networks and metric references.

Everything lives under ``cache_dir`` (default :func:`default_cache_dir`: ``$GLIOMAGEN_CACHE`` or
``~/.cache/gliomagen``), written to a temporary name and renamed (:mod:`gliomagen.io.atomic`):

* a probe's trained weights under a SHA-256 of the exact probe inputs, labels and options in
  ``cache_dir/probe/<hash>.pt``, loaded with ``torch.load(weights_only=True)``;
* the real side of the metric suite (:mod:`gliomagen.evaluation.suite`) as named arrays in
  ``cache_dir/reference/<hash>.npz`` (:func:`save_arrays`, :func:`load_arrays`; no pickles). Its
  hash covers what the arrays were computed from; :func:`set_identity` names a set of cases by its
  ids, labels, grid and data: the files of memory-mapped arrays with their size and modification
  time (a store rebuilt in place gets a new key), the bytes of in-memory arrays.

A damaged entry is computed again and replaced. A result that cannot be written (a full disk, no
permission) is used without being cached, with one warning (:func:`not_cached`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen.evaluation.cases import CaseSet
from gliomagen.evaluation.probe import ProbeNet, ProbeOptions, probe_heads, train_probe
from gliomagen.io.atomic import atomic_path
from gliomagen.io.checkpoint import save_torch

PROBE_FORMAT = 2


def probe_key(
    inputs: torch.Tensor, labels: Mapping[str, torch.Tensor], options: ProbeOptions
) -> str:
    """SHA-256 of the probe inputs (as float16 bytes), the labels and the options."""
    h = hashlib.sha256()
    h.update(
        json.dumps({"format": PROBE_FORMAT, "options": asdict(options)}, sort_keys=True).encode()
    )
    h.update(str(tuple(inputs.shape)).encode())
    h.update(inputs.to(torch.float16).contiguous().numpy().tobytes())
    for name in sorted(labels):
        h.update(name.encode())
        h.update(labels[name].to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$GLIOMAGEN_CACHE`` or ``~/.cache/gliomagen``."""
    env = os.environ.get("GLIOMAGEN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "gliomagen"


def not_cached(cache_dir: Path, exc: OSError) -> None:
    """Warn that a result could not be written to the cache (a full disk...); the run goes on.

    Every such failure under one cache folder gives the same message, so the command line shows
    it once.
    """
    why = exc.strerror or str(exc) or type(exc).__name__
    warnings.warn(
        f"evaluation cache {cache_dir}: cannot write ({why}); going on without caching "
        "(set GLIOMAGEN_CACHE to a disk with room)",
        RuntimeWarning,
        stacklevel=3,
    )


def load_or_train_probe(
    inputs: torch.Tensor,
    labels: Mapping[str, torch.Tensor],
    options: ProbeOptions,
    cache_dir: Path | None = None,
    progress: Callable[[int, float], None] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[ProbeNet, dict[str, Any]]:
    """Load the cached probe for these inputs, labels and options, or train and cache it.

    The cache key does not include the device: a probe trained on a GPU serves CPU runs too.

    Returns:
        ``(net, info)`` with ``info = {"key", "path", "cached", "final_loss", "options"}``.
    """
    key = probe_key(inputs, labels, options)
    path = Path(cache_dir or default_cache_dir()) / "probe" / f"{key}.pt"
    heads = probe_heads(labels, inputs.ndim - 2)
    if path.is_file():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            net = ProbeNet(inputs.shape[1], options.width, blob["heads"], inputs.ndim - 2)
            net.load_state_dict(blob["state_dict"])
            net.to(device).eval()
            return net, {
                "key": key,
                "path": str(path),
                "cached": True,
                "final_loss": blob["final_loss"],
                "options": asdict(options),
            }
        except Exception:  # a damaged cache entry is retrained and replaced
            pass
    net, losses = train_probe(inputs, labels, options, progress, device)
    final = float(np.mean(losses[-max(1, len(losses) // 10) :]))
    try:
        save_torch(
            {
                "format": PROBE_FORMAT,
                "heads": heads,
                "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "final_loss": final,
                "losses": losses,
            },
            path,
        )
    except OSError as exc:
        not_cached(path.parent.parent, exc)
    return net, {
        "key": key,
        "path": str(path),
        "cached": False,
        "final_loss": final,
        "options": asdict(options),
    }


# -- arrays of the metric suite's reference ---------------------------------------------------------
def _array_identity(arr: Any) -> Any:
    """A memory map's file with its size and modification time; an in-memory array's SHA-256."""
    if arr is None:
        return None
    if isinstance(arr, np.memmap) and arr.filename:
        st = os.stat(arr.filename)
        return [str(arr.filename), st.st_size, st.st_mtime_ns]
    data = np.ascontiguousarray(arr)
    digest = hashlib.sha256(data.tobytes()).hexdigest()
    return [str(data.dtype), list(data.shape), digest]


def set_identity(cases: CaseSet) -> dict[str, Any] | None:
    """What names a set of cases in a cache key; ``None`` for a set read through a dataset."""
    if cases.images is None or cases.indices is None:
        return None
    return {
        "ids": list(cases.case_ids), "labels": cases.labels, "categorical": list(cases.categorical),
        "shape": list(cases.shape), "spacing_mm": list(cases.spacing_mm),
        "indices": [int(i) for i in cases.indices],
        "images": _array_identity(cases.images), "masks": _array_identity(cases.masks),
    }  # fmt: skip


def cache_key(content: Mapping[str, Any]) -> str:
    """SHA-256 of JSON content (keys sorted; values JSON cannot write are written as text)."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an ``.npz`` file; ``None`` when it is missing or damaged."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as blob:
            return {k: blob[k] for k in blob.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # damaged: computed again
        return None


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write named arrays as a compressed ``.npz`` file atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: no ".npz" appended
        np.savez_compressed(fh, **dict(arrays))  # type: ignore[arg-type]
