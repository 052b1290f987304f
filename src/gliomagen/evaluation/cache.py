"""What the evaluation keeps on disk, and where: the trained probe networks.

Everything lives under ``cache_dir`` (default :func:`default_cache_dir`: ``$GLIOMAGEN_CACHE`` or
``~/.cache/gliomagen``). A probe's trained weights are cached under a SHA-256 of the exact probe
inputs, labels and options in ``cache_dir/probe/<hash>.pt``, written to a temporary name and
renamed (:mod:`gliomagen.io.atomic`), and loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gliomagen.errors import GliomagenError
from gliomagen.evaluation.probe import ProbeNet, ProbeOptions, probe_heads, train_probe
from gliomagen.io.atomic import atomic_path

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
        with atomic_path(path) as tmp:
            torch.save(
                {
                    "format": PROBE_FORMAT,
                    "heads": heads,
                    "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                    "final_loss": final,
                    "losses": losses,
                },
                tmp,
            )
    except OSError as exc:
        raise GliomagenError(
            f"probe cache {path.parent}: cannot write ({exc.strerror}); set GLIOMAGEN_CACHE"
        ) from None
    return net, {
        "key": key,
        "path": str(path),
        "cached": False,
        "final_loss": final,
        "options": asdict(options),
    }
