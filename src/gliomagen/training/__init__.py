"""Training: losses, the loop, checkpoints, data-parallel helpers.

Python API::

    from gliomagen.config import resolve_config
    from gliomagen.training import train, load_generator

    ckpt = train(resolve_config("demo-cpu"), "store/", "runs/demo", max_minutes=5)
    G, schema, config, store_meta = load_generator("runs/demo")
"""

from __future__ import annotations

from gliomagen.io.checkpoint import load_checkpoint
from gliomagen.models.loading import load_generator
from gliomagen.training.loop import train

__all__ = ["load_checkpoint", "load_generator", "train"]
